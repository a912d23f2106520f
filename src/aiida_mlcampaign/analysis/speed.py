"""MD speed per model, in atom-steps per second, from what each engine prints.

The paper-style comparison ("NEP 41x faster than MTP") needs one number per model measured the same way:
atom-steps/s = atoms × MD steps / wall time of the MD loop. Sources:

* GPUMD stdout: ``Speed of this run = <x> atom*step/second.`` and ``Time used for this run = <s> second.``
  after every ``run`` (:func:`aiida_mlcampaign.formats.gpumd.read_gpumd_stdout`);
* a LAMMPS log: ``Loop time of <s> on <P> procs for <N> steps with <A> atoms`` and the following
  ``Performance: ... <r> timesteps/s, <v> katom-step/s`` line (unit prefix k/M/G; older LAMMPS print no
  atom-step figure, then A·N/s is used) — :func:`read_lammps_log`;
* the ASE/motep exploration driver (``exploration.py``): its ``summary.json`` records for every walker the
  atom count, ``steps_run`` and ``wall_time`` (s, MD *and* extrapolation grading, which runs every
  ``grade_every`` steps): :func:`explore_speed`. That is the speed of exploration as run, not of bare MD.

Runs with zero steps or zero time (LAMMPS ``run 0``) are skipped. Several runs of one source combine as
total atom-steps / total time, so a long production run weighs more than a short equilibration.
No AiiDA import.
"""

from __future__ import annotations

import math
import re
import typing as t

import numpy as np

from aiida_mlcampaign.formats.gpumd import read_gpumd_stdout

from .figures import new_figure, to_png

__all__ = [
    'compare_speeds',
    'explore_speed',
    'gpumd_speed',
    'lammps_speed',
    'read_lammps_log',
    'speed_from_record',
    'speed_figure',
]

_FLOAT = r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)'
_LOOP = re.compile(
    rf'^\s*Loop time of\s+({_FLOAT})\s+on\s+(\d+)\s+procs?\s+for\s+(\d+)\s+steps\s+with\s+(\d+)\s+atoms', re.MULTILINE
)
_PERFORMANCE = re.compile(r'^\s*Performance:(.*)$', re.MULTILINE)
_TIMESTEPS = re.compile(rf'({_FLOAT})\s+timesteps/s')
_ATOM_STEPS = re.compile(rf'({_FLOAT})\s+([kMG]?)atom-step/s')
_PREFIX = {'': 1.0, 'k': 1.0e3, 'M': 1.0e6, 'G': 1.0e9}


def read_lammps_log(text: str) -> dict:
    """Every MD loop of a LAMMPS log (``log.lammps`` or screen output).

    Returns ``runs``: one dict per ``Loop time`` line in order — ``loop_time_s``, ``procs``, ``steps``,
    ``atoms``, ``timesteps_per_s`` and ``atom_steps_per_s`` (from the next ``Performance:`` line when it
    has them; else steps / loop time and atoms · steps / loop time; None for a zero loop time) — and
    ``version`` (the ``LAMMPS (<date>)`` banner, or None).
    """
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    runs = []
    loops = list(_LOOP.finditer(text))
    for index, match in enumerate(loops):
        loop_time = float(match.group(1))
        run = {
            'loop_time_s': loop_time, 'procs': int(match.group(2)), 'steps': int(match.group(3)),
            'atoms': int(match.group(4)), 'timesteps_per_s': None, 'atom_steps_per_s': None,
        }
        end = loops[index + 1].start() if index + 1 < len(loops) else len(text)
        performance = _PERFORMANCE.search(text, match.end(), end)
        if performance is not None:
            line = performance.group(1)
            if (m := _TIMESTEPS.search(line)) is not None:
                run['timesteps_per_s'] = float(m.group(1))
            if (m := _ATOM_STEPS.search(line)) is not None:
                run['atom_steps_per_s'] = float(m.group(1)) * _PREFIX[m.group(2)]
        if loop_time > 0:
            if run['timesteps_per_s'] is None:
                run['timesteps_per_s'] = run['steps'] / loop_time
            if run['atom_steps_per_s'] is None:
                run['atom_steps_per_s'] = run['atoms'] * run['steps'] / loop_time
        runs.append(run)
    version = re.search(r'^LAMMPS \(([^)]*)\)', text, re.MULTILINE)
    return {'runs': runs, 'version': version.group(1) if version else None}


def _select(runs: list, run: int | None, what: str) -> list:
    if run is None:
        return runs
    try:
        return [runs[run]]
    except (IndexError, TypeError):
        raise ValueError(f'run: {what} has {len(runs)} run(s), cannot pick {run!r}') from None


def _combine(pairs: list[tuple[float | None, float | None]], what: str) -> dict:
    """(speed, time) per run -> one speed: Σ speed·time / Σ time, or the plain mean without times."""
    usable = [(s, w) for s, w in pairs if s is not None and math.isfinite(s) and s > 0]
    if not usable:
        raise ValueError(f'{what}: no run with a positive, finite speed')
    if all(w is not None and math.isfinite(w) and w > 0 for _, w in usable):
        total_time = sum(w for _, w in usable)
        return {'atom_steps_per_s': sum(s * w for s, w in usable) / total_time, 'time_s': total_time,
                'runs_used': len(usable), 'weighting': 'time'}
    return {'atom_steps_per_s': float(np.mean([s for s, _ in usable])), 'time_s': None,
            'runs_used': len(usable), 'weighting': 'mean'}


def lammps_speed(text: str, run: int | None = None) -> dict:
    """Atom-steps/s of a LAMMPS log: all MD loops combined, or loop ``run`` (0-based, -1 = last)."""
    parsed = read_lammps_log(text)
    runs = [r for r in parsed['runs'] if r['steps'] > 0 and r['loop_time_s'] > 0]
    if not runs:
        raise ValueError('LAMMPS log: no "Loop time of ... for N steps with A atoms" line with N > 0 and time > 0')
    chosen = _select(runs, run, 'the LAMMPS log')
    result = _combine([(r['atom_steps_per_s'], r['loop_time_s']) for r in chosen], 'LAMMPS log')
    result.update(source='lammps', runs=chosen, version=parsed['version'],
                  atoms=sorted({r['atoms'] for r in chosen}), procs=sorted({r['procs'] for r in chosen}))
    return result


def gpumd_speed(text: str, run: int | None = None) -> dict:
    """Atom-steps/s of a GPUMD stdout: all ``run`` commands combined, or run ``run`` (0-based, -1 = last)."""
    parsed = read_gpumd_stdout(text)
    runs = [r for r in parsed['runs'] if r['speed_atom_step_per_s'] is not None]
    if not runs:
        raise ValueError('GPUMD stdout: no "Speed of this run = ... atom*step/second" line')
    chosen = _select(runs, run, 'the GPUMD stdout')
    result = _combine([(r['speed_atom_step_per_s'], r['time_s']) for r in chosen], 'GPUMD stdout')
    result.update(source='gpumd', runs=chosen, version=parsed['version'])
    return result


def explore_speed(summary: dict) -> dict:
    """Atom-steps/s of an exploration ``summary.json`` (``MtpExploreCalculation.outputs.statistics``).

    Σ natoms·steps_run / Σ wall_time over the walkers; the walker time includes the extrapolation
    grading (every ``grade_every`` steps) and the ASE integrator, so it is the exploration throughput.
    """
    walkers = summary.get('walkers')
    if not isinstance(walkers, list) or not walkers:
        raise ValueError('exploration summary: no "walkers" list')
    atom_steps = wall = 0.0
    for index, walker in enumerate(walkers):
        try:
            atom_steps += float(walker['natoms']) * float(walker['steps_run'])
            wall += float(walker['wall_time'])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f'exploration summary: walker {index} lacks natoms/steps_run/wall_time') from None
    if not (atom_steps > 0 and wall > 0):
        raise ValueError('exploration summary: no MD step or no recorded wall time')
    settings = summary.get('settings') or {}
    return {
        'atom_steps_per_s': atom_steps / wall, 'time_s': wall, 'runs_used': len(walkers), 'weighting': 'time',
        'source': 'ase-explore', 'grade_every': settings.get('grade_every'), 'engine': settings.get('engine'),
    }


def speed_from_record(record: dict, run: int | None = None) -> dict:
    """One speed from any of the records a campaign produces (the first matching rule wins):

    * ``atom_steps_per_s`` given directly (a measurement made elsewhere);
    * ``walkers`` (+ ``totals``): an exploration ``summary.json``;
    * ``gpumd_stdout`` / ``lammps_log``: the raw text;
    * ``runs`` with ``speed_atom_step_per_s``: what :func:`read_gpumd_stdout` returns (e.g. a parser's Dict);
    * ``runs`` with ``loop_time_s``/``steps``/``atoms``: what :func:`read_lammps_log` returns.

    Other keys (``label``, ``hardware``, ``atoms``, ``note``) are carried into the result.
    """
    if not isinstance(record, dict):
        raise ValueError(f'expected a dict, got {type(record).__name__}')
    extra = {key: record[key] for key in ('label', 'hardware', 'note') if key in record}
    if record.get('atom_steps_per_s') is not None:
        value = float(record['atom_steps_per_s'])
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f'atom_steps_per_s: must be positive, got {record["atom_steps_per_s"]!r}')
        result = {'atom_steps_per_s': value, 'time_s': record.get('time_s'), 'runs_used': 1,
                  'weighting': 'given', 'source': record.get('source', 'given')}
    elif 'walkers' in record:
        result = explore_speed(record)
    elif 'gpumd_stdout' in record:
        result = gpumd_speed(record['gpumd_stdout'], run)
    elif 'lammps_log' in record:
        result = lammps_speed(record['lammps_log'], run)
    elif isinstance(record.get('runs'), list) and record['runs'] and 'speed_atom_step_per_s' in record['runs'][0]:
        chosen = _select([r for r in record['runs'] if r.get('speed_atom_step_per_s') is not None], run,
                         'the GPUMD record')
        result = _combine([(r['speed_atom_step_per_s'], r.get('time_s')) for r in chosen], 'GPUMD record')
        result['source'] = 'gpumd'
    elif isinstance(record.get('runs'), list) and record['runs'] and 'loop_time_s' in record['runs'][0]:
        chosen = _select([r for r in record['runs'] if r['steps'] > 0 and r['loop_time_s'] > 0], run,
                         'the LAMMPS record')
        result = _combine([(r['atom_steps_per_s'], r['loop_time_s']) for r in chosen], 'LAMMPS record')
        result['source'] = 'lammps'
    else:
        raise ValueError(
            'no speed found: expected atom_steps_per_s, an exploration summary (walkers), gpumd_stdout, '
            f'lammps_log or a parsed runs list; keys present: {sorted(record)}'
        )
    result.update(extra)
    return result


def compare_speeds(speeds: t.Mapping[str, float]) -> dict:
    """Table of atom-steps/s per model with the ratio to the slowest, fastest first.

    Returns ``models`` (names, fastest first), ``atom_steps_per_s`` {model: value}, ``ratio_to_slowest``
    {model: value ≥ 1}, ``slowest``, ``fastest`` and ``statements`` ("NEP 41.0x faster than MTP" for every
    model against the slowest).
    """
    if not speeds:
        raise ValueError('runs: give at least one model')
    values = {}
    for model, value in speeds.items():
        value = float(value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f'{model}: speed must be positive and finite, got {value!r}')
        values[model] = value
    order = sorted(values, key=lambda m: -values[m])
    slowest = order[-1]
    ratios = {m: values[m] / values[slowest] for m in order}
    statements = [f'{m} {ratios[m]:.1f}x faster than {slowest}' for m in order[:-1]]
    return {
        'models': order, 'atom_steps_per_s': {m: values[m] for m in order}, 'ratio_to_slowest': ratios,
        'slowest': slowest, 'fastest': order[0], 'statements': statements,
    }


def speed_figure(table: dict, labels: t.Mapping[str, str] | None = None, title: str = '') -> bytes:
    """Bar chart of atom-steps/s (log scale) with the ratio to the slowest on each bar."""
    models = table['models']
    figure, axes = new_figure(width=max(3.5, 1.1 * len(models) + 2.0), height=3.6)
    values = [table['atom_steps_per_s'][m] for m in models]
    names = [m if not labels or not labels.get(m) else f'{m}\n{labels[m]}' for m in models]
    colours = [f'C{i % 10}' for i in range(len(models))]
    bars = axes.bar(range(len(models)), values, color=colours)
    axes.set_yscale('log')
    axes.set_xticks(range(len(models)), names, fontsize=8)
    axes.set_ylabel('speed (atom-steps s⁻¹)')
    for bar, model in zip(bars, models):
        axes.annotate(f"{table['ratio_to_slowest'][model]:.3g}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha='center', va='bottom', fontsize=8)
    axes.set_ylim(min(values) / 3.0, max(values) * 5.0)
    axes.set_title(title or f'MD speed (ratio to {table["slowest"]})')
    return to_png(figure)
