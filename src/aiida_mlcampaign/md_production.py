"""Production MD of one MTP or one NEP on the CPU, written in GPUMD's file formats.

The driver behind ``MdCpuCalculation`` (console script ``mlcampaign-md``) and a pure function for tests: no AiiDA
is imported, only numpy, ASE, motep or calorine and this package's readers and writers, so it runs on any computer
where the package is installed.

Why GPUMD's formats: the campaign runs the same analyses (RDF, MSD, VDOS, speed) on every potential family; when a
CPU run of an MTP or a NEP writes ``thermo.out``, ``dump.xyz`` and ``restart.xyz`` exactly as ``gpumd`` does, the
readers of :mod:`aiida_mlcampaign.formats.gpumd` and every analysis calcfunction take its outputs unchanged, and
a comparison MTP / NEP-on-CPU / NEP-on-GPU differs only in the potential and the hardware.

What a run does:

1. the start (a ``model.xyz`` or any one-frame extended XYZ) or, to continue, a ``restart.xyz`` written by this
   driver (its comment line holds ``step=`` (steps already done) and ``Time=`` (fs), and its atom lines the
   velocities and unwrapped positions at full precision);
2. new runs: Maxwell-Boltzmann velocities at ``temperature`` from ``numpy.random.default_rng(seed)``, centre of
   mass at rest; the same generator then drives the Langevin noise, so a run is reproducible from its seed. A
   continuation keeps the velocities of the restart and draws its noise from ``default_rng([seed, step])``, so
   two segments never replay the same noise;
3. ``nvt``: ASE's Langevin (``friction``, centre of mass fixed with ``FixCom``), exactly the thermostat of the
   exploration walkers (:func:`aiida_mlcampaign.exploration._dynamics`); ``nve``: velocity Verlet;
4. every ``thermo_every`` steps a ``thermo.out`` row, every ``dump_every`` steps a ``dump.xyz`` frame, every
   ``restart_every`` steps and at the end ``restart.xyz``. The three schedules count steps from the very first
   segment (global multiples), so the frames of consecutive segments stay evenly spaced in time and an MSD can
   run over their concatenation. Rows and frames are written and flushed one at a time (a killed job keeps what
   it wrote; a trajectory is never held in memory); ``restart.xyz`` is replaced atomically;
5. a non-finite energy or force, or a thermo row hotter than ``blowup_factor`` times the target, stops the run
   (``stop_reason`` ``'blowup'``; the last good ``restart.xyz`` is kept). SIGTERM (a scheduler's walltime) stops
   it after the current step with a ``restart.xyz`` of that step (``stop_reason`` ``'terminated'``).

Outputs in ``out_dir``:

* ``thermo.out``: GPUMD's 18-column layout (v4.0 onwards) with the v5.6 header (``# dump_thermo``,
  ``# format_version``, ``# num_atoms``, ``# columns``; no ``# dt_output``, as the first row of a continuation is
  not one interval after its start): ``T`` (K), ``K``, ``U`` (eV), ``Pxx Pyy Pzz Pyz Pxz Pxy`` (GPa, kinetic part
  included, positive = compressed), cell rows ``ax ay az bx by bz cx cy cz`` (Å);
* ``dump.xyz``: GPUMD ``dump_exyz``-style frames: comment ``Time=`` (fs, from the first segment's start),
  ``step=``, ``energy=`` (eV), ``pbc``, ``Lattice``; columns ``species pos vel unwrapped_position`` (Å, Å/fs, Å);
* ``restart.xyz``: one such frame with ``mass`` and full precision, readable by
  :func:`aiida_mlcampaign.formats.gpumd_xyz.read_restart_xyz`;
* ``summary.json``: see :func:`run_md`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import platform
import signal
import sys
import time
import traceback
import warnings

import numpy as np

from .exploration import (
    ENGINES,
    GPA_PER_EV_A3,
    _dynamics,
    _finite_energy_and_forces,
    _integer,
    _is_int,
    _MinDistCounter,
    _number,
    _thermalise,
)
from .formats.gpumd_model import ASE_VELOCITY_TO_A_PER_FS
from .formats.textio import open_for_write

__all__ = [
    'DUMP_FILENAME',
    'ENSEMBLES',
    'FAMILIES',
    'MD_DEFAULTS',
    'REQUIRED_KEYS',
    'RESTART_FILENAME',
    'SUMMARY_FILENAME',
    'THERMO_FILENAME',
    'blowup_in_thermo',
    'check_md_settings',
    'hardware',
    'main',
    'read_md_thermo',
    'restart_point',
    'run_md',
    'thermo_steps',
]

THERMO_FILENAME = 'thermo.out'
DUMP_FILENAME = 'dump.xyz'
RESTART_FILENAME = 'restart.xyz'
SUMMARY_FILENAME = 'summary.json'
DONE_MARKER = 'mlcampaign-md: done'
ERROR_MARKER = 'mlcampaign-md: ERROR'

FAMILIES = ('mtp', 'nep')
ENSEMBLES = ('nvt', 'nve')
REQUIRED_KEYS = ('temperature', 'steps', 'time_step')

#: Optional keys and their defaults. ``restart_every`` None: restart.xyz only at the end; ``blowup_factor`` None:
#: only non-finite energies stop the run; ``engine`` (motep's) with family mtp only.
MD_DEFAULTS = {
    'ensemble': 'nvt',
    'seed': 0,
    'thermo_every': 100,
    'dump_every': 100,
    'restart_every': 1000,
    'blowup_factor': 5.0,
    'engine': 'cext',
}
#: Keys of one ensemble only (refused with the other) and their defaults.
ENSEMBLE_DEFAULTS = {'nvt': {'friction': 0.02}, 'nve': {}}  # fs^-1
_ALL_KEYS = set(REQUIRED_KEYS) | set(MD_DEFAULTS) | {k for d in ENSEMBLE_DEFAULTS.values() for k in d}

THERMO_COLUMNS = 'T KE PE sxx syy szz syz sxz sxy ax ay az bx by bz cx cy cz'


# ----------------------------------------------------------------------------------- settings


def check_md_settings(settings: dict, family: str = 'mtp') -> dict:
    """Validate production-MD settings and return them completed with the defaults.

    Raises ``ValueError`` whose message starts with the offending key (``time_step: must be > 0 ...``), so a
    CalcJob can name ``parameters.<key>``. The result is plain JSON and passes this check again unchanged.

    Required: ``temperature`` (K, > 0: the thermostat's target, or the initial temperature with nve),
    ``steps`` (total steps, counted from the first segment of a restarted run, >= 1), ``time_step`` (fs, > 0).
    Optional (default): ``ensemble`` ('nvt' Langevin with a fixed centre of mass, or 'nve'), ``friction``
    (0.02 fs^-1, > 0; nvt only), ``seed`` (0, integer >= 0), ``thermo_every`` (100) and ``dump_every`` (100),
    each an integer >= 1 and <= steps, ``restart_every`` (1000, >= 1, or None: only at the end),
    ``blowup_factor`` (5.0, > 1, or None), ``engine`` (motep's engine, 'cext'; family mtp only).
    """
    if not isinstance(settings, dict):
        raise ValueError(f'settings: expected a dictionary, got {type(settings).__name__}')
    if family not in FAMILIES:
        raise ValueError(f'family: must be one of {list(FAMILIES)}, got {family!r}')
    unknown = sorted(set(settings) - _ALL_KEYS)
    if unknown:
        raise ValueError(f'{unknown[0]}: unknown key (unknown: {unknown}; known: {sorted(_ALL_KEYS)})')
    missing = [key for key in REQUIRED_KEYS if key not in settings]
    if missing:
        raise ValueError(f'{missing[0]}: required (missing: {missing})')
    if family != 'mtp' and 'engine' in settings:
        raise ValueError(f"engine: only used with family 'mtp' (motep's engine), not {family!r}")
    ensemble = settings.get('ensemble', MD_DEFAULTS['ensemble'])
    if ensemble not in ENSEMBLES:
        raise ValueError(f'ensemble: must be one of {list(ENSEMBLES)}, got {ensemble!r}')
    for other, keys in ENSEMBLE_DEFAULTS.items():
        wrong = sorted(set(keys) & set(settings)) if other != ensemble else []
        if wrong:
            raise ValueError(f'{wrong[0]}: only used with ensemble {other!r}, not {ensemble!r}')
    merged = {**MD_DEFAULTS, **ENSEMBLE_DEFAULTS[ensemble], **settings}

    result = {
        'ensemble': ensemble,
        'temperature': _number(merged, 'temperature', above=0),
        'steps': _integer(merged, 'steps', 1),
        'time_step': _number(merged, 'time_step', above=0),
    }
    if not _is_int(merged['seed']) or merged['seed'] < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {merged['seed']!r}")
    result['seed'] = int(merged['seed'])
    for key in ('thermo_every', 'dump_every'):
        result[key] = _integer(merged, key, 1)
        if result[key] > result['steps']:
            raise ValueError(f"{key}: must be <= steps ({result['steps']}), got {result[key]}")
    result['restart_every'] = None if merged['restart_every'] is None else _integer(merged, 'restart_every', 1)
    result['blowup_factor'] = (None if merged['blowup_factor'] is None
                               else _number(merged, 'blowup_factor', above=1))
    if ensemble == 'nvt':
        result['friction'] = _number(merged, 'friction', above=0)
    if family == 'mtp':
        if merged['engine'] not in ENGINES:
            raise ValueError(f"engine: must be one of {list(ENGINES)}, got {merged['engine']!r}")
        result['engine'] = merged['engine']
    return result


# ----------------------------------------------------------------------------------- files


def restart_point(path) -> dict:
    """``step`` (steps done) and ``time_fs`` of a restart.xyz written by this driver, with its frame (``frame``).

    A GPUMD restart.xyz has no ``step=`` and is refused (``ValueError`` naming ``restart``): without it the
    schedules and the step count of a continuation are unknown.
    """
    from .formats.frames import FormatError
    from .formats.gpumd_xyz import read_restart_xyz

    try:
        frame = read_restart_xyz(path)
    except FormatError as exception:
        raise ValueError(f'restart: not a readable restart.xyz: {exception}') from None
    step = frame['info'].get('step')
    if step is None or not step.strip().isdigit():
        raise ValueError(f'restart: the comment line has no step= (steps already done), got {step!r}; only a '
                         'restart.xyz of mlcampaign-md can be continued')
    if frame['velocities'] is None:
        raise ValueError('restart: no vel:R:3 column (velocities are needed to continue)')
    return {'step': int(step), 'time_fs': float(frame.get('time', 0.0)), 'frame': frame}


def _frame_text(symbols, cell, pbc, columns: list[tuple[str, np.ndarray]], info: dict, fmt: str) -> str:
    """One extended-XYZ frame: ``info`` first on the comment line, then pbc, Lattice and Properties."""
    lattice = ' '.join(fmt % v for v in np.asarray(cell, dtype=float).reshape(9))
    flags = ' '.join('T' if p else 'F' for p in pbc)
    properties = ['species:S:1'] + [f'{name}:R:{values.shape[1]}' for name, values in columns]
    head = ' '.join(f'{key}={value}' for key, value in info.items())
    table = np.hstack([values for _, values in columns])
    row = ' '.join([fmt] * table.shape[1])
    lines = [str(len(symbols)), f'{head} pbc="{flags}" Lattice="{lattice}" Properties={":".join(properties)}']
    lines.extend(f'{symbol} {row % tuple(values)}' for symbol, values in zip(symbols, table))
    return '\n'.join(lines) + '\n'


class _State:
    """Where the run is: the atoms (ASE keeps their positions unwrapped) and the global step and time (fs), with the
    columns and comment keys that every frame written (dump or restart) shares."""

    def __init__(self, atoms, step: int, time_fs: float):
        self.atoms, self.step, self.time_fs = atoms, step, time_fs

    def columns(self, masses: bool = False) -> list[tuple[str, np.ndarray]]:
        atoms = self.atoms
        unwrapped = atoms.get_positions()
        wrapped = atoms.get_positions(wrap=True)
        velocities = atoms.get_velocities() * ASE_VELOCITY_TO_A_PER_FS
        columns = [('pos', wrapped)]
        if masses:
            columns.append(('mass', atoms.get_masses()[:, None]))
        return columns + [('vel', velocities), ('unwrapped_position', unwrapped)]

    def info(self, energy: float | None = None) -> dict:
        info = {'Time': repr(float(self.time_fs)), 'step': str(self.step)}
        if energy is not None:
            info['energy'] = repr(float(energy))
        return info


def _write_restart(path: pathlib.Path, state: _State) -> None:
    """``restart.xyz`` at full precision, through a temporary file: a kill while writing keeps the previous one."""
    atoms = state.atoms
    text = _frame_text(atoms.get_chemical_symbols(), atoms.cell, atoms.pbc, state.columns(masses=True),
                       state.info(), '%.17g')
    with open_for_write(path) as handle:
        handle.write(text)


class _Writer:
    """Appends thermo rows and dump frames and flushes each one (what a killed job wrote stays readable)."""

    def __init__(self, out_dir: pathlib.Path, natoms: int, thermo_every: int):
        self.thermo = open(out_dir / THERMO_FILENAME, 'w', encoding='utf-8', newline='\n')
        self.thermo.write(f'# dump_thermo {thermo_every}\n# format_version 1\n# num_atoms {natoms}\n'
                          f'# columns {THERMO_COLUMNS}\n')
        self.thermo.flush()
        self.dump = open(out_dir / DUMP_FILENAME, 'w', encoding='utf-8', newline='\n')
        self.rows = self.frames = 0

    def row(self, atoms) -> tuple[float, float]:
        """Write the thermo row of the current step; return (temperature K, potential energy eV)."""
        with np.errstate(all='ignore'):
            temperature = atoms.get_temperature()
            kinetic = atoms.get_kinetic_energy()
            potential = atoms.get_potential_energy()
            pressure = -atoms.get_stress(voigt=True, include_ideal_gas=True) * GPA_PER_EV_A3
        values = [temperature, kinetic, potential, *pressure, *np.asarray(atoms.cell).reshape(9)]
        self.thermo.write(''.join(f'{v:20.10e}' for v in values) + '\n')
        self.thermo.flush()
        self.rows += 1
        return float(temperature), float(potential)

    def frame(self, state: _State) -> None:
        atoms = state.atoms
        self.dump.write(_frame_text(atoms.get_chemical_symbols(), atoms.cell, atoms.pbc, state.columns(),
                                    state.info(atoms.get_potential_energy()), '%.10g'))
        self.dump.flush()
        self.frames += 1

    def close(self) -> None:
        self.thermo.close()
        self.dump.close()


# ----------------------------------------------------------------------------------- thermo


def thermo_steps(start_step: int, thermo_every: int, num_rows: int) -> np.ndarray:
    """Steps (from the start of this segment) of the first ``num_rows`` rows: rows sit at global multiples of
    ``thermo_every``, the segment starts after ``start_step`` steps."""
    first = (start_step // thermo_every + 1) * thermo_every
    return first - start_step + thermo_every * np.arange(num_rows, dtype=int)


def read_md_thermo(source, start_step: int, settings: dict, finished: bool = True) -> tuple[dict, str | None]:
    """The arrays of this driver's ``thermo.out`` as :func:`aiida_mlcampaign.formats.gpumd.read_thermo` gives them,
    plus GpumdCalculation's row arrays ``stage`` (0), ``step_in_stage`` = ``step`` (from the start of this segment)
    and ``time_fs`` (likewise), and a note when the last line of an unfinished run was cut short and dropped.

    ``source`` is a path or an open text handle. ``FormatError`` when it cannot be read.
    """
    import io

    from .formats.frames import FormatError
    from .formats.gpumd import read_thermo
    from .formats.textio import open_for_read

    with open_for_read(source) as handle:
        text = handle.read()
    attempts = [text] if finished else [text, '\n'.join(text.splitlines()[:-1]) + '\n']
    error = None
    for attempt in attempts:
        try:
            result = read_thermo(io.StringIO(attempt))
        except FormatError as exception:
            error = error or exception
            continue
        steps = thermo_steps(start_step, settings['thermo_every'], len(result['temperature_K']))
        result.update(stage=np.zeros(len(steps), dtype=int), step_in_stage=steps.copy(), step=steps,
                      time_fs=steps * float(settings['time_step']))
        return result, (None if attempt is text else f'thermo.out: last line incomplete, dropped ({error})')
    raise error


def blowup_in_thermo(thermo: dict, target: float, factor: float | None) -> str | None:
    """Why ``thermo`` (arrays of :func:`read_md_thermo`) shows a blow-up: a non-finite value in a row, or a
    temperature above ``factor`` x ``target``; None when it does not (GpumdCalculation's rule)."""
    for key in ('temperature_K', 'kinetic_energy_eV', 'potential_energy_eV', 'pressure_GPa', 'cell_A'):
        values = np.asarray(thermo[key]).reshape(len(thermo[key]), -1)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            return f'{key} is not finite in thermo.out row {int(bad[0]) + 1} (step {int(thermo["step"][bad[0]])})'
    if factor:
        hot = np.flatnonzero(np.asarray(thermo['temperature_K']) > factor * target)
        if hot.size:
            row = int(hot[0])
            return (f'T = {thermo["temperature_K"][row]:.4g} K in thermo.out row {row + 1} (step '
                    f'{int(thermo["step"][row])}) exceeds {factor:g} x the target {target:g} K')
    return None


# ----------------------------------------------------------------------------------- hardware


def hardware() -> dict:
    """The CPU this runs on: ``model`` (/proc/cpuinfo, else platform), ``logical_cpus``, ``threads`` (OMP_NUM_THREADS
    when set, else the CPUs this process may use), ``platform``, and ``label`` (for speed tables)."""
    model = None
    with contextlib.suppress(OSError):
        for line in pathlib.Path('/proc/cpuinfo').read_text(errors='replace').splitlines():
            key, _, value = line.partition(':')
            if key.strip() in ('model name', 'Model', 'Hardware', 'cpu model') and value.strip():
                model = value.strip()
                break
    model = model or platform.processor() or platform.machine() or 'unknown CPU'
    available = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    omp = os.environ.get('OMP_NUM_THREADS', '').strip()
    threads = int(omp) if omp.isdigit() and int(omp) > 0 else available
    return {'model': model, 'logical_cpus': os.cpu_count(), 'threads_available': available, 'threads': threads,
            'platform': platform.platform(), 'label': f'{model}, {threads} thread{"s" if threads != 1 else ""}'}


# ----------------------------------------------------------------------------------- the run


def _calculator(family: str, potential_path, species, settings: dict):
    """The family's calculator, built as the exploration builds it (motep's fast engine; calorine's CPUNEP), and the
    species in type order."""
    if family == 'mtp':
        from motep.calculator import MTP

        from .mtp import engine

        if species is None:
            raise ValueError('species: family mtp needs the element symbols of the .mtp types in order')
        species = [str(s) for s in species]
        mtp = engine.read_potential(potential_path, species)
        engine._require_trained(mtp)
        return MTP(mtp, engine=settings['engine'], mode='run'), species
    from .nep.cpu import model_species, nep_calculator

    calculator = nep_calculator(potential_path)
    model = model_species(potential_path)
    if species is not None and [str(s) for s in species] != model:
        raise ValueError(f"species: {list(species)} differ from the model's species {model}")
    return calculator, model


def _initial_atoms(start_path, restart: dict | None, species: list[str]):
    """Atoms from the start or the restart (positions unwrapped, masses of the file when it has them)."""
    from ase import Atoms

    from .formats.gpumd_xyz import read_restart_xyz

    frame = restart['frame'] if restart else read_restart_xyz(start_path)
    where = 'restart' if restart else 'start'
    positions = frame['arrays'].get('unwrapped_position', frame['positions'])
    atoms = Atoms(symbols=frame['species'], positions=positions, cell=frame['cell'], pbc=frame['pbc'])
    if not all(atoms.pbc) or atoms.cell.rank != 3:
        raise ValueError(f'{where}: the cell must be periodic in 3 directions (pressures need a volume; nep_cpu '
                         'treats every cell as periodic)')
    extra = sorted(set(atoms.get_chemical_symbols()) - set(species))
    if extra:
        raise ValueError(f"{where}: elements {extra} are not in the potential's species {species}")
    if frame['masses'] is not None:
        atoms.set_masses(frame['masses'])
    if restart:
        atoms.set_velocities(frame['velocities'] / ASE_VELOCITY_TO_A_PER_FS)
        if start_path is not None:
            start = read_restart_xyz(start_path)
            if list(start['species']) != atoms.get_chemical_symbols():
                raise ValueError('restart: its atoms (count, elements, order) differ from the start structure')
    return atoms


def run_md(settings: dict, potential_path, family: str, species, start_path, out_dir, restart_path=None, *,
           log=None, should_stop=None) -> dict:
    """Run (or continue) one production MD and write ``thermo.out``, ``dump.xyz``, ``restart.xyz`` and
    ``summary.json`` into ``out_dir``.

    :param settings: see :func:`check_md_settings` (completed with the defaults here).
    :param potential_path: the trained ``.mtp`` (mlip-2 layout) or the ``nep.txt``.
    :param family: ``'mtp'`` or ``'nep'``.
    :param species: mtp: the element symbols of the ``.mtp`` types in order (required); nep: None (the model's) or
        the model's species, checked.
    :param start_path: the starting structure (``model.xyz`` or one extended-XYZ frame, 3D periodic); may be None
        when continuing (else it must hold the restart's atoms in the same order).
    :param restart_path: a ``restart.xyz`` of this driver to continue from, to ``steps`` in total.
    :param log: text stream for progress lines (None: silent).
    :param should_stop: callable checked after every step; True stops the run with a restart.xyz (SIGTERM).
    :returns: the summary written to ``summary.json``: ``family``, ``species``, ``natoms``, ``settings``,
        ``finished`` (all ``steps`` done), ``stop_reason`` (completed, blowup, terminated), ``stop_detail``,
        ``step_start`` and ``time_start_fs`` (where this segment began), ``steps_done`` (global, at the end),
        ``steps_run`` (this segment), ``time_fs``, ``thermo_rows``, ``dump_frames``, ``restart_step`` (global
        step of the last restart.xyz), ``final_temperature_K``, ``final_potential_energy_eV``, ``wall_time`` (s,
        the whole call), ``md_seconds`` (the MD loop with its output), ``atom_steps_per_second`` (and the alias
        ``atom_steps_per_s`` that :func:`aiida_mlcampaign.analysis.speed.speed_from_record` reads), ``ns_per_day``,
        ``hardware`` (CPU label), ``cpu`` (:func:`hardware`) and, for mtp, ``below_min_dist_evaluations``.
    """
    started = time.perf_counter()
    if family not in FAMILIES:
        raise ValueError(f'family: must be one of {list(FAMILIES)}, got {family!r}')
    settings = check_md_settings(settings, family)
    out_dir = pathlib.Path(out_dir)

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    restart = restart_point(restart_path) if restart_path is not None else None
    if restart is None and start_path is None:
        raise ValueError('start: a starting structure is needed (or a restart to continue from)')
    if restart is not None and restart['step'] >= settings['steps']:
        raise ValueError(f"steps: the restart is at step {restart['step']}, nothing is left of steps = "
                         f"{settings['steps']}; raise steps to continue")
    calculator, species = _calculator(family, potential_path, species, settings)
    atoms = _initial_atoms(start_path, restart, species)
    atoms.calc = calculator
    state = _State(atoms, restart['step'] if restart else 0, restart['time_fs'] if restart else 0.0)
    step_start, time_start = state.step, state.time_fs
    natoms = len(atoms)
    target, dt = settings['temperature'], settings['time_step']

    problem = _finite_energy_and_forces(atoms)
    if problem:
        raise ValueError(f"{'restart' if restart else 'start'}: {problem}")
    if restart:
        rng = np.random.default_rng([settings['seed'], state.step])
    else:
        rng = np.random.default_rng(settings['seed'])
        _thermalise(atoms, target, rng)
    if settings['ensemble'] == 'nvt':
        dynamics = _dynamics(atoms, target, settings, rng)
    else:
        from ase import units
        from ase.md.verlet import VelocityVerlet

        dynamics = VelocityVerlet(atoms, dt * units.fs)
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f'mlcampaign-md: family {family}, {natoms} atoms, {settings["ensemble"]} at {target:g} K, steps '
        f'{state.step + 1}..{settings["steps"]} (dt {dt:g} fs), seed {settings["seed"]}'
        + (f', continuing from {restart_path}' if restart else ''))

    writer = _Writer(out_dir, natoms, settings['thermo_every'])
    counter = _MinDistCounter()
    motep_logger = logging.getLogger(_MinDistCounter.LOGGER)
    motep_logger.addFilter(counter)
    stop_reason, detail = 'completed', ''
    restart_step = restart['step'] if restart else None
    last = (None, None)
    loop_start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            while state.step < settings['steps']:
                try:
                    with np.errstate(all='ignore'):
                        dynamics.step()
                    dynamics.nsteps += 1
                except (ArithmeticError, ValueError) as exception:
                    stop_reason = 'blowup'
                    detail = f'step {state.step + 1} failed: {type(exception).__name__}: {exception}'
                    break
                state.step += 1
                state.time_fs = time_start + (state.step - step_start) * dt
                problem = _finite_energy_and_forces(atoms)  # the step's own results: no extra evaluation
                if problem:
                    stop_reason, detail = 'blowup', f'step {state.step}: {problem}'
                    break
                if state.step % settings['thermo_every'] == 0:
                    last = writer.row(atoms)
                    factor = settings['blowup_factor']
                    if factor and not last[0] <= factor * target:
                        stop_reason = 'blowup'
                        detail = f'step {state.step}: T = {last[0]:.4g} K exceeds {factor:g} x the target {target:g} K'
                        break
                if state.step % settings['dump_every'] == 0:
                    writer.frame(state)
                every = settings['restart_every']
                if (every and state.step % every == 0) or state.step == settings['steps']:
                    _write_restart(out_dir / RESTART_FILENAME, state)
                    restart_step = state.step
                    say(f'step {state.step}: restart.xyz written ({time.perf_counter() - loop_start:.1f} s)')
                if should_stop is not None and state.step < settings['steps'] and should_stop():
                    if restart_step != state.step:
                        _write_restart(out_dir / RESTART_FILENAME, state)
                        restart_step = state.step
                    stop_reason, detail = 'terminated', f'stopped by a signal after step {state.step}'
                    break
    finally:
        writer.close()
        motep_logger.removeFilter(counter)
    md_seconds = time.perf_counter() - loop_start

    steps_run = state.step - step_start
    speed = natoms * steps_run / md_seconds if md_seconds > 0 and steps_run else None
    cpu = hardware()
    summary = {
        'program': 'mlcampaign-md',
        'family': family,
        'species': species,
        'natoms': natoms,
        'settings': settings,
        'finished': stop_reason == 'completed',
        'stop_reason': stop_reason,
        'stop_detail': detail,
        'step_start': step_start,
        'time_start_fs': time_start,
        'steps_done': state.step,
        'steps_run': steps_run,
        'time_fs': state.time_fs,
        'thermo_rows': writer.rows,
        'dump_frames': writer.frames,
        'restart_step': restart_step,
        'final_temperature_K': _finite_or_none(last[0]),
        'final_potential_energy_eV': _finite_or_none(last[1]),
        'wall_time': time.perf_counter() - started,
        'md_seconds': md_seconds,
        'atom_steps_per_second': speed,
        'atom_steps_per_s': speed,
        'ns_per_day': (steps_run * dt * 1e-6 / md_seconds * 86400.0) if speed else None,
        'hardware': cpu['label'],
        'cpu': cpu,
    }
    if family == 'mtp':
        summary['below_min_dist_evaluations'] = counter.count
    with open_for_write(out_dir / SUMMARY_FILENAME) as handle:
        handle.write(json.dumps(summary, indent=1, allow_nan=False) + '\n')
    return summary


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None


# ----------------------------------------------------------------------------------- console script


def main(argv=None) -> int:
    """``mlcampaign-md settings.json``: run in the working directory.

    The settings file holds the MD settings (:func:`check_md_settings`) and ``family`` ('mtp' default, or 'nep'),
    ``species`` (required for mtp: the .mtp type order), ``potential`` (default ``potential.mtp`` / ``nep.txt``),
    ``start`` (default ``model.xyz``) and ``restart`` (optional: a restart.xyz of this driver to continue from).
    SIGTERM or SIGINT stops the run after the current step with a restart.xyz (exit status 143). Exit status 0 on
    success (also after a blow-up: a scientific result, read it from ``summary.json``), 1 on any error, announced on
    stdout by a line starting with ``mlcampaign-md: ERROR``.
    """
    parser = argparse.ArgumentParser(prog='mlcampaign-md', description=__doc__.splitlines()[0])
    parser.add_argument('settings', help='JSON file: MD settings, family, species and input file names')
    args = parser.parse_args(argv)
    signals = []

    def stop(signum, _frame):
        signals.append(signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open(args.settings, encoding='utf-8') as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError(f'{args.settings}: expected a JSON object')
        document = dict(document)
        family = document.pop('family', 'mtp')
        species = document.pop('species', None)
        potential = document.pop('potential', 'potential.mtp' if family == 'mtp' else 'nep.txt')
        start = document.pop('start', 'model.xyz')
        restart = document.pop('restart', None)
        summary = run_md(document, potential, family, species, start, '.', restart, log=sys.stdout,
                         should_stop=lambda: bool(signals))
    except Exception as exception:  # noqa: BLE001 - reported to the parser, then a non-zero exit
        print(f'{ERROR_MARKER}: {type(exception).__name__}: {exception}', flush=True)
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print(f"{DONE_MARKER}: {summary['stop_reason']} at step {summary['steps_done']} of "
          f"{summary['settings']['steps']}, {summary['steps_run']} steps in {summary['md_seconds']:.2f} s", flush=True)
    return 143 if summary['stop_reason'] == 'terminated' else 0


if __name__ == '__main__':  # pragma: no cover
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
