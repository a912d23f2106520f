"""Regenerate the pslibrary 1.0.0 ultrasoft PBE pseudopotentials with ``ld1.x`` and cache them by content.

Plain Python plus the ``ld1.x`` executable (no AiiDA): :mod:`aiida_mlcampaign.setup.pseudos` installs the result
in AiiDA, :mod:`aiida_mlcampaign.formats.ld1` reads ld1.x's output. See :mod:`aiida_mlcampaign.setup.pseudos` for
the steps and the cache layout.
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

from aiida_mlcampaign.formats.ld1 import (
    Ld1RunError,
    PseudopotentialGenerationError,
    PseudopotentialTestError,
    TransferabilityTest,
    _check_output,
    _max_eigenvalue_error,
    parse_transferability,
    parse_upf_header,
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

_CACHE_FORMAT = 1

_INPUT_RE = re.compile(r'^(?P<element>[A-Z][a-z]?)\.pbe-(?P<variant>[a-z]+)-rrkjus_psl\.1\.0\.0\.in$')

_VERSION_RE = re.compile(r'Program\s+LD1\s+v\.(?P<version>\S+)\s+starts')

_FILE_PSEUDOPW_RE = re.compile(r"file_pseudopw\s*=\s*'(?P<name>[^']+)'", re.IGNORECASE)

_FILE_PSEUDO_RE = re.compile(r"file_pseudo\s*=\s*'(?P<name>[^']+)'", re.IGNORECASE)

_SCRATCH_PATTERNS = ('*.wfc', '*.pot', 'ld1.test', 'CRASH', 'input_tmp.in')


class UnsupportedElementError(ValueError):
    """No ld1.x parameters ship for this element (or variant); the message lists the supported ones."""


class Ld1NotFoundError(FileNotFoundError):
    """The ``ld1.x`` executable was not found."""


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
