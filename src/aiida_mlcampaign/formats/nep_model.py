"""The header of a GPUMD ``nep.txt`` model and the parameter count it implies.

Pure functions (no AiiDA), following ``shared/docs/gpumd-formats.md`` §4 (``nep`` outputs), written from GPUMD
master ``d98135de`` (after tag v5.6) and older tags:

* :func:`read_nep_header` reads the header of a ``nep.txt`` (model tag, species, ZBL, cutoffs incl. per-species
  ones, neighbour counts, ``n_max``, ``basis_size``, ``l_max`` flags, neurons), computes the descriptor size and
  the expected parameter count with the formula of §4.2 (:func:`nep_parameter_count`) and says whether the body
  has that many numbers;
* :func:`architecture_from_header` gives the ``nep.in`` architecture keywords that produce such a model, which
  ``fine_tune`` (:mod:`.nep_in`) and prediction or resume runs (:mod:`.nep_restart`) are checked against.

Errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` (a ``ValueError``) naming the field and line. Two
formula details are not in the doc and were read from the GPUMD source (``src/main_nep/parameters.cu``): the
temperature model (``model_type 3``) adds the temperature as one more descriptor component (and q_scaler), and a
second hidden layer ``neuron N1 N2`` makes the per-type ANN block ``(dim+1)*N1 + (N1+2)*N2``.
"""

from __future__ import annotations

import math
import re

from .frames import FormatError
from .frames import checked_float as _float
from .frames import checked_int as _int
from .nep_common import _MODEL_TYPE_OF_KIND, ELEMENTS, _read_text, _symbols

__all__ = [
    'architecture_from_header',
    'nep_parameter_count',
    'read_nep_header',
]

_TAG_RE = re.compile(
    r'^nep(?P<version>[345])(?P<zbl>_zbl)?'
    r'(?:_(?P<kind>dipole|polarizability|temperature|charge(?P<charge>[1-3])))?(?P<vdw>_vdw)?$'
)


def nep_parameter_count(
    nep_version: int, n_types: int, n_max, basis_size, l_max, neurons, model_type='potential', charge_mode=0,
) -> dict:
    """Descriptor size and parameter counts of doc §4.2 (``l_max`` as in nep.txt: ``[l3, 0|2, q1111, ...]``).

    Returns ``dim_radial``, ``dim_angular``, ``descriptor_dim`` (incl. the temperature input of temperature
    models), ``n_ann_parameters``, ``n_descriptor_parameters``, ``n_parameters`` and ``n_q_scalers``; counts are
    None where no formula is known (a second hidden layer for NEP3/NEP5).
    """
    n_radial, n_angular = (int(v) for v in n_max)
    basis_radial, basis_angular = (int(v) for v in basis_size)
    l3, *flags = (int(v) for v in l_max)
    terms = l3 + sum(1 for f in flags if f)
    dim_radial = n_radial + 1
    dim_angular = (n_angular + 1) * terms
    dim = dim_radial + dim_angular + (1 if model_type == 'temperature' else 0)
    n1, n2 = (list(neurons) + [0])[:2] if isinstance(neurons, (list, tuple)) else (int(neurons), 0)
    ann = None
    if n2:
        if nep_version == 4:
            ann = ((dim + 1) * n1 + (n1 + 2) * n2) * n_types + 1
    elif nep_version == 3:
        ann = (dim + 2) * n1 + 1
    elif nep_version == 4:
        ann = (dim + 2) * n1 * n_types + 1
    elif nep_version == 5:
        ann = ((dim + 2) * n1 + 1) * n_types + 1
    if ann is not None and charge_mode:
        ann += n1 * n_types + 1
        if charge_mode >= 3:
            ann += n1 * n_types
    if ann is not None and model_type == 'polarizability':
        ann *= 2
    descriptor = n_types * n_types * (dim_radial * (basis_radial + 1) + (n_angular + 1) * (basis_angular + 1))
    return {
        'dim_radial': dim_radial,
        'dim_angular': dim_angular,
        'descriptor_dim': dim,
        'n_ann_parameters': ann,
        'n_descriptor_parameters': descriptor,
        'n_parameters': None if ann is None else ann + descriptor,
        'n_q_scalers': dim,
    }


def _header_ints(field: str, tokens: list[str], count: int, number: int) -> list[int]:
    if len(tokens) != count:
        raise FormatError(f'nep.txt line {number}: {field}: expected {count} integer(s), got {tokens!r}')
    try:
        return [_int(field, v) for v in tokens]
    except FormatError as error:
        raise FormatError(f'nep.txt line {number}: {error}') from None


def read_nep_header(text_or_path) -> dict:
    """The header of a ``nep.txt`` (path, handle or text) as a JSON-friendly dict, plus the body check.

    Keys: ``model`` (tag), ``nep_version`` (3/4/5), ``model_type`` (``potential``, ``dipole``, ``polarizability``,
    ``temperature``), ``charge_mode`` (0-3), ``vdw``, ``zbl``, ``zbl_radii`` ``[inner, outer]`` or None,
    ``zbl_typewise_factor``, ``zbl_flexible``, ``species``, ``n_types``, ``per_species_cutoffs``, ``cutoffs`` (one
    ``[r_R, r_A]`` per species), ``cutoff`` (largest ``[r_R, r_A]``), ``max_neighbors`` ``[MN_R, MN_A]``,
    ``n_max``, ``basis_size``, ``l_max`` (as written), ``four_body``, ``five_body``, ``extra_four_body``,
    ``neurons`` ``[N1, N2]``, the counts of :func:`nep_parameter_count`, ``n_zbl_parameters``, ``n_header_lines``,
    ``n_body_lines``, ``expected_body_lines`` and ``body_matches`` (None when no formula is known, e.g. ``_vdw``),
    and ``loadable_by_gpumd_5_3_plus`` (False for NEP3). Body lines must be one number each; a wrong *count* is
    only reported (``body_matches``), anything unreadable raises :class:`FormatError` naming the field and line.
    """
    text = _read_text(text_or_path, 'nep.txt')
    lines = text.splitlines()
    cursor = 0

    def next_line(field: str) -> tuple[int, list[str]]:
        nonlocal cursor
        while cursor < len(lines) and not lines[cursor].strip():
            cursor += 1
        if cursor >= len(lines):
            raise FormatError(f'nep.txt: {field}: header line missing (file ends after line {len(lines)})')
        cursor += 1
        return cursor, lines[cursor - 1].split()

    number, tokens = next_line('model tag')
    tag = tokens[0]
    if tag in ('nep', 'nep_zbl'):
        raise FormatError(f'nep.txt line {number}: model tag: {tag!r} is a NEP2 model (removed in GPUMD v3.9.5), '
                          'not supported')
    match = _TAG_RE.match(tag)
    if not match:
        raise FormatError(f'nep.txt line {number}: model tag: {tag!r} is not a NEP model tag '
                          '(nep3/nep4/nep5 with _zbl, _dipole, _polarizability, _temperature, _charge1-3, _vdw)')
    nep_version = int(match['version'])
    kind = match['kind'] or 'potential'
    charge_mode = int(match['charge']) if match['charge'] else 0
    model_type = 'potential' if charge_mode else kind
    if charge_mode and nep_version != 4:
        raise FormatError(f'nep.txt line {number}: model tag: {tag!r}: charge models exist only for NEP4')
    if nep_version == 5 and model_type != 'potential':
        raise FormatError(f'nep.txt line {number}: model tag: {tag!r}: NEP5 exists only as a potential')
    if len(tokens) < 2:
        raise FormatError(f'nep.txt line {number}: number of types: missing after {tag!r}')
    n_types = _header_ints('number of types', tokens[1:2], 1, number)[0]
    if not 1 <= n_types <= len(ELEMENTS):
        raise FormatError(f'nep.txt line {number}: number of types: must be 1 to {len(ELEMENTS)}, got {n_types}')
    if len(tokens) != 2 + n_types:
        raise FormatError(f'nep.txt line {number}: species: {n_types} types announced but '
                          f'{len(tokens) - 2} symbols given')
    try:
        species = _symbols('species', tokens[2:])
    except FormatError as error:
        raise FormatError(f'nep.txt line {number}: {error}') from None

    has_zbl = bool(match['zbl'])
    zbl_radii, zbl_factor, zbl_flexible = None, None, False
    number, tokens = next_line('zbl' if has_zbl else 'cutoff')
    if tokens[0] == 'zbl':
        if not has_zbl:
            raise FormatError(f'nep.txt line {number}: zbl: line present but the tag {tag!r} has no _zbl')
        if len(tokens) not in (3, 4):
            raise FormatError(f'nep.txt line {number}: zbl: expected r_inner r_outer [factor], got {tokens[1:]!r}')
        try:
            zbl_radii = [_float('zbl (inner)', tokens[1], 0.0), _float('zbl (outer)', tokens[2], 0.0)]
            if len(tokens) == 4:
                zbl_factor = _float('zbl (typewise factor)', tokens[3], 0.0)
        except FormatError as error:
            raise FormatError(f'nep.txt line {number}: {error}') from None
        if zbl_radii[0] > zbl_radii[1]:
            raise FormatError(f'nep.txt line {number}: zbl: inner radius {zbl_radii[0]:g} exceeds outer '
                              f'{zbl_radii[1]:g}')
        zbl_flexible = zbl_radii == [0.0, 0.0]
        number, tokens = next_line('cutoff')
    elif has_zbl:
        raise FormatError(f'nep.txt line {number}: zbl: tag {tag!r} needs a "zbl r_inner r_outer" line, '
                          f'got {tokens[0]!r}')

    if tokens[0] != 'cutoff':
        raise FormatError(f'nep.txt line {number}: cutoff: expected the cutoff line, got {tokens[0]!r}')
    values = tokens[1:]
    if len(values) == 2:
        raise FormatError(f'nep.txt line {number}: cutoff: no neighbour counts MN_R MN_A (file from GPUMD before '
                          'v3.4, refused by current gpumd)')
    if len(values) not in (4, 2 * n_types + 2):
        raise FormatError(f'nep.txt line {number}: cutoff: expected r_R r_A (or one pair per species) then MN_R '
                          f'MN_A, got {len(values)} values')
    try:
        radii = [_float('cutoff', v, 0.0) for v in values[:-2]]
    except FormatError as error:
        raise FormatError(f'nep.txt line {number}: {error}') from None
    max_neighbors = _header_ints('cutoff (neighbour counts)', values[-2:], 2, number)
    if min(radii) <= 0 or min(max_neighbors) < 0:
        raise FormatError(f'nep.txt line {number}: cutoff: radii must be > 0 and neighbour counts >= 0')
    per_species = len(radii) > 2
    pairs = [radii[i:i + 2] for i in range(0, len(radii), 2)]
    if not per_species:
        pairs = pairs * n_types
    for i, (r_radial, r_angular) in enumerate(pairs):
        if r_angular > r_radial:
            raise FormatError(f'nep.txt line {number}: cutoff: angular cutoff {r_angular:g} exceeds radial '
                              f'{r_radial:g} (species {species[i]})')

    number, tokens = next_line('n_max')
    if tokens[0] != 'n_max':
        raise FormatError(f'nep.txt line {number}: n_max: expected the n_max line, got {tokens[0]!r}')
    n_max = _header_ints('n_max', tokens[1:], 2, number)
    number, tokens = next_line('basis_size')
    if tokens[0] != 'basis_size':
        raise FormatError(f'nep.txt line {number}: basis_size: expected the basis_size line, got {tokens[0]!r}')
    basis_size = _header_ints('basis_size', tokens[1:], 2, number)
    if min(n_max + basis_size) < 0:
        raise FormatError(f'nep.txt line {number}: n_max/basis_size: negative value')
    number, tokens = next_line('l_max')
    if tokens[0] != 'l_max':
        raise FormatError(f'nep.txt line {number}: l_max: expected the l_max line, got {tokens[0]!r}')
    if not 2 <= len(tokens) <= 8:
        raise FormatError(f'nep.txt line {number}: l_max: expected l3 and up to 6 flags, got {tokens[1:]!r}')
    l_max = _header_ints('l_max', tokens[1:], len(tokens) - 1, number)
    if not 2 <= l_max[0] <= 8:
        raise FormatError(f'nep.txt line {number}: l_max: l3 must be 2 to 8, got {l_max[0]}')
    if len(l_max) > 1 and l_max[1] not in (0, 1, 2):
        raise FormatError(f'nep.txt line {number}: l_max: 4-body field must be 0 or 2, got {l_max[1]}')
    if any(f not in (0, 1) for f in l_max[2:]):
        raise FormatError(f'nep.txt line {number}: l_max: flags after the 4-body field must be 0 or 1')
    number, tokens = next_line('ANN')
    if tokens[0] != 'ANN':
        raise FormatError(f'nep.txt line {number}: ANN: expected the ANN line, got {tokens[0]!r}')
    neurons = _header_ints('ANN', tokens[1:], len(tokens) - 1, number) if len(tokens) in (2, 3) else None
    if neurons is None:
        raise FormatError(f'nep.txt line {number}: ANN: expected N_neurons [N2], got {tokens[1:]!r}')
    neurons = (neurons + [0])[:2]
    if neurons[0] < 1 or neurons[1] < 0:
        raise FormatError(f'nep.txt line {number}: ANN: neuron counts must be >= 1 (and N2 >= 0), got {neurons}')
    n_header_lines = cursor

    n_body = 0
    for offset, line in enumerate(lines[cursor:], cursor + 1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = float(stripped)
        except ValueError:
            raise FormatError(f'nep.txt line {offset}: parameters: expected one number per line, '
                              f'got {stripped[:40]!r}') from None
        if not math.isfinite(value):
            raise FormatError(f'nep.txt line {offset}: parameters: not a finite number ({stripped!r})')
        n_body += 1

    counts = nep_parameter_count(nep_version, n_types, n_max, basis_size, l_max, neurons, model_type, charge_mode)
    n_zbl = 10 * n_types * (n_types + 1) // 2 if zbl_flexible else 0
    expected = None
    if counts['n_parameters'] is not None and not match['vdw']:
        expected = counts['n_parameters'] + counts['n_q_scalers'] + n_zbl
    return {
        'model': tag,
        'nep_version': nep_version,
        'model_type': model_type,
        'charge_mode': charge_mode,
        'vdw': bool(match['vdw']),
        'zbl': has_zbl,
        'zbl_radii': zbl_radii,
        'zbl_typewise_factor': zbl_factor,
        'zbl_flexible': zbl_flexible,
        'species': species,
        'n_types': n_types,
        'per_species_cutoffs': per_species,
        'cutoffs': pairs,
        'cutoff': [max(p[0] for p in pairs), max(p[1] for p in pairs)],
        'max_neighbors': max_neighbors,
        'n_max': n_max,
        'basis_size': basis_size,
        'l_max': l_max,
        'four_body': len(l_max) > 1 and l_max[1] != 0,
        'five_body': len(l_max) > 2 and l_max[2] == 1,
        'extra_four_body': l_max[3:],
        'neurons': neurons,
        **counts,
        'n_zbl_parameters': n_zbl,
        'n_header_lines': n_header_lines,
        'n_body_lines': n_body,
        'expected_body_lines': expected,
        'body_matches': None if expected is None else n_body == expected,
        'loadable_by_gpumd_5_3_plus': nep_version != 3,
    }


def architecture_from_header(header: dict) -> dict:
    """The ``nep.in`` architecture settings (canonical form) that produce a model with this header."""
    arch = {
        'version': header['nep_version'],
        'model_type': _MODEL_TYPE_OF_KIND[header['model_type']],
        'charge_mode': header['charge_mode'],
        'n_max': list(header['n_max']),
        'basis_size': list(header['basis_size']),
        'neuron': header['neurons'][0] if not header['neurons'][1] else list(header['neurons']),
    }
    l_max = list(header['l_max'])
    flags = [1 if len(l_max) > 1 and l_max[1] else 0, *(l_max[2:] or [0])]
    while len(flags) > 2 and flags[-1] == 0:
        flags.pop()
    arch['l_max'] = [l_max[0], *flags]
    if header['per_species_cutoffs']:
        arch['cutoff'] = [r for pair in header['cutoffs'] for r in pair]
    else:
        arch['cutoff'] = list(header['cutoffs'][0])
    if header['zbl'] and not header['zbl_flexible']:
        arch['zbl'] = header['zbl_radii'][1]
        if header['zbl_typewise_factor'] is not None:
            arch['use_typewise_cutoff_zbl'] = header['zbl_typewise_factor']
    return arch
