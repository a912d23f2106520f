"""GPUMD ``nep`` files: the ``nep.txt`` model header, the ``nep.in`` control file, ``loss.out`` and the parity files.

Pure functions (no AiiDA). Everything follows ``shared/docs/gpumd-formats.md`` §2 (``nep.in``) and §4
(``nep`` outputs), written from GPUMD master ``d98135de`` (after tag v5.6) and older tags:

* :func:`read_nep_header` reads the header of a ``nep.txt`` (model tag, species, ZBL, cutoffs incl. per-species
  ones, neighbour counts, ``n_max``, ``basis_size``, ``l_max`` flags, neurons), computes the descriptor size and
  the expected parameter count with the formula of §4.2 and says whether the body has that many numbers;
* :func:`nep_in` writes ``nep.in`` with ``type`` first and *every* architecture keyword explicit, with the defaults
  of the GPUMD version given (``n_max``/``basis_size`` changed in v5.2), after checking the ranges of §2 (errors
  name the keyword); ``fine_tune`` is checked against the foundation model's header; :func:`read_nep_in` reads one
  back into the same settings dict and :func:`fill_nep_defaults` completes a dict with the defaults of a version;
* :func:`read_loss` (10, 14 or 6 columns, ``#`` lines skipped) and :func:`read_parity` (``energy``/``force``/
  ``virial``/``stress``/``dipole``/``polarizability`` files: prediction columns then target columns; a missing
  target, written as -1e6 or, in ``stress_*.out`` before v4.9.1, about -4.5e6, becomes NaN);
* for whole runs: :func:`read_nep_stdout`, :func:`read_nep_restart` and :func:`expected_parameter_count` (resume
  checks), :func:`apply_architecture` (prediction from an existing model), :func:`gpumd_batch_order`,
  :func:`match_train_order` and :func:`restore_train_order` (``*_train.out`` rows back in ``train.xyz`` order when
  ``nep`` trained in batches) and :func:`parity_rmse`.

Errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` (a ``ValueError``) naming the keyword, field or
line. Two formula details are not in the doc and were read from the GPUMD source (``src/main_nep/parameters.cu``):
the temperature model (``model_type 3``) adds the temperature as one more descriptor component (and q_scaler), and
a second hidden layer ``neuron N1 N2`` makes the per-type ANN block ``(dim+1)*N1 + (N1+2)*N2``.
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import re
import typing as t

import numpy as np
from ase.data import chemical_symbols

from . import neppo
from .frames import FormatError
from .frames import checked_float as _float
from .frames import checked_int as _int
from .textio import open_for_read

__all__ = [
    'ARCHITECTURE_KEYWORDS',
    'ENGINES',
    'LOSS_COLUMNS',
    'MISSING_TARGET_THRESHOLD',
    'PARITY_COMPONENTS',
    'PARITY_RMSE_UNITS',
    'apply_architecture',
    'architecture_from_header',
    'expected_parameter_count',
    'fill_nep_defaults',
    'gpumd_batch_order',
    'match_train_order',
    'nep_in',
    'nep_parameter_count',
    'parity_rmse',
    'parse_gpumd_version',
    'read_loss',
    'read_nep_header',
    'read_nep_in',
    'read_nep_restart',
    'read_nep_stdout',
    'read_parity',
    'read_parity_set',
    'restore_train_order',
]

#: GPUMD's element table: H ... Pu (94 elements); ``type`` symbols must be among them, case-sensitive.
ELEMENTS = tuple(chemical_symbols[1:95])

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

#: A parity-file target at or below this value means "no reference value" (doc §4.4).
MISSING_TARGET_THRESHOLD = -1.0e5

_MODEL_TYPES = {0: 'potential', 1: 'dipole', 2: 'polarizability', 3: 'temperature'}
_MODEL_TYPE_OF_KIND = {v: k for k, v in _MODEL_TYPES.items()}

_INT_RE = re.compile(r'^[+-]?\d+$')
_TAG_RE = re.compile(
    r'^nep(?P<version>[345])(?P<zbl>_zbl)?'
    r'(?:_(?P<kind>dipole|polarizability|temperature|charge(?P<charge>[1-3])))?(?P<vdw>_vdw)?$'
)

Version = tuple[int, ...]


# ================================================================================================ versions
def parse_gpumd_version(version) -> Version:
    """``'5.6'``, ``'v3.9.5'``, ``(4, 0)``, ``5.2`` -> a tuple of ints; ``'master'`` -> (5, 6, 99) (after v5.6)."""
    if isinstance(version, tuple):
        parts = version
    else:
        text = str(version).strip().lower()
        if text in ('master', 'latest'):
            return (5, 6, 99)
        text = text.removeprefix('v')
        parts = text.split('.')
    try:
        parsed = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise FormatError(f'version: cannot read GPUMD version {version!r} (expected e.g. "5.6")') from None
    if not parsed or parsed < (3, 5):
        raise FormatError(f'version: GPUMD {version!r} is not supported (nep.in writing needs v3.5 or newer)')
    return parsed


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


def _symbols(key: str, values: list) -> list[str]:
    symbols = [str(v) for v in values]
    if not 1 <= len(symbols) <= len(ELEMENTS):
        raise FormatError(f'{key}: between 1 and {len(ELEMENTS)} species are allowed, got {len(symbols)}')
    for symbol in symbols:
        if symbol not in ELEMENTS:
            raise FormatError(f'{key}: {symbol!r} is not an element of GPUMD\'s table (H ... Pu, case-sensitive)')
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise FormatError(f'{key}: species listed twice: {duplicates}')
    return symbols


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


# ================================================================================================ nep.in
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
    text, or a :func:`read_nep_header` dict) is required: missing architecture keywords are taken from it and
    given ones must match it, and the species must be among the foundation's.

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


# ================================================================================================ nep.txt
def _read_text(text_or_path, what: str) -> str:
    if isinstance(text_or_path, bytes):
        return text_or_path.decode('utf-8')
    if hasattr(text_or_path, 'read'):
        content = text_or_path.read()
        return content.decode('utf-8') if isinstance(content, bytes) else content
    if isinstance(text_or_path, str) and ('\n' in text_or_path or '\r' in text_or_path):
        return text_or_path
    if isinstance(text_or_path, (str, os.PathLike)):
        path = pathlib.Path(text_or_path)
        if not path.is_file():
            raise FormatError(f'{what}: {str(path)!r} is not an existing file (text must contain a newline)')
        return path.read_text(encoding='utf-8')
    raise TypeError(f'{what}: expected a path, a handle or the text, got {type(text_or_path).__name__}')


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


# ================================================================================================ outputs
LOSS_COLUMNS = {
    10: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_energy_train', 'rmse_force_train',
         'rmse_virial_train', 'rmse_energy_test', 'rmse_force_test', 'rmse_virial_test'),
    14: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_energy_train', 'rmse_force_train',
         'rmse_virial_train', 'rmse_charge_train', 'rmse_bec_train', 'rmse_energy_test', 'rmse_force_test',
         'rmse_virial_test', 'rmse_charge_test', 'rmse_bec_test'),
    6: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_tensor_train', 'rmse_tensor_test'),
}
_LOSS_KINDS = {10: 'potential', 14: 'charge', 6: 'tensor'}
#: Names in a ``# columns`` header (neppo writes GPUMD's short ones) -> the names of :data:`LOSS_COLUMNS`.
_LOSS_HEADER_NAMES = {'total': 'loss_total', 'L1': 'loss_l1', 'L2': 'loss_l2'}


def _numeric_rows(handle, what: str, hint: str = '') -> tuple[list[list[float]], list[int], list[str]]:
    """Rows of floats (``#`` and blank lines skipped), their line numbers and the ``#`` lines."""
    rows, numbers, comments = [], [], []
    for number, line in enumerate(handle, 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('#'):
            comments.append(stripped)
            continue
        try:
            row = [float(v) for v in stripped.split()]
        except ValueError:
            raise FormatError(f'{what} line {number}: expected numbers, got {stripped[:60]!r}{hint}') from None
        rows.append(row)
        numbers.append(number)
    return rows, numbers, comments


def _loss_kind_of(names) -> str:
    """The kind of a loss.out whose header names its columns (any count of them, e.g. neppo's)."""
    if any(name.startswith('rmse_charge') for name in names):
        return 'charge'
    if any(name.startswith(('rmse_dipole', 'rmse_polarizability', 'rmse_tensor')) for name in names):
        return 'tensor'
    return 'potential' if any(name.startswith('rmse_energy') for name in names) else 'custom'


def read_loss(path, kind: str | None = None) -> dict:
    """``loss.out``: ``{'kind', 'columns', 'data'}`` with ``data`` an (n_rows, n_columns) float array.

    ``kind`` is ``potential`` (10 columns), ``charge`` (qNEP, 14) or ``tensor`` (dipole/polarizability, 6),
    detected from the column count or checked when given. ``#`` lines are skipped; a ``# columns name ...``
    line, if present, names the columns (and allows other counts; ``total``/``L1``/``L2`` are read as
    ``loss_total``/``loss_l1``/``loss_l2``, and a header repeated per training stage is allowed). Every row must
    have the same number of columns: fixed-width fields that ran into each other are reported with their line
    number.
    """
    with open_for_read(path) as handle:
        rows, numbers, comments = _numeric_rows(
            handle, 'loss.out', ' (a value as wide as its fixed-width field runs into the next one)')
    names = None
    for comment in comments:
        words = comment.lstrip('#').split()
        if words and words[0] == 'columns':
            names = tuple(_LOSS_HEADER_NAMES.get(word, word) for word in words[1:])
    if not rows:
        raise FormatError('loss.out: no data rows')
    width = len(rows[0])
    if names is not None:
        if len(names) != width:
            raise FormatError(f'loss.out line {numbers[0]}: {width} columns but the "# columns" header names '
                              f'{len(names)}')
        detected = _LOSS_KINDS.get(width) or _loss_kind_of(names)
    else:
        if width not in LOSS_COLUMNS:
            raise FormatError(f'loss.out line {numbers[0]}: {width} columns; expected 10 (potential), 14 (qNEP) or '
                              '6 (dipole/polarizability) - fields may have run into each other')
        names = LOSS_COLUMNS[width]
        detected = _LOSS_KINDS[width]
    for row, number in zip(rows, numbers):
        if len(row) != width:
            raise FormatError(f'loss.out line {number}: {len(row)} columns instead of {width} (fixed-width fields '
                              'may have run into each other)')
    if kind is not None and kind != detected:
        raise FormatError(f'loss.out: kind {kind!r} expected but the file has {width} columns ({detected})')
    return {'kind': detected, 'columns': list(names), 'data': np.asarray(rows, dtype=float)}


#: Component names of each parity file kind (prediction columns come first, then the same for the target).
PARITY_COMPONENTS = {
    'energy': ('e',),
    'force': ('fx', 'fy', 'fz'),
    'virial': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
    'stress': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
    'dipole': ('x', 'y', 'z'),
    'polarizability': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
}
_SENTINEL_KINDS = ('virial', 'stress', 'dipole', 'polarizability')


def read_parity(path, kind: str) -> dict:
    """A parity file ``<kind>_{train,test}.out`` of ``nep``.

    Returns ``{'kind', 'components', 'prediction', 'target', 'missing', 'legacy_layout'}``: ``prediction`` and
    ``target`` are (n, k) arrays (k = 1 energy, 3 force/dipole, 6 virial/stress/polarizability; units of doc §4.4,
    stress in GPa with positive = compressed); a row whose target holds the "missing" sentinel (any component
    <= -1e5: -1e6 in virial files and in stress files since v4.9.1, -1e6*N/V*160.2 before) has NaN targets and
    ``missing`` True. The pre-v3.7 two-column layout of tensor files (all xx rows, then all yy, ...) is
    recognised and reshaped (``legacy_layout`` True). Row order follows train.xyz only for a single batch.
    """
    if kind not in PARITY_COMPONENTS:
        raise FormatError(f'kind: {kind!r} is not a parity file kind ({", ".join(PARITY_COMPONENTS)})')
    components = PARITY_COMPONENTS[kind]
    k = len(components)
    what = f'{kind} parity file'
    with open_for_read(path) as handle:
        rows, numbers, _ = _numeric_rows(handle, what)
    if not rows:
        raise FormatError(f'{what}: no data rows')
    width = len(rows[0])
    for row, number in zip(rows, numbers):
        if len(row) != width:
            raise FormatError(f'{what} line {number}: {len(row)} columns instead of {width}')
    data = np.asarray(rows, dtype=float)
    legacy = False
    if width == 2 * k:
        prediction, target = data[:, :k].copy(), data[:, k:].copy()
    elif width == 2 and k > 1 and kind != 'force':
        if len(rows) % k:
            raise FormatError(f'{what}: legacy two-column layout needs a multiple of {k} rows, got {len(rows)}')
        n = len(rows) // k
        prediction = data[:, 0].reshape(k, n).T.copy()
        target = data[:, 1].reshape(k, n).T.copy()
        legacy = True
    else:
        raise FormatError(f'{what} line {numbers[0]}: {width} columns; expected {2 * k} (prediction then target)')
    if kind in _SENTINEL_KINDS:
        missing = (target <= MISSING_TARGET_THRESHOLD).any(axis=1)
        target[missing] = np.nan
    else:
        missing = np.zeros(len(target), dtype=bool)
    return {
        'kind': kind,
        'components': list(components),
        'prediction': prediction,
        'target': target,
        'missing': missing,
        'legacy_layout': legacy,
    }


# ================================================================================================ nep runs
# What a ``nep`` run leaves behind beyond the single files above: its stdout, ``nep.restart``, the row order of
# ``*_train.out`` and the errors the parity files imply. Used by the ``mlcampaign.nep.train`` CalcJob and parser.

#: Architecture keywords a prediction run or a resume takes from an existing model (doc §2, §4.2).
_MODEL_KEYWORDS = ('version', 'model_type', 'charge_mode', 'zbl', 'use_typewise_cutoff_zbl', 'cutoff', 'n_max',
                   'basis_size', 'l_max', 'neuron')


def apply_architecture(settings: dict, architecture: dict, source: str, version='5.6',
                       engine: str = 'gpumd') -> dict:
    """``settings`` (with ``type``) checked and completed with the architecture of an existing model.

    ``nep`` reads the parameters of ``nep.txt`` (prediction) or ``nep.restart`` (resume) by the counts that
    ``nep.in`` implies, so every architecture keyword must equal the model's: missing ones are taken from
    ``architecture`` (:func:`architecture_from_header`), a given one that differs raises :class:`FormatError`
    naming the keyword and ``source`` (e.g. ``'the potential'``).
    """
    ver = parse_gpumd_version(version)
    checked = _check_settings(settings, ver, engine)
    out = dict(checked)
    for key in _MODEL_KEYWORDS:
        expected = architecture.get(key)
        given = checked.get(key)
        if key == 'charge_mode':
            given = given[0] if isinstance(given, list) else given
            given = given or None
            expected = expected or None
        if given is None:
            if expected is not None:
                out[key] = expected
            continue
        if expected is None or not _same(given, expected):
            raise FormatError(f'{key}: {given!r} does not match {source}\'s {expected!r} (the architecture keywords '
                              f'must equal those of {source})')
    return _check_settings(out, ver, engine)


def expected_parameter_count(settings: dict, version='5.6', engine: str = 'gpumd') -> int | None:
    """Trainable parameters (= lines of ``nep.restart``) of the model ``settings`` define; None if unknown."""
    full = fill_nep_defaults(settings, version, engine)
    charge = full.get('charge_mode', 0)
    charge = charge[0] if isinstance(charge, list) else charge
    counts = nep_parameter_count(full['version'], len(full['type']), full['n_max'], full['basis_size'],
                                 full['l_max'], full['neuron'], _MODEL_TYPES[full['model_type']], charge)
    return counts['n_parameters']


def read_nep_restart(text_or_path) -> dict:
    """``nep.restart`` (doc §4.3): one ``mu sigma`` pair per trainable parameter, no header.

    Returns ``{'n_parameters'}``; a line that is not two finite numbers raises :class:`FormatError` with its
    number, so a truncated or foreign file is refused before a GPU job reads garbage from it.
    """
    text = _read_text(text_or_path, 'nep.restart')
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise FormatError(f'nep.restart line {number}: expected two numbers (mu sigma), got {line.strip()[:60]!r}')
        try:
            values = [float(v) for v in tokens]
        except ValueError:
            raise FormatError(f'nep.restart line {number}: expected two numbers (mu sigma), '
                              f'got {line.strip()[:60]!r}') from None
        if not all(math.isfinite(v) for v in values):
            raise FormatError(f'nep.restart line {number}: not finite ({line.strip()!r})')
        count += 1
    if not count:
        raise FormatError('nep.restart: empty file')
    return {'n_parameters': count}


def gpumd_batch_order(energies_per_atom, batch_size: int) -> np.ndarray:
    """Which ``train.xyz`` frame each ``*_train.out`` row belongs to when ``nep`` trains in several batches.

    With ``batch`` < number of frames, ``nep`` (``src/main_nep/structure.cu``, ``reorder``) stable-sorts the frames
    by their single-precision energy per atom and deals them round-robin into ``(N-1)//batch + 1`` batches, the
    first ``N % n_batches`` batches one frame larger; the parity files follow that order. Returns ``order`` with
    row ``i`` = frame ``order[i]`` (the identity for a single batch).
    """
    energies = np.asarray(energies_per_atom, dtype=np.float32)
    n = len(energies)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise FormatError(f'batch: must be >= 1, got {batch_size}')
    if batch_size >= n:
        return np.arange(n)
    n_batches = (n - 1) // batch_size + 1
    by_energy = np.argsort(energies, kind='stable')
    minimal = n // n_batches
    order = []
    for b in range(n_batches):
        size = minimal + 1 if b + minimal * n_batches < n else minimal
        order.extend(int(by_energy[b + n_batches * c]) for c in range(size))
    return np.asarray(order, dtype=np.int64)


def _close(a, b) -> np.ndarray:
    """Equal within what ``%g`` (6 significant digits) of a single-precision value keeps."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b) <= 1e-5 + 2e-5 * np.abs(b)


def match_train_order(energy_targets, energies_per_atom, batch_size: int, prediction: bool = False
                      ) -> tuple[np.ndarray, str]:
    """The frame of each ``energy_train.out`` row, found from the file's own target column.

    Tried in turn: the order ``nep`` uses for this run (:func:`gpumd_batch_order`; ``train.xyz`` order in
    prediction mode or for one batch), the other of the two, then a match by value (older GPUMD shuffled the
    frames at random), which must be unambiguous. Returns ``(order, how)`` with ``how`` ``'train.xyz'``,
    ``'batches'`` or ``'matched'``; raises :class:`FormatError` when the targets do not fit the frames.
    """
    targets = np.asarray(energy_targets, dtype=float).reshape(-1)
    energies = np.asarray(energies_per_atom, dtype=float).reshape(-1)
    n = len(energies)
    if len(targets) != n:
        raise FormatError(f'energy_train.out: {len(targets)} rows but train.xyz has {n} frames')
    identity = np.arange(n)
    batches = gpumd_batch_order(energies, batch_size)
    candidates = [(identity, 'train.xyz'), (batches, 'batches')]
    if not prediction and not np.array_equal(batches, identity):
        candidates.reverse()
    for order, how in candidates:
        if _close(targets, energies[order]).all():
            return (order, 'train.xyz') if np.array_equal(order, identity) else (order, how)
    row_rank = np.argsort(targets, kind='stable')
    frame_rank = np.argsort(energies, kind='stable')
    if _close(targets[row_rank], energies[frame_rank]).all():
        sorted_energies = energies[frame_rank]
        if n < 2 or not _close(sorted_energies[1:], sorted_energies[:-1]).any():
            order = np.empty(n, dtype=np.int64)
            order[row_rank] = frame_rank
            return order, 'matched'
        raise FormatError('energy_train.out: rows are not in train.xyz order nor in GPUMD\'s batch order, and frames '
                          'with equal energies per atom make a match by value ambiguous')
    expected = candidates[0][0]
    bad = int(np.argmin(_close(targets, energies[expected])))
    raise FormatError(f'energy_train.out: the reference energies do not belong to the training set (row {bad + 1}: '
                      f'{targets[bad]:g} eV/atom; frame {int(expected[bad])} has {energies[expected][bad]:g})')


def restore_train_order(parity: dict, order, natoms) -> dict:
    """A :func:`read_parity` result with rows back in ``train.xyz`` order (``order`` from :func:`match_train_order`).

    Per-structure files have one row per frame; per-atom files (forces, per-atom tensors) one block of
    ``natoms`` rows per frame, in the same frame order.
    """
    order = np.asarray(order, dtype=np.int64)
    natoms = np.asarray(natoms, dtype=np.int64)
    rows = len(parity['prediction'])
    if rows == len(order):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        index = inverse
    elif rows == int(natoms.sum()):
        internal_offsets = np.concatenate([[0], np.cumsum(natoms[order])])
        block_of_frame = np.empty_like(order)
        block_of_frame[order] = np.arange(len(order))
        index = np.concatenate([np.arange(internal_offsets[b], internal_offsets[b + 1])
                                for b in block_of_frame]) if len(order) else np.zeros(0, dtype=np.int64)
    else:
        raise FormatError(f'{parity["kind"]} parity file: {rows} rows, neither one per frame ({len(order)}) nor one '
                          f'per atom ({int(natoms.sum())})')
    out = dict(parity)
    for key in ('prediction', 'target', 'missing'):
        out[key] = np.asarray(parity[key])[index]
    return out


#: Unit and factor that turn each parity kind's RMSE into the unit it is reported in.
PARITY_RMSE_UNITS = {
    'energy': ('meV_per_atom', 1000.0),
    'force': ('meV_per_A', 1000.0),
    'virial': ('meV_per_atom', 1000.0),
    'stress': ('GPa', 1.0),
    'dipole': ('per_atom', 1.0),
    'polarizability': ('per_atom', 1.0),
}


def parity_rmse(parity: dict) -> tuple[float | None, int]:
    """RMSE over every component of the rows with a target, in the unit of :data:`PARITY_RMSE_UNITS`.

    Returns ``(rmse, rows_used)``; rows whose target is missing (NaN, the -1e6 sentinel) are left out, and
    ``rmse`` is None when no row has a target.
    """
    prediction = np.asarray(parity['prediction'], dtype=float)
    target = np.asarray(parity['target'], dtype=float)
    keep = np.isfinite(target).all(axis=1)
    if not keep.any():
        return None, 0
    factor = PARITY_RMSE_UNITS[parity['kind']][1]
    diff = prediction[keep] - target[keep]
    return float(np.sqrt(np.mean(diff ** 2)) * factor), int(keep.sum())


_NEP_FLOAT = r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)'
_NEP_TIMES = re.compile(rf'Time used for (initialization|training|predicting)\s*=\s*({_NEP_FLOAT})\s*s', re.IGNORECASE)
_NEP_COUNTS = {
    'num_devices': re.compile(r'Number of devices\s*=\s*(\d+)'),
    'num_batches': re.compile(r'Number of batches\s*=\s*(\d+)'),
}
_NEP_BATCH_CHANGE = re.compile(r'changed the batch_size from\s*(\d+)\s*to\s*(\d+)')


def read_nep_stdout(text) -> dict:
    """What ``nep`` prints (stdout, optionally with stderr appended), doc §1.

    Returns ``version`` (banner), ``time_initialization_s``, ``time_training_s``, ``time_predicting_s`` (None
    when not printed), ``num_devices``, ``num_batches``, ``batch_size`` (the size ``nep`` evened the batches
    to, when it said so), ``last_generation`` (first column of the last progress row under the ``Step
    Total-Loss`` header), ``progress_rows``, ``started_training``/``started_predicting``, ``finished``
    (``Finished running nep.``) and ``errors`` (``Input Error:`` blocks: ``kind``, ``file``, ``line``,
    ``text``), the last two read as for ``gpumd``.
    """
    from .gpumd import read_gpumd_stdout  # the banner and error-block layout are shared by both programs

    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    common = read_gpumd_stdout(text)
    result = {
        'version': common['version'],
        'time_initialization_s': None,
        'time_training_s': None,
        'time_predicting_s': None,
        'num_devices': None,
        'num_batches': None,
        'batch_size': None,
        'last_generation': None,
        'progress_rows': 0,
        'started_training': 'Started training.' in text,
        'started_predicting': 'Started predicting.' in text,
        'finished': 'Finished running nep.' in text,
        'errors': common['errors'],
    }
    in_progress = False
    for line in text.splitlines():
        if (match := _NEP_TIMES.search(line)) is not None:
            result[f'time_{match.group(1).lower()}_s'] = float(match.group(2))
            in_progress = False
            continue
        for key, pattern in _NEP_COUNTS.items():
            if (match := pattern.search(line)) is not None and result[key] is None:
                result[key] = int(match.group(1))
        if (match := _NEP_BATCH_CHANGE.search(line)) is not None:
            result['batch_size'] = int(match.group(2))
        tokens = line.split()
        if tokens[:2] == ['Step', 'Total-Loss']:
            in_progress = True
            continue
        if in_progress and tokens and _INT_RE.match(tokens[0]) and len(tokens) in LOSS_COLUMNS:
            result['last_generation'] = int(tokens[0])
            result['progress_rows'] += 1
    return result


def read_parity_set(texts: dict, split: str = 'train', *, natoms=None, energies_per_atom=None, forces=None,
                    batch_size: int | None = None, prediction: bool = False) -> dict:
    """Every parity file of one split (``'train'`` or ``'test'``), rows in the order of ``train.xyz``/``test.xyz``.

    ``texts`` maps file names (``energy_train.out`` ...) to their text or path; kinds without a file are skipped.
    With the frames' ``natoms`` and ``energies_per_atom`` (and optionally ``forces``, all in file order) the row
    counts are checked, the ``*_train.out`` order is recovered from the energy targets (:func:`match_train_order`;
    ``batch_size`` is the ``batch`` of ``nep.in``) and restored, and the force targets are compared with the
    frames' forces, so rows can never be paired with the wrong frame silently. ``*_test.out`` always follow
    ``test.xyz``. Returns ``{'kinds': {kind: parity}, 'order': how}`` (``how`` as in :func:`match_train_order`,
    ``'as written'`` without frame data); inconsistencies raise :class:`FormatError`.
    """
    if split not in ('train', 'test'):
        raise FormatError(f'split: expected "train" or "test", got {split!r}')
    kinds = {}
    for kind in PARITY_COMPONENTS:
        name = f'{kind}_{split}.out'
        if texts.get(name) is not None:
            source = texts[name]
            kinds[kind] = read_parity(io.StringIO(source) if isinstance(source, str) and '\n' in source else source,
                                      kind)
    how = 'as written'
    if natoms is None or not kinds:
        return {'kinds': kinds, 'order': how}
    natoms = np.asarray(natoms, dtype=np.int64)
    n_frames = len(natoms)
    if split == 'train' and energies_per_atom is not None:
        if 'energy' in kinds:
            order, how = match_train_order(kinds['energy']['target'][:, 0], energies_per_atom, batch_size or n_frames,
                                           prediction)
        else:
            order = gpumd_batch_order(energies_per_atom, batch_size or n_frames) if not prediction else \
                np.arange(n_frames)
            how = 'train.xyz' if np.array_equal(order, np.arange(n_frames)) else 'batches'
    else:
        order, how = np.arange(n_frames), f'{split}.xyz'
    for kind, parity in list(kinds.items()):
        rows = len(parity['prediction'])
        per_atom = kind == 'force' or (rows != n_frames and rows == int(natoms.sum()))
        expected = int(natoms.sum()) if per_atom else n_frames
        if rows != expected:
            raise FormatError(f'{kind}_{split}.out: {rows} rows, expected {expected} '
                              f'(one per {"atom" if per_atom else "frame"} of {split}.xyz)')
        kinds[kind] = restore_train_order(parity, order, natoms)
    if forces is not None and 'force' in kinds:
        reference = np.asarray(forces, dtype=float).reshape(-1, 3)
        close = _close(kinds['force']['target'], reference) | ~np.isfinite(reference)
        if not close.all():
            row = int(np.argmin(close.all(axis=1)))
            raise FormatError(f'force_{split}.out: the reference forces do not match {split}.xyz (atom row {row + 1} '
                              f'after restoring the {split}.xyz order)')
    return {'kinds': kinds, 'order': how}
