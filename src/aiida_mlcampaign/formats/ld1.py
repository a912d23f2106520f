"""ld1.x output and UPF headers, read without running anything: the transferability tests of a ``.test.in`` run
(``dEtot_ae``/``dEtot_ps``/``Delta E``), the error, warning and ghost messages that make a generation fail, and the
header of a UPF (``z_valence``, suggested cutoffs, element) with a date-free fingerprint.

Pure functions (no AiiDA, no ld1.x): :mod:`aiida_mlcampaign.setup.pseudo_cache` runs ld1.x and calls them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re

_ERROR_ROUTINE_RE = re.compile(r'Error in routine\s+(?P<routine>\S+)\s*\((?P<code>-?\d+)\):\s*\n\s*(?P<message>[^\n]*)')

_BAD_OUTPUT_RE = re.compile(
    r'\bwarning\b|\bghost|\bbeware\b|\berrors?\s+in\b|not\s+converged|convergence\s+not\s+achieved',
    re.IGNORECASE,
)

_DELTA_E_RE = re.compile(
    r'dEtot_ae\s*=\s*(?P<ae>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry\s*\n'
    r'\s*dEtot_ps\s*=\s*(?P<ps>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry\s*,\s*'
    r'Delta E\s*=\s*(?P<delta>[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?)\s*Ry'
)

_EIGENVALUE_HEADER_RE = re.compile(r'e AE \(Ry\)\s+e PS \(Ry\)\s+De AE-PS \(Ry\)')

_EIGENVALUE_ROW_RE = re.compile(
    r'^\s*\d+\s+\d+\s+\d[SPDFspdf]\s+\d+\(\s*[\d.]+\)\s+[-+]?\d+\.\d+\s+[-+]?\d+\.\d+\s+(?P<de>[-+]?\d+\.\d+)'
)

_CONFIGTS_RE = re.compile(r"configts\(\s*(?P<index>\d+)\s*\)\s*=\s*'(?P<config>[^']*)'", re.IGNORECASE)

_NCONF_RE = re.compile(r'\bnconf\s*=\s*(?P<nconf>\d+)', re.IGNORECASE)

_WFC_CUTOFF_RE = re.compile(r'Suggested minimum cutoff for wavefunctions:\s*(?P<value>[\d.]+)\s*Ry')

_RHO_CUTOFF_RE = re.compile(r'Suggested minimum cutoff for charge density:\s*(?P<value>[\d.]+)\s*Ry')

_Z_VALENCE_RE = re.compile(r'z_valence\s*=\s*"\s*(?P<value>[-+\d.EeDd]+)\s*"')

_UPF_ELEMENT_RE = re.compile(r'\belement\s*=\s*"\s*(?P<value>[A-Za-z]{1,2})\s*"')

_UPF_DATE_RE = re.compile(r'(Generation date:[^\n]*|\bdate\s*=\s*"[^"]*")')


class PseudopotentialGenerationError(RuntimeError):
    """Base class of the errors raised while generating or testing a pseudopotential."""


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
