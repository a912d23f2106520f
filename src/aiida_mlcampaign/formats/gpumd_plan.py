"""The arithmetic of a restartable GPUMD MD protocol, apart from the ``run.in`` grammar (:mod:`.gpumd_run`).

Given the stages of a protocol (the dicts :func:`~aiida_mlcampaign.formats.gpumd_run.read_run_in` returns): the
row schedule of ``thermo.out``, how far a stopped job got, which step its ``restart.xyz`` holds, the stages that
are left to run, a halved time step with every step count scaled, and restart dumps where a protocol has none.
Pure functions (no AiiDA); the restart chain (``mlcampaign.gpumd.base``) and the GPUMD parser use them.
"""

from __future__ import annotations


import numpy as np

from .frames import FormatError

__all__ = [
    'DEFAULT_TIME_STEP_FS', 'canonical_stages', 'ensure_restart_dumps', 'remaining_stages', 'restart_point',
    'run_progress', 'run_stage_indices', 'scale_time_step', 'stage_time_steps', 'target_temperatures',
    'thermo_rows_per_stage', 'thermo_schedule',
]


# ================================================================================================ segments
# The arithmetic a restartable MD protocol needs: where each thermo.out row sits, how far a stopped job got, which
# step its restart.xyz holds, and the run.in that does what is left. GPUMD writes thermo rows and restart.xyz when
# (step + 1) % interval == 0, counting steps from 0 inside each run block, so a block of M steps gives M // interval
# rows and restart dumps at interval, 2*interval, ... (overwriting restart.xyz each time). time_step carries over to
# later blocks (default 1 fs); everything else (ensemble, dump_*, compute_*, fix) lives and dies with its block.

DEFAULT_TIME_STEP_FS = 1.0

#: Keys whose value counts time steps: they scale with 1/factor when the time step is scaled by factor.
_STEP_ARGUMENTS = {
    'dump_thermo': None, 'dump_restart': None, 'dump_xyz': ('interval',), 'dump_exyz': ('interval',),
    'dump_position': ('interval',), 'dump_velocity': ('interval',), 'dump_force': ('interval',),
    'compute_msd': ('sample_interval', 'save_every'), 'compute_sdc': ('sample_interval',),
    'compute_rdf': ('interval',), 'compute_dos': ('sample_interval',), 'compute_hac': ('sample_interval',),
    'compute_hnemd': ('output_interval',), 'compute_shc': ('sample_interval',),
    'compute_viscosity': ('sample_interval',), 'compute_adf': ('interval',), 'compute': ('sample_interval',),
}


def canonical_stages(stages, *, legacy: bool = False) -> list[dict]:
    """The stages in the form :func:`read_run_in` returns, whatever form (lists, strings, numbers) they came in."""
    from .gpumd_run import read_run_in, run_in  # here, not above: gpumd_run re-exports this module's names

    return read_run_in(run_in(stages, legacy=legacy), legacy=legacy, allow_raw=True)['stages']


def run_stage_indices(stages: list[dict]) -> list[int]:
    return [i for i, stage in enumerate(stages) if 'run' in stage]


def stage_time_steps(stages: list[dict]) -> list[float]:
    """The time step (fs) each stage runs with: the last ``time_step`` at or before it, else 1 fs."""
    current, out = DEFAULT_TIME_STEP_FS, []
    for stage in stages:
        if 'time_step' in stage:
            current = float(stage['time_step']['dt'])
        out.append(current)
    return out


def _thermo_interval(stage: dict) -> int | None:
    return stage.get('dump_thermo') if 'run' in stage else None


def thermo_rows_per_stage(stages: list[dict]) -> list[int]:
    return [stage['run'] // _thermo_interval(stage) if _thermo_interval(stage) else 0 for stage in stages]


def thermo_schedule(stages: list[dict], num_rows: int) -> dict:
    """Where the first ``num_rows`` rows of ``thermo.out`` sit: ``stage``, ``step_in_stage`` (1-based, the step the
    row was written after), ``step`` (counted over all run blocks from the start of the job) and ``time_fs``.

    Fewer rows than the protocol writes is fine (a stopped job, or a file cut short); more raises
    :class:`FormatError` (output appended from an earlier run in the same directory).
    """
    dts = stage_time_steps(stages)
    stage_of, in_stage, step, time = [], [], [], []
    steps_before, time_before = 0, 0.0
    for index, stage in enumerate(stages):
        if 'run' not in stage:
            continue
        interval = _thermo_interval(stage)
        if interval:
            for row in range(1, stage['run'] // interval + 1):
                if len(stage_of) == num_rows:
                    break
                stage_of.append(index)
                in_stage.append(row * interval)
                step.append(steps_before + row * interval)
                time.append(time_before + row * interval * dts[index])
        steps_before += stage['run']
        time_before += stage['run'] * dts[index]
    if len(stage_of) < num_rows:
        raise FormatError(f'thermo.out: {num_rows} rows, but run.in (run / dump_thermo of each block) asks for '
                          f'{len(stage_of)}: output of another run appended?')
    return {'stage': np.array(stage_of, dtype=int), 'step_in_stage': np.array(in_stage, dtype=int),
            'step': np.array(step, dtype=int), 'time_fs': np.array(time, dtype=float)}


def run_progress(stages: list[dict], runs_finished: int, thermo_rows: int | None) -> dict:
    """How far a job got: the run blocks it finished (from the ``Speed of this run`` lines of stdout) and, inside the
    block it stopped in, the steps that ``thermo.out`` proves done (rows x dump_thermo; a lower bound: up to
    ``dump_thermo - 1`` more steps may have run).

    Returns ``steps_done`` (per stage), ``steps_requested`` (per stage, 0 for setup-only stages), ``current_stage``
    (the block it stopped in, None when every block finished), ``runs_finished``, ``runs_total`` and
    ``thermo_consistent`` (False when thermo.out has fewer rows than the finished blocks wrote).
    """
    indices = run_stage_indices(stages)
    if runs_finished > len(indices):
        raise FormatError(f'stdout reports {runs_finished} finished runs, run.in has {len(indices)}')
    requested = [stage.get('run', 0) for stage in stages]
    done = [0] * len(stages)
    for index in indices[:runs_finished]:
        done[index] = requested[index]
    current = indices[runs_finished] if runs_finished < len(indices) else None
    rows_expected = thermo_rows_per_stage(stages)
    rows_before = sum(rows_expected[i] for i in indices[:runs_finished])
    consistent = thermo_rows is None or thermo_rows >= rows_before
    if current is not None and thermo_rows is not None and _thermo_interval(stages[current]):
        rows_here = max(0, thermo_rows - rows_before)
        done[current] = min(rows_here * _thermo_interval(stages[current]), requested[current])
    return {'steps_done': done, 'steps_requested': requested, 'current_stage': current,
            'runs_finished': runs_finished, 'runs_total': len(indices), 'thermo_consistent': consistent}


def restart_point(stages: list[dict], steps_done: list[int]) -> dict | None:
    """The step the last ``restart.xyz`` was written at, or None when no ``dump_restart`` fired yet.

    Returns ``stage``, ``step_in_stage``, ``step`` and ``time_fs`` (counted from the start of the job) and ``exact``:
    True when ``steps_done`` of that stage is exact (a finished block) or when its ``dump_restart`` interval is a
    multiple of its ``dump_thermo`` interval (then no restart step can hide between the last thermo row and the
    stop). A False ``exact`` means the file may hold a later step than the one given.
    """
    dts = stage_time_steps(stages)
    for index in reversed(range(len(stages))):
        stage = stages[index]
        if 'run' not in stage or not steps_done[index]:
            continue
        interval = stage.get('dump_restart')
        if not interval:
            continue
        step_in_stage = steps_done[index] // interval * interval
        if step_in_stage == 0:
            continue
        finished = steps_done[index] == stage['run']
        thermo = _thermo_interval(stage)
        exact = finished or bool(thermo and interval % thermo == 0)
        before = [i for i in run_stage_indices(stages) if i < index]
        return {'stage': index, 'step_in_stage': step_in_stage,
                'step': sum(stages[i]['run'] for i in before) + step_in_stage,
                'time_fs': sum(stages[i]['run'] * dts[i] for i in before) + step_in_stage * dts[index],
                'exact': exact}
    return None


def _ramp(start: float, end: float, fraction: float) -> float:
    value = start + (end - start) * fraction
    return float(round(value, 10))


def _shorten_ensemble(ensemble: dict, done: int, total: int) -> dict:
    """The ensemble of a block restarted after ``done`` of ``total`` steps: GPUMD ramps targets linearly over the
    block (target = start + (end - start) * step / steps), so the new start is the target reached at ``done``."""
    out = dict(ensemble)
    fraction = done / total
    if 'T1' in out and 'T2' in out:
        out['T1'] = _ramp(out['T1'], out['T2'], fraction)
    for key in ('temp', 'iso', 'aniso', 'tri', 'x', 'y', 'z', 'xy', 'yz', 'xz'):
        if key in out and isinstance(out[key], list) and len(out[key]) == 2:
            out[key] = [_ramp(out[key][0], out[key][1], fraction), out[key][1]]
    return out


def remaining_stages(stages: list[dict], stage: int, step_in_stage: int) -> tuple[list[dict], list[str]]:
    """The protocol still to run after a restart written at ``step_in_stage`` of ``stages[stage]``; and notes.

    Finished blocks (and the setup-only stages before the restart point) are dropped. The block the restart sits in
    is shortened to its remaining steps, its ensemble's ramps start where they had got to, ``velocity`` and
    ``minimize`` are dropped (the restart carries the velocities; re-minimising mid-run would be wrong), the
    ``time_step`` in effect is written into the first remaining stage (it was set in a dropped one), and a
    ``compute_msd`` window that no longer fits the shorter block (refused by GPUMD >= 4.2) gets fewer points (a note
    says so). ``compute_*`` and ``dump_*`` keywords are otherwise kept: their outputs restart in the new job.
    Returns ``([], notes)`` when the restart is the end of the protocol.
    """
    if not 0 <= stage < len(stages) or 'run' not in stages[stage]:
        raise FormatError(f'stages[{stage}]: not a run block')
    total = stages[stage]['run']
    if not 0 < step_in_stage <= total:
        raise FormatError(f'stages[{stage}]: restart step {step_in_stage} outside the block (1..{total})')
    notes: list[str] = []
    dt_in_effect = next((s['time_step'] for s in reversed(stages[:stage + 1]) if 'time_step' in s), None)
    if step_in_stage == total:
        rest = [dict(s) for s in stages[stage + 1:]]
        if not any('run' in s for s in rest):
            return [], notes
    else:
        current = {k: v for k, v in stages[stage].items() if k not in ('velocity', 'minimize', 'time_step')}
        left = total - step_in_stage
        current['ensemble'] = _shorten_ensemble(current['ensemble'], step_in_stage, total)
        msd = current.get('compute_msd')
        if msd and msd['sample_interval'] * msd['Nc'] > left:
            fitted = left // msd['sample_interval']
            if fitted < 1:
                current.pop('compute_msd')
                notes.append(f'stages[{stage}]: compute_msd dropped: its sample interval exceeds the {left} steps left')
            else:
                current['compute_msd'] = {**msd, 'Nc': fitted}
                notes.append(f'stages[{stage}]: compute_msd Nc {msd["Nc"]} -> {fitted} to fit the {left} steps left')
        current.pop('run')
        current['run'] = left
        rest = [current] + [dict(s) for s in stages[stage + 1:]]
    if dt_in_effect is not None and 'time_step' not in rest[0]:
        rest[0] = {'time_step': dict(dt_in_effect), **rest[0]}
    return rest, notes


def _scaled(value, k: int, where: str, limit: int | None = None):
    scaled = value * k
    if limit is not None and scaled > limit:
        raise FormatError(f'{where}: {value} x {k} = {scaled} exceeds GPUMD\'s limit {limit}')
    return scaled


def scale_time_step(stages: list[dict], divisor: int = 2) -> list[dict]:
    """The protocol with the time step divided by ``divisor`` and the same physics in time units.

    Every block's time step becomes dt/divisor (a ``time_step`` is written into the first stage when the protocol
    relied on the 1 fs default); ``run``, thermostat/barostat couplings given in steps (``T_coup``, ``p_coup``,
    ``tperiod``, ``pperiod``) and every interval counted in steps (``dump_*``, ``compute_*`` sample/output
    intervals) are multiplied by ``divisor``, so simulated time, coupling times and output spacing stay the same.
    Counts that are not steps (``Nc``, ``num_bins``, ``compute_hac``'s output interval, ``compute``'s averaging
    window) are kept. ``raw`` lines are copied unchanged. A limit GPUMD enforces (compute_shc sample_interval <= 50)
    that the scaled value would break raises :class:`FormatError`.
    """
    if not isinstance(divisor, int) or divisor < 1:
        raise FormatError(f'divisor: expected a positive integer, got {divisor!r}')
    k = divisor
    out = []
    first_run = (run_stage_indices(stages) or [0])[0]
    needs_default = not any('time_step' in s for s in stages[:first_run + 1])
    for index, stage in enumerate(stages):
        where = f'stages[{index}]'
        new: dict = {}
        if index == 0 and needs_default:
            new['time_step'] = {'dt': DEFAULT_TIME_STEP_FS / k}
        for key, value in stage.items():
            if key == 'time_step':
                value = {**value, 'dt': value['dt'] / k}
            elif key == 'run':
                value = value * k
            elif key == 'ensemble':
                value = dict(value)
                for coupling in ('T_coup', 'p_coup', 'tperiod', 'pperiod'):
                    if coupling in value:
                        value[coupling] = value[coupling] * k
            elif key in _STEP_ARGUMENTS:
                names = _STEP_ARGUMENTS[key]
                entries = value if isinstance(value, list) else [value]
                scaled_entries = []
                for entry in entries:
                    if names is None:
                        scaled_entries.append(_scaled(entry, k, f'{where}: {key}'))
                        continue
                    entry = dict(entry)
                    for name in names:
                        if name in entry:
                            limit = 50 if (key, name) == ('compute_shc', 'sample_interval') else None
                            entry[name] = _scaled(entry[name], k, f'{where}: {key} {name}', limit)
                    scaled_entries.append(entry)
                value = scaled_entries if isinstance(value, list) else scaled_entries[0]
            new[key] = value
        out.append(new)
    return out


def target_temperatures(stages: list[dict]) -> list[float | None]:
    """The highest thermostat target (K) of each run block; blocks without a thermostat (nve, nph_mttk) inherit the
    previous target, or the ``velocity`` temperature; None where neither exists (or for setup-only stages)."""
    current = None
    out: list[float | None] = []
    for stage in stages:
        if 'velocity' in stage and current is None:
            current = float(stage['velocity']['temperature'])
        ensemble = stage.get('ensemble', {})
        if 'T1' in ensemble:
            current = max(float(ensemble['T1']), float(ensemble['T2']))
        elif 'T' in ensemble:
            current = float(ensemble['T']) + float(ensemble.get('delta_T', 0.0))
        elif 'temp' in ensemble:
            current = max(float(t) for t in ensemble['temp'])
        out.append(current if 'run' in stage else None)
    return out


def ensure_restart_dumps(stages: list[dict], *, min_restart_steps: int = 1000) -> tuple[list[dict], list[str]]:
    """Check that a protocol can be continued exactly after a stop, adding ``dump_restart`` where it is missing.

    Every run block needs ``dump_thermo`` (the rows tell how far a stopped job got) and a ``dump_restart`` interval
    that is a multiple of it (so the step a restart.xyz holds follows from the rows): otherwise
    :class:`FormatError` names the stage. A block without ``dump_restart`` gets the smallest multiple of its
    ``dump_thermo`` interval that is at least ``min_restart_steps``, capped at the block length (restart.xyz is
    rewritten at every dump, which costs I/O on large systems). Returns the stages and notes on what was added.
    """
    out, notes = [], []
    for index, stage in enumerate(stages):
        stage = dict(stage)
        if 'run' in stage:
            thermo = stage.get('dump_thermo')
            if not thermo:
                raise FormatError(f'stages[{index}]: dump_thermo: needed in every run block so that a stopped job\'s '
                                  'progress can be read from thermo.out')
            restart = stage.get('dump_restart')
            if restart and restart % thermo:
                raise FormatError(f'stages[{index}]: dump_restart: interval {restart} must be a multiple of '
                                  f'dump_thermo {thermo}, so that the step restart.xyz holds follows from thermo.out')
            if not restart:
                interval = -(-min_restart_steps // thermo) * thermo
                interval = max(thermo, min(interval, stage['run'] // thermo * thermo))
                run = stage.pop('run')
                stage['dump_restart'] = interval
                stage['run'] = run
                notes.append(f'stages[{index}]: dump_restart {interval} added')
        out.append(stage)
    return out, notes
