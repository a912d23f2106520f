"""GPUMD ``run.in`` (the MD protocol of ``gpumd``): a checked writer and a reader of the same structure.

Pure functions (no AiiDA), following ``shared/docs/gpumd-formats.md`` §5 (GPUMD master ``d98135de``, after
v5.6). A protocol is ``potential`` plus a list of *stages*; a stage is a dict of ``run.in`` keywords in the order
they are written, usually ending with an ``ensemble`` and its ``run`` (a run block: ``dump_*``/``compute_*``
apply to that block only, ``time_step``/``velocity`` are setup commands and may sit in any stage)::

    run_in([
        {'velocity': 300, 'time_step': 1,
         'ensemble': {'name': 'nvt_nhc', 'T1': 300, 'T2': 300, 'T_coup': 100}, 'dump_thermo': 100, 'run': 100000},
        {'ensemble': ['nvt_nhc', 300, 300, 100], 'compute_msd': {'sample_interval': 10, 'Nc': 500},
         'compute_rdf': {'r_cut': 6.0, 'num_bins': 300, 'interval': 100},
         'dump_xyz': {'interval': 10000, 'file': 'dump.xyz', 'velocity': True, 'force': True}, 'run': 500000},
    ], potential='nep.txt')

A keyword's value may be its canonical dict (what :func:`read_run_in` returns; argument names below), the
argument list as written in ``run.in`` (``['nvt_nhc', 300, 300, 100]``), a string of those arguments, or a single
number for one-argument keywords. Either way the arguments are checked against the grammar of §5: unknown
keywords or options, wrong argument counts, negative temperatures, non-positive step counts and intervals are
refused with a :class:`~aiida_mlcampaign.formats.frames.FormatError` naming ``stages[i]`` (or the ``run.in``
line) and the keyword. ``run`` is always written last in its stage. Options without argument (``dump_xyz``
properties, ``compute`` quantities) are ``True`` in the dict, options with arguments keep them (``group: [0, 1]``).

Grammars: the default is the current one (master after v5.6: ``dump_xyz <interval> <file> ...``). ``legacy=True``
also accepts what older versions wrote and the current one dropped: ``dump_exyz``, ``dump_position``,
``dump_velocity``, ``dump_force`` (removed after v5.6), the positional ``dump_xyz <gm> <gid> <interval> <file>``
form of v4.0-v5.6 and ``compute_rdf ... atom i j`` pairs (before v4.9); ``read_run_in`` reports whether it needed
them (``legacy`` key). ``compute_adf`` is not in the doc; its two forms are taken from the GPUMD manual.

Escape hatches: a stage may carry ``'raw': [lines]`` written verbatim at that position (no ``potential``,
``ensemble`` or ``run`` inside), and ``run_in(raw=text)`` returns a complete hand-written ``run.in`` unchanged
(only checked for a ``potential`` line).
"""

from __future__ import annotations

import math
import re
import types
import typing as t

import numpy as np

from .frames import FormatError

__all__ = [
    'DEFAULT_TIME_STEP_FS', 'ENSEMBLES', 'KEYWORDS', 'LEGACY_KEYWORDS', 'canonical_stages', 'ensure_restart_dumps',
    'read_run_in', 'remaining_stages', 'restart_point', 'run_in', 'run_progress', 'run_stage_indices',
    'scale_time_step', 'stage_time_steps', 'target_temperatures', 'thermo_rows_per_stage', 'thermo_schedule',
]

_INT_RE = re.compile(r'^[+-]?\d+$')


class _Bad(Exception):
    """A grammar error without its location; turned into a FormatError with stage/line and keyword."""


# ================================================================================================ argument kinds
def _conv(name: str, kind, token: str):
    """Convert one token; ``kind`` names the constraint (or is a tuple of allowed words)."""
    if isinstance(kind, tuple):
        if token not in kind:
            raise _Bad(f'{name}: must be one of {", ".join(kind)}, got {token!r}')
        return token
    if kind == 'str':
        if token.startswith('#'):
            raise _Bad(f'{name}: missing')
        return token
    if kind in ('int', 'count', 'index', 'gid', 'flag'):
        if not _INT_RE.match(token):
            raise _Bad(f'{name}: expected an integer, got {token!r}')
        value = int(token)
        low = {'int': None, 'count': 1, 'index': 0, 'gid': -1, 'flag': 0}[kind]
        if low is not None and value < low:
            what = {'count': 'a positive number of steps/items', 'index': 'a non-negative index',
                    'gid': '-1 (all groups) or a group index', 'flag': '0 or 1'}[kind]
            raise _Bad(f'{name}: must be {what}, got {value}')
        if kind == 'flag' and value > 1:
            raise _Bad(f'{name}: must be 0 or 1, got {value}')
        return value
    try:
        value = float(token)
    except ValueError:
        raise _Bad(f'{name}: expected a number, got {token!r}') from None
    if not math.isfinite(value):
        raise _Bad(f'{name}: not a finite number ({token!r})')
    if kind == 'T' and value < 0:
        raise _Bad(f'{name}: negative temperature {value:g} K')
    if kind == 'nonneg' and value < 0:
        raise _Bad(f'{name}: must be >= 0, got {value:g}')
    if kind == 'pos' and value <= 0:
        raise _Bad(f'{name}: must be > 0, got {value:g}')
    return value


class _Spec(t.NamedTuple):
    required: tuple = ()
    optional: tuple = ()  # optional positional arguments (all-or-prefix, in order)
    options: t.Mapping = types.MappingProxyType({})  # option word -> ((name, kind), ...); () = flag (True)
    repeatable_options: tuple = ()


_GROUP = (('grouping_method', 'index'), ('group_id', 'index'))
_GROUP_ALL = (('grouping_method', 'index'), ('group_id', 'gid'))
_XYZ_FLAGS = ('mass', 'velocity', 'force', 'potential', 'virial', 'charge', 'bec', 'unwrapped_position')

KEYWORDS: dict[str, _Spec] = {
    'velocity': _Spec(required=(('temperature', 'T'),), options={'seed': (('seed', 'int'),)}),
    'time_step': _Spec(required=(('dt', 'nonneg'),), optional=(('max_distance', 'pos'),)),
    'minimize': _Spec(required=(('method', ('sd', 'fire')), ('force_tolerance', 'pos'), ('max_steps', 'count')),
                      options={'box_change': (('box_change', ('hydrostatic',)),)}),
    'dump_thermo': _Spec(required=(('interval', 'count'),)),
    'dump_restart': _Spec(required=(('interval', 'count'),)),
    'dump_xyz': _Spec(
        required=(('interval', 'count'), ('file', 'str')),
        options={'group': _GROUP, 'precision': (('precision', ('single', 'double')),),
                 **{flag: () for flag in (*_XYZ_FLAGS, 'group_labels')}},
    ),
    'compute_msd': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count')),
                         options={'group': _GROUP, 'all_groups': (('all_groups', 'index'),),
                                  'save_every': (('save_every', 'count'),)}),
    'compute_sdc': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count')), options={'group': _GROUP}),
    'compute_rdf': _Spec(required=(('r_cut', 'pos'), ('num_bins', 'count'), ('interval', 'count'))),
    'compute_dos': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count'), ('omega_max', 'pos')),
                         options={'group': _GROUP_ALL, 'num_dos_points': (('num_dos_points', 'count'),)}),
    'compute_hac': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count'), ('output_interval', 'count'))),
    'compute_hnemd': _Spec(required=(('output_interval', 'count'), ('Fe_x', 'float'), ('Fe_y', 'float'),
                                     ('Fe_z', 'float'))),
    'compute_shc': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count'), ('direction', ('0', '1', '2')),
                                   ('num_omega', 'count'), ('omega_max', 'pos')),
                         options={'group': _GROUP_ALL}),
    'compute_viscosity': _Spec(required=(('sample_interval', 'count'), ('Nc', 'count'))),
    'compute_adf': _Spec(),  # custom, see _parse_adf
    'compute': _Spec(required=(('grouping_method', 'index'), ('sample_interval', 'count'),
                               ('output_interval', 'count')),
                     options={q: () for q in ('temperature', 'potential', 'force', 'virial', 'jp', 'jk',
                                              'momentum')}),
    'fix': _Spec(),  # custom: fix [gm] gid
    'ensemble': _Spec(),  # custom, see _parse_ensemble
    'run': _Spec(required=(('steps', 'count'),)),
}

#: Keywords (and forms) only read/written with ``legacy=True``: removed from GPUMD after v5.6.
LEGACY_KEYWORDS: dict[str, _Spec] = {
    'dump_exyz': _Spec(required=(('interval', 'count'),),
                       optional=(('has_velocity', 'flag'), ('has_force', 'flag'), ('has_potential', 'flag'),
                                 ('separated', 'flag'))),
    **{name: _Spec(required=(('interval', 'count'),),
                   options={'group': _GROUP, 'precision': (('precision', ('single', 'double')),)})
       for name in ('dump_position', 'dump_velocity', 'dump_force')},
}
_LEGACY_DUMP_XYZ = _Spec(
    required=(('grouping_method', 'int'), ('group_id', 'int'), ('interval', 'count'), ('file', 'str')),
    options={flag: () for flag in (*_XYZ_FLAGS, 'group')},
)
_LEGACY_RDF = _Spec(required=KEYWORDS['compute_rdf'].required, options={'atom': (('i', 'index'), ('j', 'index'))},
                    repeatable_options=('atom',))

_NVT = ('nvt_ber', 'nvt_nhc', 'nvt_bdp', 'nvt_lan', 'nvt_bao')
_NPT = ('npt_ber', 'npt_scr')
_MTTK = ('npt_mttk', 'nvt_mttk', 'nph_mttk')
_HEAT = ('heat_nhc', 'heat_bdp', 'heat_lan')
ENSEMBLES = ('nve', *_NVT, *_NPT, *_MTTK, *_HEAT)
_MTTK_PRESSURES = ('iso', 'aniso', 'tri', 'x', 'y', 'z', 'xy', 'yz', 'xz')
_SCALAR = ('run', 'dump_thermo', 'dump_restart')  # canonical value: the one integer
_REPEATABLE = ('dump_xyz', 'compute')
_SETUP = ('velocity', 'time_step', 'minimize', 'fix', 'raw')


# ================================================================================================ parsing
def _parse_spec(spec: _Spec, tokens: list[str]) -> dict:
    out: dict = {}
    i = 0
    for name, kind in spec.required:
        if i >= len(tokens):
            raise _Bad(f'{name}: missing (expected {len(spec.required)} argument(s) at least, got {len(tokens)})')
        out[name] = _conv(name, kind, tokens[i])
        i += 1
    for name, kind in spec.optional:
        if i < len(tokens) and tokens[i] not in spec.options:
            out[name] = _conv(name, kind, tokens[i])
            i += 1
    while i < len(tokens):
        word = tokens[i]
        if word not in spec.options:
            if not spec.options:
                raise _Bad(f'too many arguments: {tokens!r} (expected {len(spec.required)}'
                           + (f' to {len(spec.required) + len(spec.optional)}' if spec.optional else '') + ')')
            raise _Bad(f'unknown option {word!r} (known: {", ".join(spec.options)})')
        args = spec.options[word]
        if len(tokens) - i - 1 < len(args):
            raise _Bad(f'{word}: expected {len(args)} argument(s)')
        values = [_conv(f'{word} {name}' if len(args) > 1 else word, kind, tokens[i + 1 + k])
                  for k, (name, kind) in enumerate(args)]
        value = True if not args else values[0] if len(args) == 1 else values
        if word in spec.repeatable_options:
            out.setdefault(word, []).append(value)
        elif word in out:
            raise _Bad(f'{word}: given twice')
        else:
            out[word] = value
        i += 1 + len(args)
    return out


def _parse_ensemble(tokens: list[str]) -> dict:
    if not tokens:
        raise _Bad(f'missing ensemble name (one of {", ".join(ENSEMBLES)})')
    name, args = tokens[0], tokens[1:]
    if name not in ENSEMBLES:
        raise _Bad(f'unknown ensemble {name!r} (known: {", ".join(ENSEMBLES)})')
    out: dict = {'name': name}
    if name == 'nve':
        if args:
            raise _Bad(f'nve takes no arguments, got {args!r}')
        return out
    if name in _NVT:
        if len(args) != 3:
            raise _Bad(f'{name}: expected T1 T2 T_coup (3 arguments), got {len(args)}')
        out.update(T1=_conv('T1', 'T', args[0]), T2=_conv('T2', 'T', args[1]), T_coup=_conv('T_coup', 'pos', args[2]))
        if out['T_coup'] < 1:
            raise _Bad(f'T_coup: must be >= 1 (in time steps), got {out["T_coup"]:g}')
        return out
    if name in _NPT:
        counts = {6: 1, 10: 3, 16: 6}
        if len(args) not in counts:
            raise _Bad(f'{name}: expected T1 T2 T_coup then p C p_coup (6 arguments), 3 p + 3 C + p_coup (10) or '
                       f'6 p + 6 C + p_coup (16), got {len(args)}')
        n = counts[len(args)]
        out.update(T1=_conv('T1', 'T', args[0]), T2=_conv('T2', 'T', args[1]), T_coup=_conv('T_coup', 'pos', args[2]))
        out['p'] = [_conv('p', 'float', a) for a in args[3:3 + n]]
        out['C'] = [_conv('C', 'pos', a) for a in args[3 + n:3 + 2 * n]]
        out['p_coup'] = _conv('p_coup', 'pos', args[-1])
        for key in ('T_coup', 'p_coup'):
            if out[key] < 1:
                raise _Bad(f'{key}: must be >= 1 (in time steps), got {out[key]:g}')
        return out
    if name in _HEAT:
        if len(args) != 5:
            raise _Bad(f'{name}: expected T T_coup delta_T source_group sink_group (5 arguments), got {len(args)}')
        out.update(T=_conv('T', 'T', args[0]), T_coup=_conv('T_coup', 'pos', args[1]),
                   delta_T=_conv('delta_T', 'nonneg', args[2]), source_group=_conv('source_group', 'index', args[3]),
                   sink_group=_conv('sink_group', 'index', args[4]))
        if out['delta_T'] > out['T']:
            raise _Bad(f'delta_T: the sink would be at a negative temperature ({out["T"]:g} - {out["delta_T"]:g} K)')
        return out
    # MTTK family: keyword-style arguments
    i = 0
    while i < len(args):
        word = args[i]
        if word in out:
            raise _Bad(f'{word}: given twice')
        if word == 'temp' or word in _MTTK_PRESSURES:
            if len(args) - i < 3:
                raise _Bad(f'{word}: expected two values')
            kind = 'T' if word == 'temp' else 'float'
            out[word] = [_conv(f'{word} start', kind, args[i + 1]), _conv(f'{word} end', kind, args[i + 2])]
            i += 3
        elif word in ('tperiod', 'pperiod'):
            if len(args) - i < 2:
                raise _Bad(f'{word}: expected one value')
            out[word] = _conv(word, 'pos', args[i + 1])
            i += 2
        else:
            raise _Bad(f'{name}: unknown argument {word!r} (temp, {", ".join(_MTTK_PRESSURES)}, tperiod, pperiod)')
    pressures = [k for k in out if k in _MTTK_PRESSURES]
    if name in ('npt_mttk', 'nvt_mttk') and 'temp' not in out:
        raise _Bad(f'{name}: needs "temp T1 T2"')
    if name == 'nph_mttk' and 'temp' in out:
        raise _Bad('nph_mttk: takes no temperature')
    if name in ('npt_mttk', 'nph_mttk') and not pressures:
        raise _Bad(f'{name}: needs a pressure (iso, aniso, tri or x/y/z/xy/yz/xz with two values)')
    if name == 'nvt_mttk' and pressures:
        raise _Bad('nvt_mttk: takes no pressure')
    if 'pperiod' in out and not pressures:
        raise _Bad('pperiod: needs a pressure')
    coupled = [k for k in pressures if k in ('iso', 'aniso', 'tri')]
    if len(coupled) > 1 or (coupled and len(pressures) > 1):
        raise _Bad(f'{name}: {", ".join(pressures)} cannot be combined (iso, aniso and tri exclude the others)')
    return out


def _parse_adf(tokens: list[str]) -> dict:
    if len(tokens) < 4:
        raise _Bad('expected interval num_bins rc_min rc_max (or interval num_bins then i j k rc_min_j rc_max_j '
                   'rc_min_k rc_max_k ...)')
    out = {'interval': _conv('interval', 'count', tokens[0]), 'num_bins': _conv('num_bins', 'count', tokens[1])}
    rest = tokens[2:]
    if len(rest) == 2:
        out['rc_min'] = _conv('rc_min', 'nonneg', rest[0])
        out['rc_max'] = _conv('rc_max', 'pos', rest[1])
        if out['rc_min'] >= out['rc_max']:
            raise _Bad(f'rc_min {out["rc_min"]:g} must be below rc_max {out["rc_max"]:g}')
        return out
    if len(rest) % 7:
        raise _Bad(f'expected 2 values (rc_min rc_max) or groups of 7 (i j k rc_min_j rc_max_j rc_min_k rc_max_k), '
                   f'got {len(rest)}')
    triples = []
    for k in range(0, len(rest), 7):
        group = rest[k:k + 7]
        triples.append([_conv('type', 'index', v) for v in group[:3]] + [_conv('rc', 'nonneg', v) for v in group[3:]])
    out['triples'] = triples
    return out


def _parse_fix(tokens: list[str]) -> dict:
    if len(tokens) == 1:
        return {'group_id': _conv('group_id', 'index', tokens[0])}
    if len(tokens) == 2:
        return {'grouping_method': _conv('grouping_method', 'index', tokens[0]),
                'group_id': _conv('group_id', 'index', tokens[1])}
    raise _Bad(f'expected [grouping_method] group_id, got {len(tokens)} arguments')


def _parse_keyword(keyword: str, tokens: list[str], legacy: bool) -> tuple[t.Any, bool]:
    """Canonical value of one command and whether it needed the legacy grammar."""
    if keyword == 'ensemble':
        return _parse_ensemble(tokens), False
    if keyword == 'compute_adf':
        return _parse_adf(tokens), False
    if keyword == 'fix':
        return _parse_fix(tokens), False
    if keyword in LEGACY_KEYWORDS:
        if not legacy:
            raise _Bad('removed from GPUMD after v5.6 (use dump_xyz); read or write it with legacy=True')
        return _parse_spec(LEGACY_KEYWORDS[keyword], tokens), True
    if keyword == 'dump_xyz' and len(tokens) >= 3 and _INT_RE.match(tokens[1]):
        if not legacy:
            raise _Bad('the positional form "dump_xyz <gm> <gid> <interval> <file>" of v4.0-v5.6 is refused by '
                       'current GPUMD ("dump_xyz <interval> <file> [group <gm> <gid>] ..."); use legacy=True')
        return _parse_spec(_LEGACY_DUMP_XYZ, tokens), True
    if keyword == 'compute_rdf' and 'atom' in tokens:
        if not legacy:
            raise _Bad('"atom i j" pairs were removed in v4.9 (all pairs are computed); use legacy=True')
        return _parse_spec(_LEGACY_RDF, tokens), True
    if keyword not in KEYWORDS:
        raise _Bad('unknown run.in keyword (known: potential, ' + ', '.join([*KEYWORDS, *LEGACY_KEYWORDS]) + ')')
    value = _parse_spec(KEYWORDS[keyword], tokens)
    _check_keyword(keyword, value)
    if keyword in _SCALAR:
        return next(iter(value.values())), False
    return value, False


def _check_keyword(keyword: str, value: dict) -> None:
    if keyword == 'compute_shc':
        if not 1 <= value['sample_interval'] <= 50:
            raise _Bad(f'sample_interval: must be 1 to 50, got {value["sample_interval"]}')
        if not 100 <= value['Nc'] <= 1000:
            raise _Bad(f'Nc: must be 100 to 1000, got {value["Nc"]}')
        value['direction'] = int(value['direction'])
    elif keyword == 'compute_rdf':
        if not 20 < value['num_bins'] <= 500:
            raise _Bad(f'num_bins: must be 21 to 500, got {value["num_bins"]}')
    elif keyword == 'compute_hnemd':
        nonzero = [c for c in ('Fe_x', 'Fe_y', 'Fe_z') if value[c] != 0]
        if len(nonzero) != 1:
            raise _Bad(f'exactly one of Fe_x, Fe_y, Fe_z must be non-zero, got {len(nonzero)}')
    elif keyword == 'compute_msd' and 'group' in value and 'all_groups' in value:
        raise _Bad('group and all_groups exclude each other')


# ================================================================================================ formatting
def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _flat(value) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple, np.ndarray)):
        out = []
        for item in value:
            out.extend(_flat(item))
        return out
    return [_fmt(value)]


def _spec_tokens(spec: _Spec, value: dict) -> list[str]:
    names = [n for n, _ in spec.required] + [n for n, _ in spec.optional]
    unknown = [k for k in value if k not in names and k not in spec.options]
    if unknown:
        raise _Bad(f'unknown argument {unknown[0]!r} (known: {", ".join([*names, *spec.options])})')
    tokens = []
    for name, _ in spec.required:
        if name not in value:
            raise _Bad(f'{name}: missing')
        tokens.extend(_flat(value[name]))
    for name, _ in spec.optional:
        if name in value and value[name] is not None:
            tokens.extend(_flat(value[name]))
    for word, item in value.items():
        if word not in spec.options or item is None or item is False:
            continue
        if not spec.options[word]:
            if item is not True:
                raise _Bad(f'{word}: a flag, give True')
            tokens.append(word)
        elif word in spec.repeatable_options:
            for entry in item:
                tokens.extend([word, *_flat(entry)])
        else:
            tokens.extend([word, *_flat(item)])
    return tokens


def _ensemble_tokens(value: dict) -> list[str]:
    if 'name' not in value:
        raise _Bad('name: missing (e.g. {"name": "nvt_nhc", "T1": 300, "T2": 300, "T_coup": 100})')
    name = value['name']
    if name not in ENSEMBLES:
        raise _Bad(f'unknown ensemble {name!r} (known: {", ".join(ENSEMBLES)})')
    order = {'nve': (), **{n: ('T1', 'T2', 'T_coup') for n in _NVT},
             **{n: ('T1', 'T2', 'T_coup', 'p', 'C', 'p_coup') for n in _NPT},
             **{n: ('T', 'T_coup', 'delta_T', 'source_group', 'sink_group') for n in _HEAT}}
    if name in _MTTK:
        tokens = [name]
        for key, item in value.items():
            if key == 'name':
                continue
            if key not in ('temp', 'tperiod', 'pperiod', *_MTTK_PRESSURES):
                raise _Bad(f'{name}: unknown argument {key!r}')
            tokens.extend([key, *_flat(item)])
        return tokens
    keys = order[name]
    unknown = [k for k in value if k != 'name' and k not in keys]
    if unknown:
        raise _Bad(f'{name}: unknown argument {unknown[0]!r} (expected {", ".join(keys) or "none"})')
    missing = [k for k in keys if k not in value]
    if missing:
        raise _Bad(f'{name}: {missing[0]}: missing')
    return [name, *(tok for k in keys for tok in _flat(value[k]))]


def _value_tokens(keyword: str, value, legacy: bool) -> list[str]:
    """The argument tokens of a user-given value (dict, list, string or number)."""
    if not isinstance(value, dict):
        return _flat(value)
    if keyword == 'ensemble':
        return _ensemble_tokens(value)
    if keyword == 'compute_adf':
        if 'triples' in value:
            return _flat([value.get('interval'), value.get('num_bins'), value['triples']])
        return _flat([value.get(k) for k in ('interval', 'num_bins', 'rc_min', 'rc_max')])
    if keyword == 'fix':
        return _flat([value[k] for k in ('grouping_method', 'group_id') if k in value])
    if keyword == 'dump_xyz' and 'grouping_method' in value:
        spec = _LEGACY_DUMP_XYZ
    elif keyword == 'compute_rdf' and 'atom' in value:
        spec = _LEGACY_RDF
    elif keyword in LEGACY_KEYWORDS:
        spec = LEGACY_KEYWORDS[keyword]
    elif keyword in KEYWORDS:
        spec = KEYWORDS[keyword]
    else:
        raise _Bad('unknown run.in keyword')
    return _spec_tokens(spec, value)


def _canonical_tokens(keyword: str, value) -> list[str]:
    """Tokens of a canonical value (as produced by the parser)."""
    if keyword in _SCALAR:
        return [_fmt(value)]
    return _value_tokens(keyword, value, legacy=True)


# ================================================================================================ stages
def _stage_checks(stage: dict, legacy: bool) -> None:
    has_ensemble, has_run = 'ensemble' in stage, 'run' in stage
    if has_ensemble != has_run:
        raise _Bad('a run block needs exactly one ensemble and a run' if has_ensemble
                   else 'run: no ensemble in this stage')
    if not has_run:
        block_only = [k for k in stage if k not in _SETUP]
        if block_only:
            raise _Bad(f'{block_only[0]}: only allowed in a run block (a stage with ensemble and run)')
        return
    steps = stage['run']
    msd = stage.get('compute_msd')
    if msd and not legacy and msd['sample_interval'] * msd['Nc'] > steps:
        raise _Bad(f'compute_msd: sample_interval*Nc = {msd["sample_interval"] * msd["Nc"]} exceeds run {steps} '
                   '(refused since GPUMD v4.2)')


def _check_raw_lines(lines) -> list[str]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    out = []
    for line in lines:
        line = str(line).rstrip()
        words = line.split()
        if words and words[0] in ('potential', 'ensemble', 'run'):
            raise _Bad(f'{words[0]}: not allowed in raw lines (use the structured keys)')
        if words:
            out.append(line)
    return out


def _check_potential(potential) -> str:
    tokens = _flat(potential)
    if not 1 <= len(tokens) <= 2:
        raise FormatError(f'potential: expected "<file> [x|y|z]", got {potential!r}')
    if len(tokens) == 2 and tokens[1] not in ('x', 'y', 'z'):
        raise FormatError(f'potential: the split direction must be x, y or z, got {tokens[1]!r}')
    return ' '.join(tokens)


def run_in(stages: list[dict] | None, potential='nep.txt', raw: str | None = None, *, legacy: bool = False) -> str:
    """The text of ``run.in``: ``potential`` then each stage's commands (``run`` last), stages separated by a
    blank line. See the module docstring for the structure; ``raw`` returns a hand-written ``run.in`` instead.
    """
    if raw is not None:
        if stages:
            raise FormatError('raw: give either stages or a raw run.in, not both')
        text = raw.replace('\r\n', '\n').replace('\r', '\n')
        keywords = [line.split()[0] for line in text.splitlines() if line.split() and not line.lstrip().startswith('#')]
        if 'potential' not in keywords:
            raise FormatError('raw: a run.in needs a potential line')
        return text if text.endswith('\n') else text + '\n'
    if not isinstance(stages, (list, tuple)) or not stages:
        raise FormatError('stages: expected a non-empty list of stage dicts')
    lines = [f'{"potential":<12} {_check_potential(potential)}']
    for index, stage in enumerate(stages):
        where = f'stages[{index}]'
        if not isinstance(stage, dict):
            raise FormatError(f'{where}: expected a dict of run.in keywords, got {type(stage).__name__}')
        canonical: dict = {}
        for keyword, value in stage.items():
            try:
                if keyword == 'potential':
                    raise _Bad('give the potential as run_in(potential=...), not inside a stage')
                if keyword == 'raw':
                    canonical['raw'] = _check_raw_lines(value)
                    continue
                entries = value if keyword in _REPEATABLE and _is_repeated(value) else [value]
                parsed = []
                for entry in entries:
                    tokens = _value_tokens(keyword, entry, legacy)
                    item, _ = _parse_keyword(keyword, tokens, legacy)
                    parsed.append(item)
                canonical[keyword] = parsed if len(entries) > 1 or entries is value else parsed[0]
            except _Bad as error:
                raise FormatError(f'{where}: {keyword}: {error}') from None
        try:
            _stage_checks(canonical, legacy)
        except _Bad as error:
            raise FormatError(f'{where}: {error}') from None
        lines.append('')
        for keyword, value in canonical.items():
            if keyword == 'run':
                continue
            if keyword == 'raw':
                lines.extend(value)
                continue
            for item in (value if keyword in _REPEATABLE and _is_repeated(value) else [value]):
                lines.append(f'{keyword:<12} ' + ' '.join(_canonical_tokens(keyword, item)))
        if 'run' in canonical:
            lines.append(f'{"run":<12} {canonical["run"]}')
    return '\n'.join(lines) + '\n'


def _is_repeated(value) -> bool:
    """A repeated keyword is given as a list of dicts or of argument lists."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, (dict, list, tuple)) for v in value)


def read_run_in(text: str, legacy: bool = False, allow_raw: bool = False) -> dict:
    """``{'potential', 'stages', 'legacy'}`` from the text of a ``run.in``, so that ``run_in(**result)`` writes it
    back (same commands in the same order; comments and blank lines are dropped).

    ``legacy`` accepts keywords and forms the current GPUMD dropped (see the module docstring); the result's
    ``legacy`` says whether any was used. ``allow_raw`` keeps unknown keywords as the stage's ``raw`` lines
    instead of refusing them. A new stage starts after each ``run``; commands after the last ``run`` form a
    final stage (setup commands only).
    """
    potential = None
    stages: list[dict] = []
    stage: dict = {}
    used_legacy = False
    for number, line in enumerate(text.splitlines(), 1):
        tokens = []
        for token in line.split():
            if token.startswith('#'):
                break
            tokens.append(token)
        if not tokens:
            continue
        keyword, args = tokens[0], tokens[1:]
        where = f'run.in line {number}: {keyword}'
        if keyword == 'potential':
            if potential is not None:
                raise FormatError(f'{where}: given twice')
            if stages or 'ensemble' in stage:
                raise FormatError(f'{where}: must come before the first run block')
            potential = _check_potential(args)
            continue
        known = keyword in KEYWORDS or keyword in LEGACY_KEYWORDS
        if not known and allow_raw:
            stage.setdefault('raw', []).append(' '.join(tokens))
            continue
        try:
            value, needed_legacy = _parse_keyword(keyword, args, legacy)
        except _Bad as error:
            raise FormatError(f'{where}: {error}') from None
        used_legacy |= needed_legacy
        if keyword in stage:
            if keyword not in _REPEATABLE:
                raise FormatError(f'{where}: given twice in one run block')
            previous = stage[keyword]
            stage[keyword] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            stage[keyword] = value
        if keyword == 'run':
            try:
                _stage_checks(stage, legacy)
            except _Bad as error:
                raise FormatError(f'run.in line {number}: {error}') from None
            stages.append(stage)
            stage = {}
    if stage:
        try:
            _stage_checks(stage, legacy)
        except _Bad as error:
            raise FormatError(f'run.in (after the last run): {error}') from None
        stages.append(stage)
    if potential is None:
        raise FormatError('run.in: potential: missing (mandatory, normally the first line)')
    if not stages:
        raise FormatError('run.in: no commands after potential')
    return {'potential': potential, 'stages': stages, 'legacy': used_legacy}


# The restart planner lives in .gpumd_plan; its names are re-exported here, where they were first defined.
from .gpumd_plan import (  # noqa: E402, F401
    DEFAULT_TIME_STEP_FS,
    canonical_stages,
    ensure_restart_dumps,
    remaining_stages,
    restart_point,
    run_progress,
    run_stage_indices,
    scale_time_step,
    stage_time_steps,
    target_temperatures,
    thermo_rows_per_stage,
    thermo_schedule,
)
