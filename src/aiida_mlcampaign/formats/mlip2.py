"""mlip-2's ``mlp`` command lines, ``mlip.ini``, LAMMPS inputs for ``pair_style mlip``, and the text ``mlp`` prints.

Pure functions (no AiiDA): the CalcJobs in ``calculations/mlip2.py`` only call these. Everything follows
``shared/docs/mtp-formats.md`` §3-§5 (mlip-2 as in the ``mas37/iljwme`` mirror, commit ``f4338863``):

* command builders return the full argument vector starting with ``mlp``; option dicts use Python names
  (``energy_weight``) that map one to one onto mlp's options (``--energy-weight=``); only documented options
  are accepted and :func:`check_train_options` & co. raise ``ValueError`` naming the bad key;
* readers of ``mlp`` standard output (error report, ``train`` log, ``select-add`` log) and of LAMMPS' log;
* ``mlip.ini`` writer/checker and a LAMMPS NVT exploration input with ``pair_style mlip mlip.ini``.

mlip-2 itself is never imported, run or copied here (its licence forbids redistribution).
"""

from __future__ import annotations

import io
import math
import re
import typing as t

__all__ = [
    'EXIT_EXTRAPOLATION_STOP',
    'EXIT_MLIP_INIT_FAILED',
    'LAMMPS_DEFAULTS',
    'TRAIN_DEFAULTS',
    'calc_efs_command',
    'calc_errors_command',
    'calc_grade_command',
    'check_grade_options',
    'check_lammps_parameters',
    'check_mlip_ini',
    'check_select_add_options',
    'check_train_options',
    'find_break_grade',
    'lammps_data',
    'lammps_mlip_input',
    'mlip_ini',
    'read_errors_report',
    'read_errors_reports',
    'read_lammps_log',
    'read_select_add_log',
    'read_train_log',
    'select_add_command',
    'train_command',
]

#: LAMMPS' exit status when the MLIP interface stops on ``select:threshold-break`` (``exit(9992)``, 9992 mod 256).
EXIT_EXTRAPOLATION_STOP = 8
#: LAMMPS' exit status when the MLIP interface fails to initialise (``exit(9991)``).
EXIT_MLIP_INIT_FAILED = 7

_WEIGHTINGS = ('vibrations', 'molecules', 'structures')


# ----------------------------------------------------------------------------------------- option checks


def _number(name: str, value, *, minimum: float | None = None, strict: bool = False, integer: bool = False):
    """``value`` as int/float; ``minimum`` is inclusive unless ``strict``. Raises ValueError naming ``name``."""
    kind = 'an integer' if integer else 'a number'
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f'{name}: must be {kind}, got {value!r}')
    if not math.isfinite(value):
        raise ValueError(f'{name}: must be finite, got {value!r}')
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = '>' if strict else '>='
        raise ValueError(f'{name}: must be {kind} {relation} {minimum}, got {value!r}')
    return int(value) if integer else float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f'{name}: must be true or false, got {value!r}')  # noqa: TRY004 - callers catch ValueError from Dict inputs
    return value


def _choice(choices: tuple[str, ...]):
    def check(name: str, value) -> str:
        if value not in choices:
            raise ValueError(f'{name}: {value!r} is not one of {list(choices)}')
        return value
    return check


def _nonnegative(name, value):
    return _number(name, value, minimum=0.0)


def _positive(name, value):
    return _number(name, value, minimum=0.0, strict=True)


def _at_least_one(name, value):
    return _number(name, value, minimum=1.0)


def _count(name, value):
    return _number(name, value, minimum=1, integer=True)


def _count0(name, value):
    return _number(name, value, minimum=0, integer=True)


# name -> (mlp option, checker, kind) where kind 'value' writes --opt=value and 'flag' writes --opt when True.
_TRAIN_SPEC: dict[str, tuple[str, t.Callable, str]] = {
    'energy_weight': ('--energy-weight', _nonnegative, 'value'),
    'force_weight': ('--force-weight', _nonnegative, 'value'),
    'stress_weight': ('--stress-weight', _nonnegative, 'value'),
    'scale_by_force': ('--scale-by-force', _nonnegative, 'value'),
    'max_iter': ('--max-iter', _count, 'value'),
    'bfgs_conv_tol': ('--bfgs-conv-tol', _positive, 'value'),
    'weighting': ('--weighting', _choice(_WEIGHTINGS), 'value'),
    'init_params': ('--init-params', _choice(('random', 'same')), 'value'),
    'skip_preinit': ('--skip-preinit', _flag, 'flag'),
    'update_mindist': ('--update-mindist', _flag, 'flag'),
}
#: Always written, so the command documents itself (the values are mlp's own defaults, §4).
TRAIN_DEFAULTS = {
    'energy_weight': 1.0, 'force_weight': 0.01, 'stress_weight': 0.001, 'max_iter': 1000, 'init_params': 'random',
    'update_mindist': False,
}

_GRADE_SPEC: dict[str, tuple[str, t.Callable, str]] = {
    'init_threshold': ('--init-threshold', _positive, 'value'),
    'select_threshold': ('--select-threshold', _at_least_one, 'value'),
    'swap_threshold': ('--swap-threshold', _at_least_one, 'value'),
}
_SELECT_ADD_SPEC = {
    **_GRADE_SPEC,
    'selection_limit': ('--selection-limit', _count0, 'value'),
    'weighting': ('--weighting', _choice(_WEIGHTINGS), 'value'),
}


def _check(options: t.Mapping, spec: dict, what: str, defaults: dict | None = None) -> dict:
    if not isinstance(options, t.Mapping):
        raise ValueError(f'options: expected a dict of {what} options, got {type(options).__name__}')  # noqa: TRY004
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise ValueError(f'options: unknown {what} option(s) {unknown}; known: {sorted(spec)}')
    merged = {**(defaults or {}), **options}
    return {key: spec[key][1](f'options.{key}', value) for key, value in merged.items()}


def _arguments(options: dict, spec: dict) -> list[str]:
    arguments = []
    for key, value in options.items():
        flag, _, kind = spec[key]
        if kind == 'flag':
            if value:
                arguments.append(flag)
        else:
            arguments.append(f'{flag}={_format_value(value)}')
    return arguments


def _format_value(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def check_train_options(options: t.Mapping) -> dict:
    """``options`` completed with :data:`TRAIN_DEFAULTS` and checked; ValueError names the bad key."""
    checked = _check(options, _TRAIN_SPEC, 'mlp train', TRAIN_DEFAULTS)
    if checked['energy_weight'] == checked['force_weight'] == checked['stress_weight'] == 0:
        raise ValueError('options.energy_weight, force_weight, stress_weight: all three are 0; nothing to fit')
    return checked


def train_command(options: t.Mapping, potential: str = 'pot.mtp', training: str = 'train.cfg',
                  trained: str = 'trained.mtp', valid_cfgs: str | None = None) -> list[str]:
    """``mlp train pot.mtp train.cfg --energy-weight=... --trained-pot-name=...`` as an argument vector."""
    checked = check_train_options(options)
    command = ['mlp', 'train', potential, training, *_arguments(checked, _TRAIN_SPEC)]
    if valid_cfgs:
        command.append(f'--valid-cfgs={valid_cfgs}')
    command.append(f'--trained-pot-name={trained}')
    return command


def calc_efs_command(potential: str = 'pot.mtp', frames: str = 'in.cfg', output: str = 'out.cfg') -> list[str]:
    """``mlp calc-efs pot.mtp in.cfg out.cfg`` (no options)."""
    return ['mlp', 'calc-efs', potential, frames, output]


def calc_errors_command(potential: str = 'pot.mtp', frames: str = 'db.cfg') -> list[str]:
    """``mlp calc-errors pot.mtp db.cfg`` (prints the error report; no options)."""
    return ['mlp', 'calc-errors', potential, frames]


def check_grade_options(options: t.Mapping) -> dict:
    """Thresholds of ``mlp calc-grade``: ``init_threshold`` (> 0), ``select_threshold``, ``swap_threshold`` (>= 1)."""
    return _check(options, _GRADE_SPEC, 'mlp calc-grade')


def calc_grade_command(options: t.Mapping, potential: str = 'pot.mtp', training: str = 'train.cfg',
                       frames: str = 'in.cfg', output: str = 'out.cfg', als: str = 'state.als') -> list[str]:
    """``mlp calc-grade pot.mtp train.cfg in.cfg out.cfg --als-filename=state.als [thresholds]``."""
    checked = check_grade_options(options)
    return ['mlp', 'calc-grade', potential, training, frames, output, f'--als-filename={als}',
            *_arguments(checked, _GRADE_SPEC)]


def check_select_add_options(options: t.Mapping) -> dict:
    """Options of ``mlp select-add``: the calc-grade thresholds plus ``selection_limit`` (>= 0) and ``weighting``."""
    return _check(options, _SELECT_ADD_SPEC, 'mlp select-add')


def select_add_command(options: t.Mapping, potential: str = 'pot.mtp', training: str = 'train.cfg',
                       candidates: str = 'new.cfg', diff: str = 'diff.cfg', als: str = 'state.als',
                       selected: str = 'selected.cfg') -> list[str]:
    """``mlp select-add pot.mtp train.cfg new.cfg diff.cfg --als-filename=... --selected-filename=... [...]``."""
    checked = check_select_add_options(options)
    return ['mlp', 'select-add', potential, training, candidates, diff, f'--als-filename={als}',
            f'--selected-filename={selected}', *_arguments(checked, _SELECT_ADD_SPEC)]


# ----------------------------------------------------------------------------------------- error report

_REPORT_TITLE = re.compile(r'^\s*\*\s*\*\s*\*\s*(.+?)\s*\*\s*\*\s*\*\s*$')
_REPORT_START = re.compile(r'^_+\s*Errors report\s*_+\s*$')
_REPORT_END = re.compile(r'^_{5,}\s*$')
_SECTION_LINE = re.compile(r'^(\S.*?):\s*$')
_SECTION_KEYS = {
    'Energy': 'energy',
    'Energy per atom': 'energy_per_atom',
    'Forces': 'forces',
    'Stresses (in eV)': 'virial',            # PlusStress differences, eV
    'Virial stresses (in GPa)': 'stress',    # the same divided by the volume, GPa
}
_COUNT_LINE = re.compile(r'^Errors checked for (\d+) (configurations|atoms)\s*$')
_VALUE_LINE = re.compile(r'^(.*?)\s*=\s*(\S+)\s*$')


def _value_key(label: str) -> str | None:
    label = ' '.join(label.split())
    if label.startswith('Maximal absolute difference'):
        return 'max'
    if label.startswith('Average absolute difference'):
        return 'mae'
    if label.startswith('RMS absolute difference'):
        return 'rmse'
    if label.startswith('Max(') and '/ Max(' in label:
        return 'max_rel'
    if label.startswith('RMS(') and '/ RMS(' in label:
        return 'rms_rel'
    return None


def _float_or_none(text: str) -> float | None:
    """mlp prints ``nan``/``inf`` for relative errors against zero references; those become None (JSON-safe)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'error report: {text!r} is not a number') from None
    return value if math.isfinite(value) else None


def _slug(title: str) -> str:
    return re.sub(r'[^a-z0-9]+', '_', title.lower()).strip('_')


def read_errors_reports(text: str) -> dict[str, dict]:
    """All error reports in ``text`` by title: ``{'train': {...}, 'validation': {...}}``.

    ``mlp calc-errors`` and ``mlp train`` both title their (first) report ``TRAIN ERRORS``; ``train --valid-cfgs``
    adds ``VALIDATION ERRORS``. A report without a title line is filed under ``'train'``.
    Keys per section (``energy``, ``energy_per_atom``, ``forces``, ``virial`` [eV], ``stress`` [GPa]):
    ``<section>_count``, ``_max``, ``_mae`` (average absolute), ``_rmse``, and for forces/virial/stress the
    relative errors ``_max_rel`` (Max(diff)/Max(ref)) and ``_rms_rel`` (RMS(diff)/RMS(ref)). Values mlp prints as
    nan/inf are None. Force errors are mlp's per-atom figures (not motep's per-component ones).
    """
    reports: dict[str, dict] = {}
    title = None
    current: dict | None = None
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if current is None:
            if match := _REPORT_TITLE.match(line):
                title = match.group(1)
            elif _REPORT_START.match(line):
                current, section = {}, None
            continue
        if _REPORT_END.match(line) and not _REPORT_START.match(line):
            reports[_slug(title.replace('ERRORS', '')) if title else 'train'] = current
            current, title = None, None
        elif not line:
            continue
        elif match := _SECTION_LINE.match(line):
            section = _SECTION_KEYS.get(match.group(1), _slug(match.group(1)))
        elif section and (match := _COUNT_LINE.match(line)):
            current[f'{section}_count'] = int(match.group(1))
        elif section and (match := _VALUE_LINE.match(line)):
            key = _value_key(match.group(1))
            if key is not None:
                current[f'{section}_{key}'] = _float_or_none(match.group(2))
    if current is not None:
        raise ValueError('error report: the report is cut off (no closing underline); the run did not finish')
    return reports


def read_errors_report(text: str) -> dict:
    """The first (training-set) error report of ``mlp calc-errors`` / ``mlp train`` output as a flat dict.

    Raises ValueError when the text holds no complete report. See :func:`read_errors_reports` for the keys.
    """
    reports = read_errors_reports(text)
    if not reports:
        raise ValueError('error report: no "Errors report" block found; the run did not finish')
    return reports.get('train', next(iter(reports.values())))


# ----------------------------------------------------------------------------------------- train log

_BFGS = re.compile(r'^BFGS iter (\d+): f=(\S+)\s*$')
_ITER_LIMIT = re.compile(r'^(?:BFGS iterations count set to|Iteration limit is)\s+(\d+)\s*$')
_MINDIST = re.compile(r'mindist\s*=\s*(\S+?),')
_HEADER = re.compile(r'^MTPR from (\S+), Database: (\S+)\s*$')


def read_train_log(text: str, max_iter: int | None = None) -> dict:
    """What ``mlp train`` printed: BFGS stages, whether the main stage hit ``--max-iter``, the error reports.

    mlp numbers ``BFGS iter k`` from 0 in each optimisation: a 75-iteration pre-training (between
    ``Pre-training started`` and ``Pre-training ended``, absent for trained input or ``--skip-preinit``) and the
    main training (after ``BFGS iterations count set to N``). Returned keys: ``potential``, ``database``,
    ``stages`` (list of ``{'stage': 'pretraining'|'training', 'iterations', 'losses'}``), ``bfgs_iterations`` and
    ``final_loss`` of the main stage (None before it started), ``max_iter`` (from the log, else the argument),
    ``reached_max_iter``, ``mindist`` (new min_dist with ``--update-mindist``), ``train_errors`` and
    ``validation_errors`` (None when absent) and ``finished`` (the TRAIN ERRORS report is complete).
    """
    stages: list[dict] = []
    stage_name = 'training'
    limit_from_log = None
    step_limit_message = False
    potential = database = mindist = None
    previous = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := _BFGS.match(line):
            k = int(match.group(1))
            if previous is None or k <= previous or not stages or stages[-1]['stage'] != stage_name:
                stages.append({'stage': stage_name, 'iterations': 0, 'losses': []})
            loss = _float_or_none(match.group(2))
            stages[-1]['losses'].append(loss)
            stages[-1]['iterations'] = k + 1
            previous = k
        elif line.startswith('Pre-training started'):
            stage_name, previous = 'pretraining', None
        elif line.startswith('Pre-training ended'):
            stage_name, previous = 'training', None
        elif match := _ITER_LIMIT.match(line):
            limit_from_log, stage_name, previous = int(match.group(1)), 'training', None
        elif line.startswith('step limit reached') and stage_name == 'training':
            step_limit_message = True
        elif match := _HEADER.match(line):
            potential, database = match.group(1), match.group(2)
        elif 'mindist' in line and 'will be' in line and (match := _MINDIST.search(line)):
            mindist = _float_or_none(match.group(1))
    reports = read_errors_reports(text)
    main = [stage for stage in stages if stage['stage'] == 'training']
    main = main[-1] if main else None
    limit = limit_from_log if limit_from_log is not None else max_iter
    reached = main is not None and (step_limit_message or (limit is not None and main['iterations'] >= limit))
    return {
        'potential': potential,
        'database': database,
        'stages': stages,
        'bfgs_iterations': main['iterations'] if main else None,
        'final_loss': main['losses'][-1] if main and main['losses'] else None,
        'max_iter': limit,
        'reached_max_iter': bool(reached),
        'mindist': mindist,
        'train_errors': reports.get('train'),
        'validation_errors': reports.get('validation'),
        'finished': 'train' in reports,
    }


# ----------------------------------------------------------------------------------------- select-add log

_SELECT_ADD_LINES = {
    'num_training': re.compile(r'^(\d+) configurations found in the training set'),
    'active_set_size': re.compile(r'^(\d+) configurations selected from both sets'),
    'num_candidates': re.compile(r'^new configuration count = (\d+)'),
    'num_selected': re.compile(r'^TS increased by (-?\d+) configs'),
    'selection_limit': re.compile(r'^Swap limit = (\d+)'),
}


def read_select_add_log(text: str) -> dict:
    """Counts ``mlp select-add`` prints: ``num_training`` (configurations in train.cfg), ``active_set_size``
    (non-empty rows of the active set after selection), ``num_candidates`` (configurations offered),
    ``num_selected`` (written to diff.cfg, "TS increased by"), ``selection_limit`` (when set) and the
    ``state_saved`` flag. Raises ValueError when the run did not get to "TS increased by".
    """
    result: dict = {'state_saved': False}
    for raw in text.splitlines():
        line = raw.strip()
        # "loading training set... done" and the count may share a line when output is buffered.
        line = line.split('done', 1)[1].strip() if line.startswith('loading training set') else line
        for key, pattern in _SELECT_ADD_LINES.items():
            if key not in result and (match := pattern.match(line)):
                result[key] = int(match.group(1))
        if 'Selection: state saved to' in line:
            result['state_saved'] = True
    if 'num_selected' not in result:
        raise ValueError('select-add output: no "TS increased by" line; the selection did not finish')
    return result


# ----------------------------------------------------------------------------------------- mlip.ini

_INI_BOOL_KEYS = {'calculate-efs', 'select', 'write-cfgs', 'fit', 'check-errors'}
_INI_FLOAT_KEYS = {
    'select:threshold', 'select:threshold-break', 'select:threshold-init', 'select:threshold-swap',
    'select:energy-weight', 'select:force-weight', 'select:stress-weight', 'select:site-en-weight',
}
_INI_TEXT_KEYS = {
    'mtp-filename', 'select:save-selected', 'select:load-state', 'select:save-state', 'select:log',
    'select:weighting', 'select:efs-ignored', 'write-cfgs:skip', 'log', 'abinitio',
}
_INI_KEYS = _INI_BOOL_KEYS | _INI_FLOAT_KEYS | _INI_TEXT_KEYS
_TRUE, _FALSE = ('TRUE', 'true', 'True'), ('FALSE', 'false', 'False')


def mlip_ini(mtp_filename: str, select: bool = True, threshold: float = 2.1, threshold_break: float = 10.0,
             save_selected: str = 'preselected.cfg', load_state: str = 'state.als') -> str:
    """``mlip.ini`` for ``pair_style mlip``: with ``select`` the run grades every step, appends configurations
    with γ > ``threshold`` to ``save_selected`` and stops (exit code 8) when γ > ``threshold_break``.

    Without ``select`` the file only names the potential (production MD, MPI-parallel).
    """
    lines = [f'mtp-filename {mtp_filename}', 'calculate-efs TRUE']
    if select:
        lines += [
            'select TRUE',
            f'select:threshold {_format_value(float(threshold))}',
            f'select:threshold-break {_format_value(float(threshold_break))}',
            f'select:save-selected {save_selected}',
            f'select:load-state {load_state}',
        ]
    else:
        lines.append('select FALSE')
    text = '\n'.join(lines) + '\n'
    check_mlip_ini(text)
    return text


def check_mlip_ini(text: str) -> dict:
    """Parse and check ``mlip.ini`` text; returns ``{key: value}`` (bools, floats, strings).

    mlip-2 silently ignores unknown keys, so here they are errors (a typo would switch selection off).
    With ``select TRUE``: ``select:threshold`` >= 1, a non-zero ``select:threshold-break`` must exceed it, and
    ``select:load-state`` is needed once ``select:threshold-break`` is set (selection by generation).
    """
    settings: dict = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        key = tokens[0]
        where = f'mlip.ini line {number}: {key}'
        if key not in _INI_KEYS:
            raise ValueError(f'{where}: unknown key (known: {sorted(_INI_KEYS)})')
        if key in settings:
            raise ValueError(f'{where}: given twice')
        if len(tokens) != 2:
            raise ValueError(f'{where}: expected one value, got {tokens[1:]}')
        value = tokens[1]
        if key in _INI_BOOL_KEYS:
            if value not in _TRUE + _FALSE:
                raise ValueError(f'{where}: expected TRUE or FALSE, got {value!r}')
            settings[key] = value in _TRUE
        elif key in _INI_FLOAT_KEYS:
            try:
                settings[key] = float(value)
            except ValueError:
                raise ValueError(f'{where}: expected a number, got {value!r}') from None
        else:
            settings[key] = value
    if 'mtp-filename' not in settings:
        raise ValueError('mlip.ini: mtp-filename is missing')
    if settings.get('select'):
        threshold = settings.get('select:threshold', 1.001)
        if threshold < 1.0:
            raise ValueError(f'mlip.ini: select:threshold must be >= 1 (grades <= 1 are interpolation), '
                             f'got {threshold}')
        threshold_break = settings.get('select:threshold-break', 0.0)
        if threshold_break != 0.0 and threshold_break <= threshold:
            raise ValueError(
                f'mlip.ini: select:threshold-break ({threshold_break}) must be larger than '
                f'select:threshold ({threshold})'
            )
        if threshold_break != 0.0 and 'select:load-state' not in settings:
            raise ValueError('mlip.ini: select:load-state is needed with select:threshold-break (the active set '
                             'must come from mlp calc-grade / select-add)')
    return settings


# ----------------------------------------------------------------------------------------- LAMMPS

#: Parameters of the NVT exploration run; ``temperature`` (K) and ``steps`` have no default.
LAMMPS_DEFAULTS = {
    'timestep': 0.001,         # ps (1 fs)
    'tdamp': None,             # ps; None = 100 timesteps
    'seed': 12345,             # velocity seed, must be > 0
    'thermo': 10,              # thermo output every N steps
    'select': True,
    'threshold': 2.1,
    'threshold_break': 10.0,
}
_LAMMPS_KEYS = {'temperature', 'steps', *LAMMPS_DEFAULTS}


def check_lammps_parameters(parameters: t.Mapping) -> dict:
    """Complete ``parameters`` with :data:`LAMMPS_DEFAULTS`; ValueError names the bad key."""
    if not isinstance(parameters, t.Mapping):
        raise ValueError(f'parameters: expected a dict, got {type(parameters).__name__}')  # noqa: TRY004
    unknown = sorted(set(parameters) - _LAMMPS_KEYS)
    if unknown:
        raise ValueError(f'parameters: unknown key(s) {unknown}; known: {sorted(_LAMMPS_KEYS)}')
    missing = sorted({'temperature', 'steps'} - set(parameters))
    if missing:
        raise ValueError(f'parameters: {missing} required')
    merged = {**LAMMPS_DEFAULTS, **parameters}
    checked = {
        'temperature': _positive('parameters.temperature', merged['temperature']),
        'steps': _count('parameters.steps', merged['steps']),
        'timestep': _positive('parameters.timestep', merged['timestep']),
        'seed': _count('parameters.seed', merged['seed']),
        'thermo': _count('parameters.thermo', merged['thermo']),
        'select': _flag('parameters.select', merged['select']),
        'threshold': _at_least_one('parameters.threshold', merged['threshold']),
        'threshold_break': _positive('parameters.threshold_break', merged['threshold_break']),
    }
    checked['tdamp'] = (100 * checked['timestep'] if merged['tdamp'] is None
                        else _positive('parameters.tdamp', merged['tdamp']))
    if checked['select'] and checked['threshold_break'] <= checked['threshold']:
        raise ValueError(
            f"parameters.threshold_break: must be larger than parameters.threshold "
            f"({checked['threshold_break']} <= {checked['threshold']})"
        )
    return checked


def lammps_mlip_input(species: t.Sequence[str], temperature: float, steps: int, data_file: str = 'structure.data',
                      mlip_ini_file: str = 'mlip.ini', timestep: float = 0.001, seed: int = 12345,
                      thermo: int = 10, tdamp: float | None = None) -> str:
    """LAMMPS input for NVT exploration with ``pair_style mlip``; LAMMPS type ``i`` is MTP type ``i - 1``.

    A ``mass`` line is written for every species (also those absent from the structure, so the type count
    matches the potential). ``thermo_modify flush yes`` keeps log.lammps current when mlip stops the run.
    """
    from ase.data import atomic_masses, atomic_numbers

    checked = check_lammps_parameters({'temperature': temperature, 'steps': steps, 'timestep': timestep,
                                       'seed': seed, 'thermo': thermo, 'tdamp': tdamp, 'select': False})
    species = list(species)
    if not species:
        raise ValueError('species: at least one element is required')
    lines = [
        '# NVT exploration with an MTP through the mlip-2 LAMMPS interface (written by aiida-mlcampaign)',
        'units metal',
        'atom_style atomic',
        'boundary p p p',
        f'read_data {data_file}',
    ]
    for index, symbol in enumerate(species, start=1):
        if symbol not in atomic_numbers:
            raise ValueError(f'species: unknown element {symbol!r}')
        lines.append(f'mass {index} {float(atomic_masses[atomic_numbers[symbol]]):.6f}  # {symbol}')
    T = _format_value(checked['temperature'])
    lines += [
        '',
        f'pair_style mlip {mlip_ini_file}',
        'pair_coeff * *',
        '',
        f"timestep {_format_value(checked['timestep'])}",
        f"velocity all create {T} {checked['seed']} dist gaussian mom yes",
        f"fix nvt all nvt temp {T} {T} {_format_value(checked['tdamp'])}",
        'thermo_style custom step temp pe ke etotal press vol',
        'thermo_modify flush yes',
        f"thermo {checked['thermo']}",
        f"run {checked['steps']}",
    ]
    return '\n'.join(lines) + '\n'


def lammps_data(structure_atoms, species: t.Sequence[str]) -> str:
    """LAMMPS data file (``atom_style atomic``, metal units) with types in ``species`` order and all masses.

    Triclinic cells are rotated into LAMMPS' upper-triangular frame by ASE; configurations that mlip saves
    during the run are in that frame (energies and grades do not depend on it).
    """
    from ase.io import write

    species = list(species)
    extra = sorted(set(structure_atoms.get_chemical_symbols()) - set(species))
    if extra:
        raise ValueError(f'structure: elements {extra} are not in the potential species {species}')
    if not all(structure_atoms.pbc):
        raise ValueError(f'structure: must be periodic in all three directions, pbc = {list(structure_atoms.pbc)}')
    buffer = io.StringIO()
    write(buffer, structure_atoms, format='lammps-data', specorder=species, masses=True, units='metal',
          atom_style='atomic')
    return buffer.getvalue()


_BREAK = re.compile(r'Breaking threshold exceeded\s*\(MV-grade:\s*([^\s)]+)\s*\)')


def find_break_grade(text: str) -> float | None:
    """The grade in mlip's "Breaking threshold exceeded (MV-grade: γ)" message, None when absent."""
    matches = _BREAK.findall(text)
    if not matches:
        return None
    try:
        return float(matches[-1])
    except ValueError:
        return math.inf


def read_lammps_log(text: str) -> dict:
    """Thermo tables of ``log.lammps``: ``columns``, ``rows`` (all runs concatenated), ``last_step``,
    ``completed`` (a run printed "Loop time of"), ``errors`` (``ERROR`` lines) and ``break_grade``.
    """
    columns: list[str] | None = None
    rows: list[list[float]] = []
    in_table = False
    completed = False
    errors = []
    for raw in text.splitlines():
        tokens = raw.split()
        if not tokens:
            continue
        if tokens[0] == 'Step':
            columns, in_table = tokens, True
            continue
        if raw.startswith('Loop time of'):
            completed, in_table = True, False
            continue
        if raw.startswith('ERROR'):
            errors.append(raw.strip())
        if in_table and columns is not None and len(tokens) == len(columns):
            try:  # WARNING lines may interrupt a table; only rows of numbers count
                rows.append([float(token) for token in tokens])
            except ValueError:
                pass
    last_step = int(rows[-1][0]) if rows else None
    return {
        'columns': columns or [],
        'rows': rows,
        'last_step': last_step,
        'completed': completed,
        'errors': errors,
        'break_grade': find_break_grade(text),
    }
