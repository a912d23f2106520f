"""GPUMD's ``nep.in`` control file: writer, reader and the documented defaults of each GPUMD version.

Pure functions (no AiiDA), following ``shared/docs/gpumd-formats.md`` §2, written from GPUMD master ``d98135de``
(after tag v5.6) and older tags:

* :func:`nep_in` writes ``nep.in`` with ``type`` first and *every* architecture keyword explicit, with the defaults
  of the GPUMD version given (``n_max``/``basis_size`` changed in v5.2), after checking the ranges of §2 (errors
  name the keyword); ``fine_tune`` is checked against the foundation model's header (:mod:`.nep_model`);
* :func:`read_nep_in` reads one back into the same settings dict and :func:`fill_nep_defaults` completes a dict
  with the defaults of a version;
* ``engine='neppo'`` (:data:`ENGINES`) reads and writes the dialect of neppo, the CPU trainer (:mod:`.neppo`).

The settings are always written explicitly because the defaults changed between versions: a file must mean the
same model whichever GPUMD reads it. Errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` (a
``ValueError``) naming the keyword and, for a file, the line.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np

from . import neppo
from .frames import FormatError
from .frames import checked_float as _float
from .frames import checked_int as _int
from .nep_common import _MODEL_TYPE_OF_KIND, ELEMENTS, Version, _read_text, _symbols, parse_gpumd_version
from .nep_model import architecture_from_header, read_nep_header

__all__ = [
    'ARCHITECTURE_KEYWORDS',
    'ENGINES',
    'fill_nep_defaults',
    'nep_in',
    'read_nep_in',
]

#: Programs that train a NEP from ``nep.in``: GPUMD's ``nep`` (GPU) and neppo (PyTorch, CPU or GPU; :mod:`.neppo`).
ENGINES = ('gpumd', 'neppo')

#: Keywords that define the model; always written by :func:`nep_in` (defaults changed between versions).
ARCHITECTURE_KEYWORDS = ('version', 'model_type', 'zbl', 'cutoff', 'n_max', 'basis_size', 'l_max', 'neuron')

#: Order in which :func:`nep_in` writes the keywords (``type`` first: ``cutoff``/``type_weight`` need it).
_KEYWORD_ORDER = (
    'type', 'version', 'model_type', 'charge_mode', 'prediction', 'output_descriptor', 'zbl',
    'use_typewise_cutoff_zbl', 'cutoff', 'n_max', 'basis_size', 'l_max', 'neuron', 'fine_tune', 'import_q_scaler',
    'lambda_1', 'lambda_2', 'lambda_e', 'lambda_f', 'lambda_v', 'lambda_shear', 'lambda_q', 'lambda_z', 'atomic_v',
    'force_delta', 'type_weight', 'batch', 'population', 'generation', 'output_interval', 'save_potential',
    'initial_para', 'sigma0', 'vdw', 'charge_vdw',
)

_ALIASES = {'mode': 'model_type'}


def _defaults(version: Version | None) -> dict:
    """The documented defaults of ``nep.in`` (doc §2) for a GPUMD version (None: current)."""
    new = version is None or version >= (5, 2)
    return {
        'version': 4,
        'model_type': 0,
        'charge_mode': 0,
        'prediction': 0,
        'output_descriptor': 0,
        'cutoff': [8.0, 4.0],
        'n_max': [6, 6] if new else [4, 4],
        'basis_size': [6, 6] if new else [8, 8],
        'l_max': [4, 1, 0],
        'neuron': 30,
        'lambda_e': 1.0,
        'lambda_f': 1.0,
        'lambda_shear': 1.0,
        'lambda_q': 0.1,
        'lambda_z': 0.5,
        'atomic_v': 0,
        'force_delta': 0.0,
        'batch': 1000,
        'population': 50,
        'generation': 100000,
        'output_interval': 100,
        'save_potential': [100000, 1, 0],
        'import_q_scaler': 0,
        'initial_para': 1.0,
        'sigma0': 0.1,
    }


def _values(key: str, value) -> list:
    """A settings value as a flat list (a string is split on whitespace, nested lists are flattened)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple, np.ndarray)):
        flat = []
        for item in value:
            if isinstance(item, (list, tuple, np.ndarray)):
                flat.extend(_values(key, item))
            else:
                flat.append(item)
        return flat
    return [value]


def _count(key: str, values: list, allowed: t.Collection[int]) -> None:
    if len(values) not in allowed:
        expected = ' or '.join(str(n) for n in sorted(allowed))
        raise FormatError(f'{key}: expected {expected} value(s), got {len(values)}: {values!r}')


def _canonical(key: str, value, n_types: int | None, version: Version | None, from_file: bool = False) -> t.Any:
    """Check one ``nep.in`` keyword (doc §2 limits) and return its canonical value.

    ``l_max`` is canonical as ``[l3, q222, q1111, ...]`` with 0/1 flags; in a file for GPUMD before v5.3
    (``from_file``) the 4-body field must be written 0 or 2, as those versions require.
    """
    vals = _values(key, value)
    new_l_max = version is None or version >= (5, 3)
    if key == 'type':
        return _symbols(key, vals)
    if key == 'version':
        _count(key, vals, {1})
        allowed = {2, 3, 4}
        if version is not None:
            allowed = {2, 3, 4} if version < (3, 9, 5) else {3, 4} if version < (5, 3) else {4}
        number = _int(key, vals[0])
        if number not in allowed:
            raise FormatError(f'{key}: NEP version {number} is not accepted by this GPUMD version '
                              f'(allowed: {sorted(allowed)})')
        return number
    if key == 'model_type':
        _count(key, vals, {1})
        if isinstance(vals[0], str) and vals[0] in _MODEL_TYPE_OF_KIND:
            return _MODEL_TYPE_OF_KIND[vals[0]]
        return _int(key, vals[0], 0, 3)
    if key == 'charge_mode':
        _count(key, vals, {1, 2})
        mode = _int(key, vals[0], 0, 2)
        if len(vals) == 2:
            return [mode, _int(f'{key} (flip)', vals[1], 0, 1)]
        return mode
    if key in ('prediction', 'atomic_v', 'import_q_scaler'):
        _count(key, vals, {1})
        return _int(key, vals[0], 0, 1)
    if key == 'output_descriptor':
        _count(key, vals, {1})
        return _int(key, vals[0], 0, 2)
    if key == 'zbl':
        _count(key, vals, {1})
        return _float(key, vals[0], 1.0, 4.0)
    if key == 'use_typewise_cutoff_zbl':
        if value is True or vals == []:
            return 0.7
        _count(key, vals, {1})
        return _float(key, vals[0], 0.5)
    if key == 'cutoff':
        _count(key, vals, {2} if n_types is None else {2, 2 * n_types})
        if len(vals) > 2 and version is not None and version < (4, 7):
            raise FormatError(f'{key}: per-species cutoffs need GPUMD v4.7 or newer')
        cut = [_float(key, v) for v in vals]
        for i in range(0, len(cut), 2):
            r_radial, r_angular = cut[i], cut[i + 1]
            label = key if len(cut) == 2 else f'{key} (species {i // 2 + 1})'
            if r_angular < 3.0:
                raise FormatError(f'{label}: angular cutoff must be >= 3 Å, got {r_angular:g}')
            if r_angular > r_radial:
                raise FormatError(f'{label}: angular cutoff {r_angular:g} exceeds radial cutoff {r_radial:g}')
            if r_radial > 100.0:
                raise FormatError(f'{label}: radial cutoff must be <= 100 Å, got {r_radial:g}')
        return cut
    if key == 'n_max':
        _count(key, vals, {2})
        return [_int(f'{key} (radial)', vals[0], 0, 12), _int(f'{key} (angular)', vals[1], 0, 8)]
    if key == 'basis_size':
        _count(key, vals, {2})
        return [_int(f'{key} (radial)', vals[0], 0, 16), _int(f'{key} (angular)', vals[1], 0, 12)]
    if key == 'l_max':
        _count(key, vals, set(range(1, 8 if new_l_max else 4)))
        l3 = _int(f'{key} (3-body)', vals[0], 2, 8)
        flags = [1, 0]
        if len(vals) >= 2:  # the 4-body field is 0/2 before v5.3 (l of the 4-body term), a 0/1 flag since
            four = _int(f'{key} (4-body)', vals[1])
            allowed4 = {0, 2} if from_file and not new_l_max else {0, 1, 2}
            if four not in allowed4:
                raise FormatError(f'{key} (4-body): must be one of {sorted(allowed4)}, got {four}')
            flags[0] = 1 if four else 0
        if len(vals) >= 3:
            flags[1] = _int(f'{key} (5-body)', vals[2], 0, 1)
        for k, extra in enumerate(vals[3:]):
            flags.append(_int(f'{key} (extra 4-body flag {k + 1})', extra, 0, 1))
        if not new_l_max and flags[1] and not flags[0]:
            raise FormatError(f'{key}: the 5-body term needs the 4-body term before GPUMD v5.3')
        while len(flags) > 2 and flags[-1] == 0:
            flags.pop()
        return [l3, *flags]
    if key == 'neuron':
        _count(key, vals, {1, 2})
        n1 = _int(key, vals[0], 1, 120)
        if len(vals) == 2:
            n2 = _int(f'{key} (second layer)', vals[1], 0, 120)
            if n2:
                return [n1, n2]
        return n1
    if key in ('lambda_1', 'lambda_2', 'lambda_e', 'lambda_f', 'lambda_v', 'lambda_shear', 'lambda_q',
               'lambda_z', 'force_delta'):
        _count(key, vals, {1})
        return _float(key, vals[0], 0.0)
    if key == 'type_weight':
        if n_types is not None:
            _count(key, vals, {n_types})
        return [_float(key, v, 0.0) for v in vals]
    if key == 'batch':
        _count(key, vals, {1, 2})
        size = _int(key, vals[0], 1)
        if len(vals) == 2 and _int(f'{key} (use_full_batch)', vals[1], 0, 1):
            return [size, 1]
        return size
    if key == 'population':
        _count(key, vals, {1})
        return _int(key, vals[0], 10, 200)
    if key == 'generation':
        _count(key, vals, {1})
        return _int(key, vals[0], 0, 10_000_000)
    if key == 'output_interval':
        _count(key, vals, {1})
        return _int(key, vals[0], 1)
    if key == 'save_potential':
        _count(key, vals, {3})
        return [_int(f'{key} (interval)', vals[0], 0), _int(f'{key} (format)', vals[1], 0, 1),
                _int(f'{key} (save_restart)', vals[2], 0, 1)]
    if key == 'fine_tune':
        _count(key, vals, {2})
        return [str(v) for v in vals]
    if key == 'initial_para':
        _count(key, vals, {1})
        return _float(key, vals[0], 0.0)
    if key == 'sigma0':
        _count(key, vals, {1})
        return _float(key, vals[0], 0.0)
    if key in ('vdw', 'charge_vdw'):
        _count(key, vals, {1})
        return _int(key, vals[0], 0)
    raise FormatError(f'{key}: unknown nep.in keyword (known: {", ".join(_KEYWORD_ORDER)})')


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise FormatError(f'engine: expected one of {ENGINES}, got {engine!r}')
    return engine


def _check_settings(settings: dict, version: Version | None, engine: str = 'gpumd') -> dict:
    """Canonical, validated settings; cross-keyword rules of doc §2 included.

    ``engine='neppo'`` reads the settings as neppo does (:mod:`.neppo`): its own keywords (``seed``,
    ``learning_rate``, ...) and training stages are allowed, what neppo ignores or cannot run is refused. With
    ``'gpumd'`` a neppo keyword is refused, because ``nep`` would stop on it after the GPU queue.
    """
    if not isinstance(settings, dict):
        raise FormatError(f'settings: expected a dict of nep.in keywords, got {type(settings).__name__}')
    engine = _engine(engine)
    merged = {}
    for key, value in settings.items():
        name = _ALIASES.get(key, key)
        if name in merged:
            raise FormatError(f'{name}: given twice (also as its alias)')
        merged[name] = value
    if 'type' not in merged:
        raise FormatError('type: mandatory keyword missing (the species list, e.g. ["Te", "Pb"])')
    species = _canonical('type', merged['type'], None, version)
    out = {'type': species}
    known = _KEYWORD_ORDER + (neppo.KEYWORDS if engine == 'neppo' else ())
    stages = neppo.neppo_stages(merged) if engine == 'neppo' else 1
    for key in known[1:]:
        if key not in merged or merged[key] is None or merged[key] is False:
            continue
        if engine == 'neppo':
            try:
                out[key] = neppo.canonical_neppo_value(key, _values(key, merged[key]), stages)
                continue
            except KeyError:
                pass  # read as GPUMD reads it
        out[key] = _canonical(key, merged[key], len(species), version)
    unknown = sorted(set(merged) - set(known))
    if unknown:
        if engine == 'gpumd' and unknown[0] in neppo.KEYWORDS:
            raise FormatError(f'{unknown[0]}: a keyword of neppo (the CPU trainer), which GPUMD\'s nep does not read')
        raise FormatError(f'{unknown[0]}: unknown nep.in keyword (known: {", ".join(known)})')
    _cross_checks(out)
    return out


def _cross_checks(s: dict) -> None:
    model_type = s.get('model_type', 0)
    charge = s.get('charge_mode', 0)
    charge = charge[0] if isinstance(charge, list) else charge
    if s.get('output_descriptor') and not s.get('prediction'):
        raise FormatError('output_descriptor: only allowed in prediction mode (prediction 1)')
    if 'use_typewise_cutoff_zbl' in s and 'zbl' not in s:
        raise FormatError('use_typewise_cutoff_zbl: needs zbl')
    if s.get('atomic_v') and model_type not in (1, 2):
        raise FormatError('atomic_v: only for dipole or polarizability models (model_type 1 or 2)')
    if charge:
        if model_type != 0:
            raise FormatError('charge_mode: charges (qNEP) are only supported for potential models (model_type 0)')
        if len(s.get('cutoff', [])) > 2:
            raise FormatError('charge_mode: qNEP needs one uniform cutoff pair, not per-species cutoffs')
        if isinstance(s.get('neuron'), list):
            raise FormatError('charge_mode: qNEP allows only one hidden layer (neuron N1)')


def fill_nep_defaults(settings: dict, version='5.6', engine: str = 'gpumd') -> dict:
    """``settings`` validated and completed with the documented defaults of GPUMD ``version`` (doc §2).

    ``lambda_1``/``lambda_2`` stay absent when not given (GPUMD computes them; neppo then adds no such term),
    ``lambda_v`` defaults to 1.0 for dipole/polarizability models and 0.1 otherwise, ``type_weight`` to 1 for each
    species. With ``engine='neppo'`` the SNES keywords are dropped and neppo's own defaults (batch 32, seed,
    learning rate, ...; :data:`.neppo.DEFAULTS`) are used: the dict says what the run did.
    """
    ver = parse_gpumd_version(version)
    checked = _check_settings(settings, ver, engine)
    full = {'type': checked['type'], **_defaults(ver)}
    full['lambda_v'] = 1.0 if checked.get('model_type', 0) in (1, 2) else 0.1
    full['type_weight'] = [1.0] * len(checked['type'])
    order = _KEYWORD_ORDER
    if engine == 'neppo':
        for key in neppo.REFUSED:
            full.pop(key, None)
        full.update(neppo.DEFAULTS)
        order = _KEYWORD_ORDER + neppo.KEYWORDS
    full.update(checked)
    return {key: full[key] for key in order if key in full}


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _nep_in_tokens(key: str, value) -> list[str]:
    if key == 'type':
        return [str(len(value)), *value]
    if key == 'l_max':
        # The 4-body field is written 2/0 for every version: before v5.3 it is the l of the 4-body term and
        # must be 0 or 2; later versions treat any non-zero value as "on", nep.txt headers always carry 2/0,
        # and fine_tune compares the nep.in value with the foundation header's field (NEP89: "l_max 4 2 1").
        l3, flags = value[0], list(value[1:])
        flags += [0] * (2 - len(flags))
        return [_fmt(l3), '2' if flags[0] else '0', *(_fmt(f) for f in flags[1:])]
    if key == 'use_typewise_cutoff_zbl':
        return [_fmt(value)]
    return [_fmt(v) for v in _values(key, value)]


def nep_in(settings: dict, version='5.6', *, foundation=None, engine: str = 'gpumd') -> str:
    """The text of ``nep.in`` for ``settings`` (a dict of ``nep.in`` keywords) and GPUMD ``version``.

    Values are Python scalars or lists: ``type`` a list of element symbols (the count is written by this
    function), ``cutoff`` ``[r_R, r_A]`` or one pair per species (flat or nested), ``n_max``/``basis_size``
    ``[radial, angular]``, ``l_max`` ``[l3, 4-body flag, 5-body flag, ...]`` (the 4-body field may be given as 0/1
    or as 0/2; it is always written 0/2, see :func:`_nep_in_tokens`), ``neuron`` ``N1`` or ``[N1, N2]``,
    ``batch`` ``N`` or ``[N, use_full_batch]``,
    ``save_potential`` exactly ``[interval, format, save_restart]``, ``fine_tune`` ``[foundation.txt,
    foundation.restart]``, ``use_typewise_cutoff_zbl`` ``True`` or a factor, others one number.

    ``type`` comes first and every architecture keyword (``version``, ``model_type``, ``cutoff``, ``n_max``,
    ``basis_size``, ``l_max``, ``neuron``; ``zbl``/``charge_mode`` when used) is written explicitly with the
    version's default when not given. With ``fine_tune``, ``foundation`` (the foundation ``nep.txt`` path or
    text, or a :func:`~.nep_model.read_nep_header` dict) is required: missing architecture keywords are taken
    from it and given ones must match it, and the species must be among the foundation's.

    ``engine='neppo'`` writes the file for neppo's ``neppo train`` (:mod:`.neppo`): its keywords after GPUMD's,
    several ``generation`` values as training stages, and refuses what neppo would ignore or cannot run.
    """
    ver = parse_gpumd_version(version)
    checked = _check_settings(settings, ver, engine)
    if 'fine_tune' in checked:
        checked = _apply_foundation(checked, foundation, ver)
    elif foundation is not None:
        raise FormatError('fine_tune: a foundation model was given but fine_tune is not set')
    defaults = _defaults(ver)
    for key in ('version', 'model_type', 'cutoff', 'n_max', 'basis_size', 'l_max', 'neuron'):
        checked.setdefault(key, defaults[key])
    lines = []
    for key in _KEYWORD_ORDER + neppo.KEYWORDS:
        if key not in checked:
            continue
        value = checked[key]
        if key == 'charge_mode' and value == 0:
            continue
        lines.append(f'{key:<14} ' + ' '.join(_nep_in_tokens(key, value)))
    return '\n'.join(lines) + '\n'


def _apply_foundation(checked: dict, foundation, version: Version) -> dict:
    if foundation is None:
        raise FormatError('fine_tune: pass foundation= (the foundation nep.txt path or text, or its header dict) '
                          'so that the architecture can be checked against it')
    header = foundation if isinstance(foundation, dict) else read_nep_header(foundation)
    arch = architecture_from_header(header)
    missing = [s for s in checked['type'] if s not in header['species']]
    if missing:
        raise FormatError(f'type: species {missing} are not in the foundation model ({header["model"]}, '
                          f'{header["n_types"]} species)')
    if header.get('zbl_flexible'):
        raise FormatError('fine_tune: a foundation model with flexible ZBL (zbl.in) cannot be checked')
    out = dict(checked)
    for key in ('version', 'model_type', 'charge_mode', 'zbl', 'use_typewise_cutoff_zbl', 'cutoff', 'n_max',
                'basis_size', 'l_max', 'neuron'):
        expected = arch.get(key)
        given = checked.get(key)
        if given is None:
            if expected is not None and not (key == 'charge_mode' and expected == 0):
                out[key] = expected
            continue
        if key == 'charge_mode':
            given = given[0] if isinstance(given, list) else given
        if expected is None or not _same(given, expected):
            raise FormatError(f'{key}: {given!r} does not match the foundation model\'s {expected!r} '
                              f'(architecture keywords must equal those of {header["model"]})')
    return _check_settings(out, version)


def _same(a, b) -> bool:
    if isinstance(a, list) != isinstance(b, list):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def _strip_comment(line: str) -> list[str]:
    tokens = []
    for token in line.split():
        if token.startswith('#'):
            break
        tokens.append(token)
    return tokens


def read_nep_in(text_or_path, version=None, engine: str = 'gpumd') -> dict:
    """The settings dict of a ``nep.in`` (text, path or handle), in the canonical form :func:`nep_in` takes.

    ``#`` starts a comment anywhere; ``mode`` is read as ``model_type``; ``cutoff`` and ``type_weight`` before
    ``type`` are refused (as by GPUMD); a keyword given twice keeps its last value (as in GPUMD). ``version``
    (optional) applies that GPUMD version's limits, otherwise the union of all versions' limits is used.
    ``engine='neppo'`` reads it as neppo does: its keywords and training stages; a keyword given twice, or one
    neppo would ignore, is refused (neppo refuses the first and only warns about the second).
    """
    text = _read_text(text_or_path, 'nep.in')
    ver = None if version is None else parse_gpumd_version(version)
    engine = _engine(engine)
    known = _KEYWORD_ORDER + (neppo.KEYWORDS if engine == 'neppo' else ())
    lines: dict = {}
    for number, line in enumerate(text.splitlines(), 1):
        tokens = _strip_comment(line)
        if not tokens:
            continue
        key, args = _ALIASES.get(tokens[0], tokens[0]), tokens[1:]
        if key not in known:
            raise FormatError(f'nep.in line {number}: {key}: unknown keyword')
        if key in ('cutoff', 'type_weight') and 'type' not in lines:
            raise FormatError(f'nep.in line {number}: {key}: must come after type')
        if engine == 'neppo' and key in lines:
            raise FormatError(f'nep.in line {number}: {key}: given twice (neppo refuses a repeated keyword)')
        lines[key] = (number, args)
    if 'type' not in lines:
        raise FormatError('nep.in: type: mandatory keyword missing')
    stages = len(lines['generation'][1]) if engine == 'neppo' and 'generation' in lines else 1
    raw: dict = {}
    species_count = None
    for key, (number, args) in lines.items():
        try:
            if key == 'type':
                if not args:
                    raise FormatError('type: expected the number of species then the symbols')
                species_count = _int('type (count)', args[0], 1, len(ELEMENTS))
                if len(args) - 1 != species_count:
                    raise FormatError(f'type: {species_count} species announced but {len(args) - 1} symbols given')
                args = args[1:]
            try:
                if engine != 'neppo':
                    raise KeyError(key)
                neppo.canonical_neppo_value(key, args, stages)
            except KeyError:
                _canonical(key, args, species_count, ver, from_file=True)
        except FormatError as error:
            raise FormatError(f'nep.in line {number}: {error}') from None
        raw[key] = args
    return _check_settings(raw, ver, engine)
