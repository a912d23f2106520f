"""Regenerate the pslibrary 1.0.0 ultrasoft PBE pseudopotentials with ``ld1.x`` and install them in AiiDA.

The generation and transferability-test inputs ship with the package (``setup/ld1/``, see its README). For each
element this module

1. runs ``ld1.x`` on the generation input and checks that the UPF was written and that the output carries no
   ``Error in routine``/``Errors in ...``/warning/ghost messages,
2. runs the ``.test.in`` input (``iswitch=2``) and parses, for every test configuration, ld1.x's
   ``dEtot_ae``/``dEtot_ps ... Delta E`` lines; the largest |Delta E| (AE minus PS total-energy difference, Ry)
   must not exceed a threshold (default 5 mRy, :data:`DEFAULT_THRESHOLD_RY`),
3. parses the UPF header (``z_valence``, suggested cutoffs) and the md5 of the file.

Results are cached by content under :func:`default_cache_dir` (``$XDG_CACHE_HOME/aiida-mlcampaign/pseudos`` or
``~/.cache/aiida-mlcampaign/pseudos``)::

    <cache_dir>/ld1-versions.json                      ld1.x version per executable (path, size, mtime)
    <cache_dir>/elements/<El>-<variant>-<key>/         one generated PP: UPF, *.in, *.out, result.json
    <cache_dir>/sets/<key>/generation-report.json      test results of the set
    <cache_dir>/sets/<key>/upf/<original UPF names>    flat, exactly one UPF per element

An element key hashes the generation and test input contents and the ``ld1.x`` version string; a set key hashes
the element keys, the version string and the package's cutoff JSON. The UPFs sit in their own ``upf/`` folder and
the report next to it, because aiida-pseudo (``create_from_folder`` and ``aiida-pseudo install family``) rejects a
folder that holds anything but pseudopotential files.

Only :func:`install_pseudo_family` needs AiiDA; everything else is plain Python plus the ``ld1.x`` executable.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.resources
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping

__all__ = (
    'DEFAULT_FAMILY_LABEL',
    'DEFAULT_THRESHOLD_RY',
    'Ld1Inputs',
    'Ld1NotFoundError',
    'Ld1RunError',
    'PseudoFamilyConflictError',
    'PseudopotentialGenerationError',
    'PseudopotentialResult',
    'PseudopotentialSet',
    'PseudopotentialTestError',
    'UnsupportedElementError',
    'available_elements',
    'available_variants',
    'build_pseudopotential_set',
    'default_cache_dir',
    'family_cutoffs',
    'generate_pseudopotential',
    'get_ld1_version',
    'install_pseudo_family',
    'ld1_inputs_for',
    'load_cutoffs',
    'parse_transferability',
    'parse_upf_header',
)

DEFAULT_FAMILY_LABEL = 'PSL-US-1.0.0-PBE-mlcampaign'
DEFAULT_THRESHOLD_RY = 0.005
"""Largest accepted |Delta E| (AE - PS) over the test configurations, in Ry (5 mRy; Cu-dn's worst is 3.9 mRy)."""
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_WORKERS = 2
PREFERRED_VARIANT = 'n'
CUTOFFS_FILENAME = 'cutoffs_psl_us_n.json'
REPORT_FILENAME = 'generation-report.json'
STRINGENCIES = ('low', 'normal', 'high')
DEFAULT_STRINGENCY = 'normal'

# Bump when the layout of the cache or what is stored in it changes: old entries are then ignored.
_CACHE_FORMAT = 1
_INPUT_RE = re.compile(r'^(?P<element>[A-Z][a-z]?)\.pbe-(?P<variant>[a-z]+)-rrkjus_psl\.1\.0\.0\.in$')
_VERSION_RE = re.compile(r'Program\s+LD1\s+v\.(?P<version>\S+)\s+starts')
_ERROR_ROUTINE_RE = re.compile(r'Error in routine\s+(?P<routine>\S+)\s*\((?P<code>-?\d+)\):\s*\n\s*(?P<message>[^\n]*)')
# ld1.x prints these (strings of the 6.7 binary) when something is wrong; none occurs in a clean run.
# "final scf error:  8.1E-15 reached in ..." must not match, hence the whitespace between "error(s)" and "in".
_BAD_OUTPUT_RE = re.compile(
    r'\bwarning\b|\bghost|\bbeware\b|\berrors?\s+in\b|not\s+converged|convergence\s+not\s+achieved',
    re.IGNORECASE,
)
_DELTA_E_RE = re.compile(
    r'dEtot_ae\s*=\s*(?P<ae>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry\s*\n'
    r'\s*dEtot_ps\s*=\s*(?P<ps>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry\s*,\s*'
    r'Delta E\s*=\s*(?P<delta>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry'
)
# Eigenvalue table of "Testing the pseudopotential", after its "e AE (Ry)  e PS (Ry)  De AE-PS (Ry)" header line:
#     "1 0     4S   1( 1.50)       -0.38034       -0.38095     0.00060215  !"
_EIGENVALUE_HEADER_RE = re.compile(r'e AE \(Ry\)\s+e PS \(Ry\)\s+De AE-PS \(Ry\)')
_EIGENVALUE_ROW_RE = re.compile(
    r'^\s*\d+\s+\d+\s+\d[SPDFspdf]\s+\d+\(\s*[\d.]+\)\s+[-+]?\d+\.\d+\s+[-+]?\d+\.\d+\s+(?P<de>[-+]?\d+\.\d+)'
)
_CONFIGTS_RE = re.compile(r"configts\(\s*(?P<index>\d+)\s*\)\s*=\s*'(?P<config>[^']*)'", re.IGNORECASE)
_NCONF_RE = re.compile(r'\bnconf\s*=\s*(?P<nconf>\d+)', re.IGNORECASE)
_FILE_PSEUDOPW_RE = re.compile(r"file_pseudopw\s*=\s*'(?P<name>[^']+)'", re.IGNORECASE)
_FILE_PSEUDO_RE = re.compile(r"file_pseudo\s*=\s*'(?P<name>[^']+)'", re.IGNORECASE)
_WFC_CUTOFF_RE = re.compile(r'Suggested minimum cutoff for wavefunctions:\s*(?P<value>[\d.]+)\s*Ry')
_RHO_CUTOFF_RE = re.compile(r'Suggested minimum cutoff for charge density:\s*(?P<value>[\d.]+)\s*Ry')
_Z_VALENCE_RE = re.compile(r'z_valence\s*=\s*"\s*(?P<value>[-+\d.EeDd]+)\s*"')
_UPF_ELEMENT_RE = re.compile(r'\belement\s*=\s*"\s*(?P<value>[A-Za-z]{1,2})\s*"')
# ld1.x stamps the generation date into the UPF (PP_INFO and PP_HEADER), so files regenerated on another day differ
# in md5; the fingerprint below ignores only those stamps.
_UPF_DATE_RE = re.compile(r'(Generation date:[^\n]*|\bdate\s*=\s*"[^"]*")')
# ld1.x work files that are not worth keeping in the cache.
_SCRATCH_PATTERNS = ('*.wfc', '*.pot', 'ld1.test', 'CRASH', 'input_tmp.in')


# --------------------------------------------------------------------------------------------------------------
# Errors


class UnsupportedElementError(ValueError):
    """No ld1.x parameters ship for this element (or variant); the message lists the supported ones."""


class PseudopotentialGenerationError(RuntimeError):
    """Base class of the errors raised while generating or testing a pseudopotential."""


class Ld1NotFoundError(FileNotFoundError):
    """The ``ld1.x`` executable was not found."""


class Ld1RunError(PseudopotentialGenerationError):
    """``ld1.x`` failed, timed out, wrote no UPF, or printed an error or warning."""

    def __init__(self, element: str, stage: str, detail: str, output_path: pathlib.Path | None = None,
                 returncode: int | None = None):
        self.element = element
        self.stage = stage
        self.detail = detail
        self.output_path = output_path
        self.returncode = returncode
        where = f' (output: {output_path})' if output_path else ''
        super().__init__(f'ld1.x {stage} run for {element} failed: {detail}{where}')


class PseudopotentialTestError(PseudopotentialGenerationError):
    """The transferability test of a generated pseudopotential exceeds the threshold."""

    def __init__(self, element: str, value_ry: float, threshold_ry: float, configuration: str | None = None):
        self.element = element
        self.value_ry = value_ry
        self.threshold_ry = threshold_ry
        self.configuration = configuration
        where = f' (test configuration {configuration!r})' if configuration else ''
        super().__init__(
            f'{element}: max |Delta E(AE-PS)| = {value_ry * 1000:.3f} mRy{where} exceeds the threshold of '
            f'{threshold_ry * 1000:.3f} mRy'
        )


class PseudoFamilyConflictError(ValueError):
    """A group with the requested label exists but holds other pseudopotentials."""


# --------------------------------------------------------------------------------------------------------------
# Package data


@dataclasses.dataclass(frozen=True)
class Ld1Inputs:
    """The ld1.x generation and transferability-test inputs for one element and variant."""

    element: str
    variant: str
    generation: pathlib.Path
    test: pathlib.Path

    def __iter__(self):
        """Unpack as ``generation, test = ld1_inputs_for('Cu')``."""
        return iter((self.generation, self.test))

    @property
    def name(self) -> str:
        """pslibrary name, e.g. ``Cu.pbe-dn-rrkjus_psl.1.0.0``."""
        return self.generation.name[: -len('.in')]


def _ld1_dir() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files('aiida_mlcampaign.setup') / 'ld1'))


def _catalogue() -> dict[str, dict[str, Ld1Inputs]]:
    """Map element -> variant -> inputs, for every generation input that has its test input next to it."""
    directory = _ld1_dir()
    catalogue: dict[str, dict[str, Ld1Inputs]] = {}
    for path in sorted(directory.iterdir()):
        match = _INPUT_RE.match(path.name)
        if match is None:
            continue
        test = path.with_name(path.name[: -len('.in')] + '.test.in')
        if not test.is_file():
            continue
        element, variant = match.group('element'), match.group('variant')
        catalogue.setdefault(element, {})[variant] = Ld1Inputs(element, variant, path, test)
    return catalogue


def available_elements() -> list[str]:
    """Return the sorted list of elements for which ld1.x parameters ship with the package."""
    return sorted(_catalogue())


def available_variants(element: str) -> list[str]:
    """Return the pslibrary variants available for ``element`` (e.g. ``['n', 'nl']`` for P)."""
    return sorted(_element_variants(element))


def _element_variants(element: str) -> dict[str, Ld1Inputs]:
    catalogue = _catalogue()
    if element not in catalogue:
        raise UnsupportedElementError(
            f'no ld1.x parameters for element {element!r}; supported elements: {", ".join(sorted(catalogue))}'
        )
    return catalogue[element]


def ld1_inputs_for(element: str, variant: str | None = None) -> Ld1Inputs:
    """Return the generation and test inputs of ``element``.

    :param variant: pslibrary variant (``'n'``, ``'nl'``, ``'dn'``, ...). By default the ``n`` variant where an element
        has several (P, S), otherwise the only one.
    :raises UnsupportedElementError: if there are no parameters for the element or the variant.
    """
    variants = _element_variants(element)
    if variant is None:
        if PREFERRED_VARIANT in variants:
            variant = PREFERRED_VARIANT
        elif len(variants) == 1:
            (variant,) = variants
        else:
            raise UnsupportedElementError(
                f'{element} has several variants ({", ".join(sorted(variants))}) and none is the default '
                f'{PREFERRED_VARIANT!r}: pass one explicitly'
            )
    if variant not in variants:
        raise UnsupportedElementError(
            f'no ld1.x parameters for {element} variant {variant!r}; available variants: {", ".join(sorted(variants))}'
        )
    return variants[variant]


def _cutoffs_text() -> str:
    return (_ld1_dir() / CUTOFFS_FILENAME).read_text(encoding='utf-8')


def load_cutoffs() -> dict[str, dict[str, float]]:
    """Return the package's ``normal`` cutoffs, ``{element: {'cutoff_wfc': Ry, 'cutoff_rho': Ry}}``.

    They belong to the default variants (``n`` for P and S, see ``setup/ld1/README.md``).
    """
    data = json.loads(_cutoffs_text())
    return {
        element: {'cutoff_wfc': float(values['cutoff_wfc']), 'cutoff_rho': float(values['cutoff_rho'])}
        for element, values in data.items()
    }


def family_cutoffs(normal: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """Return the cutoffs (Ry) of the three stringencies of the family, derived from the ``normal`` ones.

    * ``normal``: the package JSON (``setup/ld1/cutoffs_psl_us_n.json``), i.e. the ld1.x/pslibrary suggested
      ecutwfc rounded up to the next 5 Ry and ecutrho = 8 x ecutwfc. This is the default stringency.
    * ``low``: ecutwfc = max(20, 0.6 x normal rounded to the nearest 5 Ry), ecutrho = 8 x ecutwfc. This is *below*
      the pslibrary suggestion for every element, meant for cheap exploratory runs (pre-screening, testing
      workflows, rough MD for active-learning candidates), never for reference labels: expect errors of several
      mRy/atom in energies and visibly worse stresses. The 20 Ry floor is where the ld1.x Bessel-basis tests of
      the package start (``ecutmin=20``).
    * ``high``: ecutwfc = normal + 10 Ry, ecutrho = 8 x ecutwfc, for convergence checks and stresses (the README
      lists Na, Ag, Sn, O and Cu as not converged to 1 mRy/atom at ``normal``).
    """
    def rounded_5(value: float) -> float:
        return float(math.floor(value / 5.0 + 0.5) * 5)

    result: dict[str, dict[str, dict[str, float]]] = {stringency: {} for stringency in STRINGENCIES}
    for element, values in normal.items():
        wfc = float(values['cutoff_wfc'])
        rho = float(values['cutoff_rho'])
        low = max(20.0, rounded_5(0.6 * wfc))
        high = wfc + 10.0
        result['low'][element] = {'cutoff_wfc': low, 'cutoff_rho': 8.0 * low}
        result['normal'][element] = {'cutoff_wfc': wfc, 'cutoff_rho': rho}
        result['high'][element] = {'cutoff_wfc': high, 'cutoff_rho': 8.0 * high}
    return result


# --------------------------------------------------------------------------------------------------------------
# Parsing ld1.x output and UPF files


@dataclasses.dataclass(frozen=True)
class TransferabilityTest:
    """One test configuration: total-energy differences to the first (reference) configuration, in Ry."""

    configuration: str
    delta_etot_ae_ry: float
    delta_etot_ps_ry: float
    delta_e_ry: float


def _float(text: str) -> float:
    return float(text.replace('D', 'E').replace('d', 'e'))


def _test_configurations(test_input: str) -> list[str]:
    configs = {int(m.group('index')): m.group('config') for m in _CONFIGTS_RE.finditer(test_input)}
    return [configs[index] for index in sorted(configs)]


def parse_transferability(output: str, test_input: str | None = None) -> list[TransferabilityTest]:
    """Parse the ``dEtot_ae`` / ``dEtot_ps ..., Delta E=`` lines of an ld1.x test run.

    ld1.x prints one such pair for every test configuration after the first, which is the reference:
    ``dEtot_ae = E_AE(i) - E_AE(1)``, ``dEtot_ps`` the same with the pseudopotential and
    ``Delta E = dEtot_ae - dEtot_ps``. With ``test_input``, the configurations are named and their number is
    checked against ``nconf``.

    :raises ValueError: if no result is found or fewer than ``nconf - 1`` of them.
    """
    matches = list(_DELTA_E_RE.finditer(output))
    if not matches:
        raise ValueError('no "dEtot_ae"/"dEtot_ps ... Delta E" lines found in the ld1.x test output')
    names: list[str] = []
    if test_input is not None:
        names = _test_configurations(test_input)
        nconf_match = _NCONF_RE.search(test_input)
        nconf = int(nconf_match.group('nconf')) if nconf_match else len(names)
        if len(matches) != nconf - 1:
            raise ValueError(f'expected {nconf - 1} transferability results (nconf={nconf}), found {len(matches)}')
    results = []
    for index, match in enumerate(matches):
        configuration = names[index + 1] if index + 1 < len(names) else f'configuration {index + 2}'
        results.append(
            TransferabilityTest(
                configuration=configuration,
                delta_etot_ae_ry=_float(match.group('ae')),
                delta_etot_ps_ry=_float(match.group('ps')),
                delta_e_ry=_float(match.group('delta')),
            )
        )
    return results


def _max_eigenvalue_error(output: str) -> float:
    """Largest |e_AE - e_PS| (Ry) of the test-run eigenvalue tables (informational; 0 if there are none)."""
    worst = 0.0
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if not _EIGENVALUE_HEADER_RE.search(line):
            continue
        for row in lines[index + 1:]:
            match = _EIGENVALUE_ROW_RE.match(row)
            if match is None:
                break
            worst = max(worst, abs(_float(match.group('de'))))
    return worst


def parse_upf_header(content: str) -> dict:
    """Return ``element``, ``z_valence`` and the suggested cutoffs (Ry) from the text of a UPF v2 file written by ld1.x.

    :raises ValueError: if one of the fields is missing.
    """
    fields = {}
    for key, regex in (
        ('element', _UPF_ELEMENT_RE),
        ('z_valence', _Z_VALENCE_RE),
        ('suggested_ecutwfc_ry', _WFC_CUTOFF_RE),
        ('suggested_ecutrho_ry', _RHO_CUTOFF_RE),
    ):
        match = regex.search(content)
        if match is None:
            raise ValueError(f'UPF: could not find {key}')
        fields[key] = match.group('value')
    z_valence = _float(fields['z_valence'])
    if z_valence != int(z_valence):
        raise ValueError(f'UPF: z_valence {z_valence} is not an integer')
    return {
        'element': fields['element'].strip().capitalize(),
        'z_valence': int(z_valence),
        'suggested_ecutwfc_ry': _float(fields['suggested_ecutwfc_ry']),
        'suggested_ecutrho_ry': _float(fields['suggested_ecutrho_ry']),
    }


def _upf_fingerprint(content: bytes) -> str:
    """sha256 of a UPF with ld1.x's generation-date stamps removed (equal for regenerations on other days)."""
    text = content.decode('utf-8', errors='replace')
    return hashlib.sha256(_UPF_DATE_RE.sub('', text).encode('utf-8')).hexdigest()


def _check_output(output: str, element: str, stage: str, output_path: pathlib.Path | None, returncode: int) -> None:
    """Raise :class:`Ld1RunError` if the ld1.x output reports an error, a warning or a ghost state."""
    error = _ERROR_ROUTINE_RE.search(output)
    if error is not None:
        detail = f'error in routine {error.group("routine")} ({error.group("code")}): {error.group("message").strip()}'
        raise Ld1RunError(element, stage, detail, output_path, returncode)
    bad = [line.strip() for line in output.splitlines() if _BAD_OUTPUT_RE.search(line)]
    if bad:
        shown = '; '.join(dict.fromkeys(bad))
        raise Ld1RunError(element, stage, f'ld1.x reported: {shown[:500]}', output_path, returncode)
    if returncode != 0:
        tail = ' | '.join(line.strip() for line in output.strip().splitlines()[-5:])
        raise Ld1RunError(element, stage, f'exit status {returncode}; last lines: {tail}', output_path, returncode)


# --------------------------------------------------------------------------------------------------------------
# Running ld1.x


def _resolve_executable(ld1_executable: str | os.PathLike) -> str:
    found = shutil.which(str(ld1_executable))
    if found is None:
        raise Ld1NotFoundError(
            f'ld1.x executable {str(ld1_executable)!r} not found: install Quantum ESPRESSO (Debian/Ubuntu: '
            '`apt install quantum-espresso`) or pass the path as `ld1_executable`'
        )
    return os.path.abspath(found)


def _ld1_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def _run_ld1(executable: str, input_path: pathlib.Path, output_path: pathlib.Path, workdir: pathlib.Path,
             element: str, stage: str, timeout: float) -> str:
    """Run ``ld1.x < input_path > output_path`` in ``workdir`` and return the output text."""
    with open(input_path, 'rb') as stdin:
        try:
            completed = subprocess.run(
                [executable], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
                timeout=timeout, env=_ld1_env(), check=False,
            )
        except subprocess.TimeoutExpired as exception:
            output_path.write_bytes(exception.stdout or b'')
            raise Ld1RunError(element, stage, f'timed out after {timeout:g} s', output_path) from exception
    output = completed.stdout.decode('utf-8', errors='replace')
    output_path.write_text(output, encoding='utf-8')
    if completed.stderr:
        output_path.with_suffix('.err').write_bytes(completed.stderr)
    _check_output(output, element, stage, output_path, completed.returncode)
    return output


_VERSION_LOCK = threading.Lock()
_VERSION_MEMO: dict[tuple, str] = {}


def get_ld1_version(ld1_executable: str | os.PathLike = 'ld1.x', cache_dir: str | os.PathLike | None = None) -> str:
    """Return the version string from the ``ld1.x`` output header, e.g. ``'LD1 v.6.7MaX'``.

    ld1.x has no ``--version``: it is run on empty input (it prints its header and stops, ~0.3 s). The answer is
    remembered per executable (resolved path, size, mtime) in memory and, if ``cache_dir`` is given, in
    ``<cache_dir>/ld1-versions.json``, so a cached :func:`build_pseudopotential_set` does not start ld1.x at all.
    """
    executable = _resolve_executable(ld1_executable)
    real = os.path.realpath(executable)
    stat = os.stat(real)
    memo_key = (real, stat.st_size, stat.st_mtime_ns)
    record_key = f'{real}|{stat.st_size}|{stat.st_mtime_ns}'
    versions_file = pathlib.Path(cache_dir) / 'ld1-versions.json' if cache_dir is not None else None
    with _VERSION_LOCK:
        if memo_key in _VERSION_MEMO:
            return _VERSION_MEMO[memo_key]
        records = {}
        if versions_file is not None:
            try:
                records = json.loads(versions_file.read_text(encoding='utf-8'))
            except (OSError, ValueError):
                records = {}
        if isinstance(records, dict) and isinstance(records.get(record_key), str):
            _VERSION_MEMO[memo_key] = records[record_key]
            return records[record_key]

        with tempfile.TemporaryDirectory(prefix='ld1-version-') as tmp:
            try:
                completed = subprocess.run(
                    [executable], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp,
                    timeout=60, env=_ld1_env(), check=False,
                )
            except subprocess.TimeoutExpired as exception:
                raise Ld1RunError('-', 'version probe', 'timed out after 60 s') from exception
        output = completed.stdout.decode('utf-8', errors='replace')
        version = _version_from_output(output)
        if not version:
            raise Ld1RunError('-', 'version probe', f'no "Program LD1 v.X starts" header in the output of {executable}')
        _VERSION_MEMO[memo_key] = version
        if not isinstance(records, dict):
            records = {}
        records[record_key] = version
        if versions_file is not None:
            try:
                versions_file.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write_text(versions_file, json.dumps(records, indent=1, sort_keys=True))
            except OSError:
                pass  # the memo still works; a read-only cache only costs one probe per process
        return version


# --------------------------------------------------------------------------------------------------------------
# One pseudopotential


@dataclasses.dataclass(frozen=True)
class PseudopotentialResult:
    """A generated and tested pseudopotential. Energies and cutoffs in Ry."""

    element: str
    variant: str
    filename: str
    path: pathlib.Path
    z_valence: int
    max_delta_e_ry: float
    suggested_ecutwfc_ry: float
    suggested_ecutrho_ry: float
    md5: str
    tests: tuple[TransferabilityTest, ...] = ()
    max_eigenvalue_error_ry: float = 0.0
    ld1_version: str = ''
    generation_seconds: float = 0.0
    test_seconds: float = 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data['path'] = str(self.path)
        data['tests'] = [dataclasses.asdict(test) for test in self.tests]
        return data

    @classmethod
    def from_dict(cls, data: Mapping, path: pathlib.Path | None = None) -> PseudopotentialResult:
        names = {field.name for field in dataclasses.fields(cls)}
        data = {key: value for key, value in data.items() if key in names}  # e.g. a cache_key next to the fields
        data['path'] = pathlib.Path(path if path is not None else data['path'])
        data['tests'] = tuple(TransferabilityTest(**test) for test in data.get('tests', ()))
        return cls(**data)

    def check_threshold(self, threshold_ry: float = DEFAULT_THRESHOLD_RY) -> None:
        """Raise :class:`PseudopotentialTestError` if the worst |Delta E| exceeds ``threshold_ry``."""
        if self.max_delta_e_ry > threshold_ry:
            worst = max(self.tests, key=lambda test: abs(test.delta_e_ry), default=None)
            raise PseudopotentialTestError(
                self.element, self.max_delta_e_ry, threshold_ry, worst.configuration if worst else None
            )


def _md5(path: pathlib.Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - same checksum as aiida-pseudo, not security


def generate_pseudopotential(
    element: str,
    workdir: str | os.PathLike,
    ld1_executable: str | os.PathLike = 'ld1.x',
    *,
    variant: str | None = None,
    inputs: Ld1Inputs | None = None,
    threshold_ry: float = DEFAULT_THRESHOLD_RY,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PseudopotentialResult:
    """Generate the pseudopotential of ``element`` with ld1.x in ``workdir`` and run its transferability test.

    The inputs are copied into ``workdir`` (created if needed) and run there as ``ld1.x < X.in > X.out``; the UPF, the
    outputs and ld1.x's work files stay in ``workdir``.

    :param inputs: explicit inputs instead of the packaged ones (``ld1_inputs_for(element, variant)``).
    :param threshold_ry: largest accepted |Delta E(AE-PS)| over the test configurations, Ry.
    :param timeout: seconds per ld1.x run.
    :raises UnsupportedElementError: if no parameters ship for the element.
    :raises Ld1NotFoundError: if ``ld1_executable`` is not found.
    :raises Ld1RunError: if ld1.x fails, times out, writes no UPF or reports an error or warning.
    :raises PseudopotentialTestError: if max |Delta E| exceeds ``threshold_ry``.
    """
    if inputs is None:
        inputs = ld1_inputs_for(element, variant)
    executable = _resolve_executable(ld1_executable)
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)

    generation_text = pathlib.Path(inputs.generation).read_text(encoding='utf-8')
    test_text = pathlib.Path(inputs.test).read_text(encoding='utf-8')
    name_match = _FILE_PSEUDOPW_RE.search(generation_text)
    if name_match is None:
        raise Ld1RunError(element, 'generation', f'no file_pseudopw in {inputs.generation}')
    filename = pathlib.PurePath(name_match.group('name')).name
    test_pseudo = _FILE_PSEUDO_RE.search(test_text)
    if test_pseudo is None or pathlib.PurePath(test_pseudo.group('name')).name != filename:
        raise Ld1RunError(element, 'test', f'{inputs.test} does not test {filename} (file_pseudo)')

    generation_in = workdir / f'{inputs.name}.in'
    test_in = workdir / f'{inputs.name}.test.in'
    generation_in.write_text(generation_text, encoding='utf-8')
    test_in.write_text(test_text, encoding='utf-8')
    upf = workdir / filename
    if upf.exists():
        upf.unlink()

    start = time.perf_counter()
    generation_output = _run_ld1(
        executable, generation_in, workdir / f'{inputs.name}.out', workdir, element, 'generation', timeout
    )
    generation_seconds = time.perf_counter() - start
    if not upf.is_file() or upf.stat().st_size == 0:
        raise Ld1RunError(element, 'generation', f'{filename} was not written', workdir / f'{inputs.name}.out')
    content = upf.read_bytes()
    try:
        header = parse_upf_header(content.decode('utf-8', errors='replace'))
    except ValueError as exception:
        raise Ld1RunError(element, 'generation', f'{filename}: {exception}') from exception
    if header['element'] != element:
        raise Ld1RunError(element, 'generation', f'{filename} is for element {header["element"]}, not {element}')

    start = time.perf_counter()
    test_out = workdir / f'{inputs.name}.test.out'
    test_output = _run_ld1(executable, test_in, test_out, workdir, element, 'test', timeout)
    test_seconds = time.perf_counter() - start
    try:
        tests = parse_transferability(test_output, test_text)
    except ValueError as exception:
        raise Ld1RunError(element, 'test', str(exception), test_out) from exception
    if upf.read_bytes() != content:
        raise Ld1RunError(element, 'test', f'{filename} changed during the test run', test_out)

    result = PseudopotentialResult(
        element=element,
        variant=inputs.variant,
        filename=filename,
        path=upf,
        z_valence=header['z_valence'],
        max_delta_e_ry=max(abs(test.delta_e_ry) for test in tests),
        suggested_ecutwfc_ry=header['suggested_ecutwfc_ry'],
        suggested_ecutrho_ry=header['suggested_ecutrho_ry'],
        md5=hashlib.md5(content).hexdigest(),  # noqa: S324
        tests=tuple(tests),
        max_eigenvalue_error_ry=_max_eigenvalue_error(test_output),
        ld1_version=_version_from_output(generation_output),
        generation_seconds=round(generation_seconds, 3),
        test_seconds=round(test_seconds, 3),
    )
    result.check_threshold(threshold_ry)
    return result


def _version_from_output(output: str) -> str:
    match = _VERSION_RE.search(output)
    return f'LD1 v.{match.group("version")}' if match else ''


# --------------------------------------------------------------------------------------------------------------
# Cached sets


@dataclasses.dataclass(frozen=True)
class PseudopotentialSet:
    """A flat folder with one UPF per element, ready for aiida-pseudo, and its generation report.

    :ivar folder: the flat folder of UPFs (nothing else in it).
    :ivar report_path: ``generation-report.json`` with the test results, next to ``folder``.
    :ivar pseudos: element -> result, with ``path`` pointing into ``folder``.
    :ivar cutoffs: element -> ``{'cutoff_wfc', 'cutoff_rho'}`` (Ry), the ``normal`` stringency.
    :ivar from_cache: True if no ld1.x generation ran for this call.
    """

    folder: pathlib.Path
    report_path: pathlib.Path
    cache_key: str
    ld1_version: str
    pseudos: dict[str, PseudopotentialResult]
    cutoffs: dict[str, dict[str, float]]
    from_cache: bool

    @property
    def elements(self) -> list[str]:
        return sorted(self.pseudos)

    @property
    def md5s(self) -> dict[str, str]:
        return {element: result.md5 for element, result in self.pseudos.items()}


def default_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/aiida-mlcampaign/pseudos``, or ``~/.cache/aiida-mlcampaign/pseudos``."""
    xdg = os.environ.get('XDG_CACHE_HOME', '')
    base = pathlib.Path(xdg) if xdg and os.path.isabs(xdg) else pathlib.Path.home() / '.cache'
    return base / 'aiida-mlcampaign' / 'pseudos'


def _hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(',', ':')).encode('utf-8')).hexdigest()


def _element_key(inputs: Ld1Inputs, ld1_version: str) -> str:
    return _hash({
        'format': _CACHE_FORMAT,
        'element': inputs.element,
        'variant': inputs.variant,
        'generation_input': inputs.generation.read_text(encoding='utf-8'),
        'test_input': inputs.test.read_text(encoding='utf-8'),
        'ld1_version': ld1_version,
    })


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _publish(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Move a finished directory into place; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _load_element_entry(entry: pathlib.Path) -> PseudopotentialResult | None:
    """Return the cached result in ``entry`` if it is complete and the UPF is intact, else None."""
    try:
        data = json.loads((entry / 'result.json').read_text(encoding='utf-8'))
        result = PseudopotentialResult.from_dict(data, entry / data['filename'])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not result.path.is_file() or _md5(result.path) != result.md5:
        return None
    return result


def _build_element(inputs: Ld1Inputs, executable: str, ld1_version: str, cache: pathlib.Path, timeout: float,
                   counter: list) -> PseudopotentialResult:
    """Return the cached result for ``inputs``, generating it first on a miss. Threshold checks are the caller's."""
    key = _element_key(inputs, ld1_version)
    entry = cache / 'elements' / f'{inputs.element}-{inputs.variant}-{key[:16]}'
    cached = _load_element_entry(entry)
    if cached is not None:
        return cached
    if entry.exists():
        shutil.rmtree(entry)  # incomplete or corrupted entry
    (cache / 'tmp').mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(tempfile.mkdtemp(dir=cache / 'tmp', prefix=f'{inputs.element}-{inputs.variant}-'))
    # no threshold here: a result is cached whatever its |Delta E|, and checked against the caller's threshold
    result = generate_pseudopotential(
        inputs.element, scratch, executable, inputs=inputs, threshold_ry=math.inf, timeout=timeout
    )
    counter.append(inputs.element)
    for pattern in _SCRATCH_PATTERNS:
        for path in scratch.glob(pattern):
            path.unlink()
    result = dataclasses.replace(result, path=entry / result.filename, ld1_version=ld1_version)
    data = result.to_dict()
    data['cache_key'] = key
    data.pop('path')
    (scratch / 'result.json').write_text(json.dumps(data, indent=1), encoding='utf-8')
    entry.parent.mkdir(parents=True, exist_ok=True)
    _publish(scratch, entry)
    loaded = _load_element_entry(entry)
    if loaded is None:
        raise PseudopotentialGenerationError(f'cache entry {entry} is unreadable right after writing it')
    return loaded


def _resolve_selection(elements: Iterable[str] | None, variants: Mapping[str, str] | None) -> list[Ld1Inputs]:
    if isinstance(elements, str):
        elements = [elements]
    selected = available_elements() if elements is None else list(dict.fromkeys(elements))
    if not selected:
        raise ValueError('no elements selected')
    variants = dict(variants or {})
    unknown = set(variants) - set(selected)
    if unknown:
        raise ValueError(f'variants given for elements that are not selected: {", ".join(sorted(unknown))}')
    return [ld1_inputs_for(element, variants.get(element)) for element in sorted(selected)]


def build_pseudopotential_set(
    elements: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    variants: Mapping[str, str] | None = None,
    ld1_executable: str | os.PathLike = 'ld1.x',
    threshold_ry: float = DEFAULT_THRESHOLD_RY,
    max_workers: int = DEFAULT_MAX_WORKERS,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PseudopotentialSet:
    """Generate (or take from the cache) the pseudopotentials of ``elements`` and return them as a flat folder.

    Each element is cached under a key hashing its generation and test inputs and the ld1.x version string; the set
    folder is keyed by those keys plus the package's cutoff JSON. A repeated call with the same inputs starts no
    ld1.x process at all (the version probe is cached too). Missing elements are generated in a thread pool of
    ``max_workers`` (ld1.x is serial; ~0.5 s generation + ~1 s test per element).

    :param elements: element symbols; default all of :func:`available_elements`.
    :param cache_dir: default :func:`default_cache_dir`.
    :param variants: optional ``{element: variant}``, e.g. ``{'P': 'nl'}``; otherwise the ``n`` variant where there is
        a choice. Note that the packaged cutoffs are for the default variants.
    :param threshold_ry: largest accepted |Delta E(AE-PS)| (Ry), checked for cached results too.
    :raises UnsupportedElementError: for an element without parameters (the message lists the supported ones).
    :raises PseudopotentialTestError: if an element fails the transferability threshold.
    :raises Ld1RunError: if ld1.x fails for an element.
    """
    selection = _resolve_selection(elements, variants)
    cutoffs_text = _cutoffs_text()
    normal_cutoffs = load_cutoffs()
    missing = [inputs.element for inputs in selection if inputs.element not in normal_cutoffs]
    if missing:
        raise PseudopotentialGenerationError(f'{CUTOFFS_FILENAME} has no cutoffs for {", ".join(missing)}')

    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache.expanduser().absolute()
    cache.mkdir(parents=True, exist_ok=True)
    executable = _resolve_executable(ld1_executable)
    ld1_version = get_ld1_version(executable, cache)

    element_keys = {inputs.element: _element_key(inputs, ld1_version) for inputs in selection}
    set_key = _hash({
        'format': _CACHE_FORMAT, 'elements': element_keys, 'ld1_version': ld1_version, 'cutoffs': cutoffs_text,
    })
    set_dir = cache / 'sets' / set_key[:20]
    report_path = set_dir / REPORT_FILENAME
    folder = set_dir / 'upf'

    cached_set = _load_set(set_dir, element_keys)
    if cached_set is not None:
        pseudos = cached_set
        generated: list = []
    else:
        generated = []
        pseudos = {}
        workers = max(1, min(max_workers, len(selection)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix='ld1') as pool:
            futures = {
                inputs.element: pool.submit(_build_element, inputs, executable, ld1_version, cache, timeout, generated)
                for inputs in selection
            }
            try:
                for element, future in futures.items():
                    pseudos[element] = future.result()
            except BaseException:
                for future in futures.values():
                    future.cancel()
                raise
        for element in sorted(pseudos):
            pseudos[element].check_threshold(threshold_ry)
        _write_set(set_dir, set_key, ld1_version, executable, pseudos, normal_cutoffs, element_keys)
        pseudos = _load_set(set_dir, element_keys)
        if pseudos is None:
            raise PseudopotentialGenerationError(f'set folder {set_dir} is unreadable right after writing it')

    for element in sorted(pseudos):
        pseudos[element].check_threshold(threshold_ry)
    return PseudopotentialSet(
        folder=folder,
        report_path=report_path,
        cache_key=set_key,
        ld1_version=ld1_version,
        pseudos=pseudos,
        cutoffs={element: normal_cutoffs[element] for element in sorted(pseudos)},
        from_cache=not generated,
    )


def _write_set(set_dir: pathlib.Path, set_key: str, ld1_version: str, executable: str,
               pseudos: Mapping[str, PseudopotentialResult], cutoffs: Mapping, element_keys: Mapping) -> None:
    if _load_set(set_dir, element_keys) is not None:
        return
    if set_dir.exists():
        shutil.rmtree(set_dir)
    set_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(tempfile.mkdtemp(dir=set_dir.parent, prefix=f'.{set_dir.name}-'))
    (scratch / 'upf').mkdir()
    entries = {}
    for element in sorted(pseudos):
        result = pseudos[element]
        shutil.copy2(result.path, scratch / 'upf' / result.filename)
        data = result.to_dict()
        data['path'] = f'upf/{result.filename}'
        data['cache_key'] = element_keys[element]
        entries[element] = data
    report = {
        'format': _CACHE_FORMAT,
        'cache_key': set_key,
        'source': 'pslibrary 1.0.0 (A. Dal Corso, github.com/dalcorso/pslibrary), ultrasoft PBE, scalar-relativistic',
        'ld1_version': ld1_version,
        'ld1_executable': executable,
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'quantities': 'max_delta_e_ry: max over the test configurations of |dEtot_ae - dEtot_ps| (ld1.x "Delta E"); '
                      'max_eigenvalue_error_ry: max |e_AE - e_PS| over all test configurations; cutoffs in Ry',
        'cutoffs_ry': {element: cutoffs[element] for element in sorted(pseudos)},
        'elements': entries,
    }
    (scratch / REPORT_FILENAME).write_text(json.dumps(report, indent=1), encoding='utf-8')
    _publish(scratch, set_dir)


def _load_set(set_dir: pathlib.Path, element_keys: Mapping[str, str]) -> dict[str, PseudopotentialResult] | None:
    """Return the results of a complete, intact set folder, or None."""
    try:
        report = json.loads((set_dir / REPORT_FILENAME).read_text(encoding='utf-8'))
        entries = report['elements']
        if set(entries) != set(element_keys):
            return None
        pseudos = {}
        for element, data in entries.items():
            if data.get('cache_key') != element_keys[element]:
                return None
            result = PseudopotentialResult.from_dict(data, set_dir / data['path'])
            if not result.path.is_file() or _md5(result.path) != result.md5:
                return None
            pseudos[element] = result
        files = sorted(path.name for path in (set_dir / 'upf').iterdir())
        if files != sorted(result.filename for result in pseudos.values()):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pseudos


# --------------------------------------------------------------------------------------------------------------
# AiiDA


def install_pseudo_family(
    label: str = DEFAULT_FAMILY_LABEL,
    elements: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    variants: Mapping[str, str] | None = None,
    ld1_executable: str | os.PathLike = 'ld1.x',
    threshold_ry: float = DEFAULT_THRESHOLD_RY,
):
    """Install the generated pseudopotentials as an aiida-pseudo ``pseudo.family.cutoffs`` family (idempotent).

    Requires a loaded AiiDA profile. If a group ``label`` exists and holds the same elements with the same files (md5,
    or the same content apart from ld1.x's generation-date stamp), it is returned unchanged, except that missing
    cutoff stringencies are added (existing ones are never overwritten, so cutoffs raised after a convergence test
    survive). Otherwise the family is created with ``CutoffsPseudoPotentialFamily.create_from_folder`` and gets the
    ``low``/``normal``/``high`` cutoffs of :func:`family_cutoffs` in Ry, ``normal`` being the default stringency.

    :param elements: default all of :func:`available_elements`; pass a subset for a smaller family (use another
        label: a label holds one set of elements).
    :raises PseudoFamilyConflictError: if ``label`` exists with other content or is not a cutoffs family.
    :return: the ``CutoffsPseudoPotentialFamily``.
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.plugins import DataFactory, GroupFactory

    cutoffs_family_cls = GroupFactory('pseudo.family.cutoffs')
    upf_cls = DataFactory('pseudo.upf')

    pseudo_set = build_pseudopotential_set(
        elements, cache_dir, variants=variants, ld1_executable=ld1_executable, threshold_ry=threshold_ry
    )
    stringencies = family_cutoffs(pseudo_set.cutoffs)

    try:
        family = orm.Group.collection.get(label=label)
    except NotExistent:
        family = None
    if family is not None:
        if not isinstance(family, cutoffs_family_cls):
            raise PseudoFamilyConflictError(
                f'group {label!r} exists but is a {family.type_string!r}, not a pseudo.family.cutoffs family'
            )
        _check_same_content(family, pseudo_set, label)
        defined = family.get_cutoff_stringencies()
        for stringency in STRINGENCIES:
            if stringency not in defined:
                family.set_cutoffs(stringencies[stringency], stringency, unit='Ry')
        try:
            family.get_default_stringency()
        except ValueError:
            family.set_default_stringency(DEFAULT_STRINGENCY)
        return family

    variants_text = ', '.join(f'{el} {pseudo_set.pseudos[el].variant}' for el in pseudo_set.elements)
    description = (
        f'pslibrary 1.0.0 ultrasoft PBE pseudopotentials (A. Dal Corso, github.com/dalcorso/pslibrary), regenerated '
        f'with Quantum ESPRESSO ld1.x ({pseudo_set.ld1_version}) by aiida-mlcampaign from the pslibrary input '
        f'parameters and checked with the pslibrary transferability tests (max |dE(AE-PS)| '
        f'{max(r.max_delta_e_ry for r in pseudo_set.pseudos.values()) * 1000:.1f} mRy). Variants: {variants_text}. '
        f'Cutoffs in Ry: normal = pslibrary suggestion rounded up to 5 Ry, ecutrho 8x; '
        f'low = max(20, 0.6 x normal); high = normal + 10.'
    )
    family = cutoffs_family_cls.create_from_folder(
        pseudo_set.folder, label, description=description, pseudo_type=upf_cls
    )
    for stringency in (DEFAULT_STRINGENCY, *(s for s in STRINGENCIES if s != DEFAULT_STRINGENCY)):
        family.set_cutoffs(stringencies[stringency], stringency, unit='Ry')
    family.set_default_stringency(DEFAULT_STRINGENCY)
    family.base.extras.set('mlcampaign_generation', {
        'ld1_version': pseudo_set.ld1_version,
        'cache_key': pseudo_set.cache_key,
        'threshold_ry': threshold_ry,
        'elements': {
            element: {
                'variant': result.variant,
                'filename': result.filename,
                'md5': result.md5,
                'max_delta_e_ry': result.max_delta_e_ry,
                'suggested_ecutwfc_ry': result.suggested_ecutwfc_ry,
                'suggested_ecutrho_ry': result.suggested_ecutrho_ry,
            }
            for element, result in pseudo_set.pseudos.items()
        },
    })
    return family


def _check_same_content(family, pseudo_set: PseudopotentialSet, label: str) -> None:
    stored = {pseudo.element: pseudo for pseudo in family.nodes}
    if set(stored) != set(pseudo_set.pseudos):
        raise PseudoFamilyConflictError(
            f'family {label!r} exists with elements {", ".join(sorted(stored))}, not '
            f'{", ".join(pseudo_set.elements)}: choose another label'
        )
    differing = []
    for element, result in pseudo_set.pseudos.items():
        node = stored[element]
        if node.md5 == result.md5:
            continue
        if _upf_fingerprint(node.get_content(mode='rb')) != _upf_fingerprint(result.path.read_bytes()):
            differing.append(element)
    if differing:
        raise PseudoFamilyConflictError(
            f'family {label!r} exists but its pseudopotentials for {", ".join(sorted(differing))} differ from the '
            f'generated ones in {pseudo_set.folder}: choose another label'
        )
