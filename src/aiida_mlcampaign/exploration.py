"""Exploration MD with an MTP or a NEP committee: walkers over a temperature ladder and seeds, graded every n steps.

The driver behind ``MtpExploreCalculation`` and ``NepExploreCalculation`` (console script
``mlcampaign-explore``) and a pure function for tests: no AiiDA is imported, only numpy, ASE, motep or
calorine and this package's readers and writers, so it runs on any computer where the package is installed.

Two families share everything but the calculator and the grade (settings key ``family``):

* ``mtp`` (default): the MTP drives the MD (``motep.calculator.MTP``); the grade is mlip-2's
  extrapolation grade against the active set built once from the training set
  (:func:`aiida_mlcampaign.mtp.engine.build_active_set`, rows = energy Jacobian / atom count,
  :func:`aiida_mlcampaign.mtp.engine.energy_jacobians`), classified the way mlip-2's selection during MD does (shared
  ``docs/mtp-formats.md`` section 5): a frame is a candidate when ``gamma > select_threshold`` and
  breaks when ``gamma > break_threshold``;
* ``nep``: the first committee member drives the MD (calorine's ``CPUNEP``); the grade is the
  committee's force deviation (:func:`aiida_mlcampaign.nep.committee.max_force_deviation`, eV/Å, the
  members' forces on the frame, the first member's taken from the MD step), and the thresholds are the
  trust window: a candidate when ``lower = select_threshold <= deviation``, a break when
  ``deviation >= break_threshold = upper`` (DP-GEN's ``[trust_lo, trust_hi)``).

What a walker does (one walker per temperature x seed x starting structure):

1. velocities from a Maxwell-Boltzmann distribution at ``T`` drawn with
   ``numpy.random.default_rng(seed)``, centre-of-mass momentum removed; the same generator then
   drives the Langevin noise, so a walker is reproducible from ``(start, T, seed)``;
2. MD with the family's calculator: ``nvt`` = Langevin (``friction``, centre of mass fixed with
   ``FixCom``), ``npt`` = ASE's ``NPTBerendsen`` (isotropic, cell shape kept);
3. every ``grade_every`` steps the frame is graded and classified:

   * exploded - energy or forces not finite (checked every step), two atoms closer than
     ``min_distance``, a grade that is not finite, or a grade above ``explode_grade`` (when set): the frame is
     garbage, it is discarded (neither counted as graded nor saved) and the walker stops
     (``stop_reason = 'exploded'``);
   * above the break threshold: saved as a candidate, then the walker stops (``'break'``); with
     ``break_threshold`` None there is no break, and a walker stops only when it explodes or completes (the
     MTP family uses that for a young potential, whose sound frames grade far above any sensible break);
   * above the select threshold: saved as a candidate, the walker goes on;
   * otherwise nothing is saved; a walker that reaches ``steps`` ends with ``'completed'``.

   At most ``max_candidates_per_walker`` frames per walker are written; frames above the select
   threshold beyond that cap still count in ``above_select`` (and a break still stops the walker).

Outputs in ``out_dir``: ``candidates.xyz`` (extended XYZ, ASE convention, no labels; info
``walker``, ``step``, ``temperature``, ``grade``, ``seed``, ``start``), written and flushed frame by
frame as the walkers find them (no trajectory is kept in memory), and ``summary.json`` (see
:func:`explore`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import pathlib
import sys
import time
import traceback
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    'CANDIDATES_FILENAME',
    'ENSEMBLES',
    'EXPLORE_DEFAULTS',
    'FAMILIES',
    'NEP_DEFAULTS',
    'REQUIRED_KEYS',
    'SUMMARY_FILENAME',
    'check_explore_settings',
    'explore',
    'main',
]

CANDIDATES_FILENAME = 'candidates.xyz'
SUMMARY_FILENAME = 'summary.json'
DONE_MARKER = 'mlcampaign-explore: done'
ERROR_MARKER = 'mlcampaign-explore: ERROR'

GPA_PER_EV_A3 = 160.21766208

FAMILIES = ('mtp', 'nep')
ENSEMBLES = ('nvt', 'npt')
ENGINES = ('cext', 'numpy', 'numba', 'jax')
REQUIRED_KEYS = ('temperatures', 'seeds', 'steps', 'time_step', 'grade_every')

#: Optional keys for every ensemble and their defaults (family ``mtp``).
EXPLORE_DEFAULTS = {
    'ensemble': 'nvt',
    'select_threshold': 2.1,
    'break_threshold': 10.0,
    # Off by default: with a young active set (few frames, many parameters) sound frames grade 1e8-1e18
    # (measured on an 8-atom Cu3PS4 cell with 2 training frames), so a grade limit would discard exactly the
    # frames active learning needs. Set it once the training set is mature.
    'explode_grade': None,
    'min_distance': 0.6,
    'max_candidates_per_walker': 20,
    'engine': 'cext',
}
#: Family ``nep``: the thresholds are the trust window of the committee force deviation (eV/Å), DP-GEN's
#: usual force window; ``engine`` (motep's) does not exist.
NEP_DEFAULTS = {
    **{key: value for key, value in EXPLORE_DEFAULTS.items() if key != 'engine'},
    'select_threshold': 0.1,
    'break_threshold': 0.5,
}
_FAMILY_DEFAULTS = {'mtp': EXPLORE_DEFAULTS, 'nep': NEP_DEFAULTS}
#: Keys of one ensemble only (refused with the other one) and their defaults.
ENSEMBLE_DEFAULTS = {
    'nvt': {'friction': 0.02},  # fs^-1
    'npt': {'pressure': 0.0, 'compressibility': 0.01, 'taut': 100.0, 'taup': 1000.0},  # GPa, GPa^-1, fs, fs
}
_ALL_KEYS = (set(REQUIRED_KEYS) | set(EXPLORE_DEFAULTS) | {'family'}
             | {k for d in ENSEMBLE_DEFAULTS.values() for k in d})


# ----------------------------------------------------------------------------------- settings


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(float(value)))


def _number(settings: dict, key: str, *, above: float | None = None, at_least: float | None = None) -> float:
    value = settings[key]
    if not _is_number(value):
        raise ValueError(f'{key}: must be a finite number, got {value!r}')
    value = float(value)
    if above is not None and not value > above:
        raise ValueError(f'{key}: must be > {above:g}, got {value!r}')
    if at_least is not None and not value >= at_least:
        raise ValueError(f'{key}: must be >= {at_least:g}, got {value!r}')
    return value


def _integer(settings: dict, key: str, minimum: int) -> int:
    value = settings[key]
    if not _is_int(value) or value < minimum:
        raise ValueError(f'{key}: must be an integer >= {minimum}, got {value!r}')
    return int(value)


def check_explore_settings(settings: dict) -> dict:
    """Validate exploration settings and return them completed with the defaults.

    Raises ``ValueError`` whose message starts with the offending field (``temperatures[1]: ...``).
    The result is plain JSON (lists, floats, ints, strings) and passes this check again unchanged.

    Required: ``temperatures`` (K, each > 0), ``seeds`` (integers), ``steps`` (> 0),
    ``time_step`` (fs, > 0), ``grade_every`` (> 0, <= steps). Optional (default):
    ``family`` ('mtp' or 'nep'; kept in the result only for 'nep'), ``ensemble`` ('nvt'),
    ``select_threshold`` (mtp: 2.1, >= 1; nep: 0.1 eV/Å, > 0), ``break_threshold`` (mtp: 10, nep: 0.5 eV/Å;
    > select; None = no break: a walker stops only when it explodes or completes), ``explode_grade`` (None =
    off; else > break, or > select without a break), ``min_distance`` (0.6 Å, >= 0),
    ``max_candidates_per_walker`` (20, >= 0), ``engine`` ('cext', motep's engine; mtp only). With ``nvt``:
    ``friction`` (0.02 fs^-1, > 0). With ``npt`` (NPTBerendsen, isotropic): ``pressure``
    (0 GPa), ``compressibility`` (0.01 GPa^-1, > 0), ``taut`` (100 fs, > 0), ``taup`` (1000 fs, > 0).
    """
    if not isinstance(settings, dict):
        raise ValueError(f'settings: expected a dictionary, got {type(settings).__name__}')
    unknown = sorted(set(settings) - _ALL_KEYS)
    if unknown:
        raise ValueError(f'settings: unknown key(s) {unknown}; known: {sorted(_ALL_KEYS)}')
    missing = [key for key in REQUIRED_KEYS if key not in settings]
    if missing:
        raise ValueError(f'{missing[0]}: required (missing: {missing})')
    family = settings.get('family', 'mtp')
    if family not in FAMILIES:
        raise ValueError(f'family: must be one of {list(FAMILIES)}, got {family!r}')
    if family != 'mtp' and 'engine' in settings:
        raise ValueError(f"engine: only used with family 'mtp' (motep's engine), not {family!r}")

    ensemble = settings.get('ensemble', EXPLORE_DEFAULTS['ensemble'])
    if ensemble not in ENSEMBLES:
        raise ValueError(f'ensemble: must be one of {list(ENSEMBLES)}, got {ensemble!r}')
    for other, keys in ENSEMBLE_DEFAULTS.items():
        if other != ensemble:
            wrong = sorted(set(keys) & set(settings))
            if wrong:
                raise ValueError(f'{wrong[0]}: only used with ensemble {other!r}, not {ensemble!r}')
    merged = {**_FAMILY_DEFAULTS[family], **ENSEMBLE_DEFAULTS[ensemble], **settings}
    result: dict = {'family': family} if family != 'mtp' else {}
    result['ensemble'] = ensemble

    temperatures = merged['temperatures']
    if not isinstance(temperatures, (list, tuple)) or not temperatures:
        raise ValueError(f'temperatures: must be a non-empty list of temperatures in K, got {temperatures!r}')
    for i, value in enumerate(temperatures):
        if not _is_number(value) or not float(value) > 0:
            raise ValueError(f'temperatures[{i}]: must be a number > 0 (K), got {value!r}')
    result['temperatures'] = [float(t) for t in temperatures]

    seeds = merged['seeds']
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f'seeds: must be a non-empty list of integers, got {seeds!r}')
    for i, value in enumerate(seeds):
        if not _is_int(value) or value < 0:
            raise ValueError(f'seeds[{i}]: must be an integer >= 0, got {value!r}')
    if len({int(s) for s in seeds}) != len(seeds):
        raise ValueError(f'seeds: repeated seed in {list(seeds)} (the walkers would be identical)')
    result['seeds'] = [int(s) for s in seeds]

    result['steps'] = _integer(merged, 'steps', 1)
    result['time_step'] = _number(merged, 'time_step', above=0)
    result['grade_every'] = _integer(merged, 'grade_every', 1)
    if result['grade_every'] > result['steps']:
        raise ValueError(f"grade_every: must be <= steps ({result['steps']}), got {result['grade_every']}")

    if family == 'mtp':
        result['select_threshold'] = _number(merged, 'select_threshold', at_least=1.0)
    else:
        result['select_threshold'] = _number(merged, 'select_threshold', above=0.0)
    result['break_threshold'] = None if merged['break_threshold'] is None else _number(merged, 'break_threshold')
    if result['break_threshold'] is not None and not result['break_threshold'] > result['select_threshold']:
        raise ValueError(
            f"break_threshold: must be > select_threshold ({result['select_threshold']}), "
            f"got {result['break_threshold']}"
        )
    result['explode_grade'] = None if merged['explode_grade'] is None else _number(merged, 'explode_grade')
    if result['explode_grade'] is not None:
        floor, name = ((result['break_threshold'], 'break_threshold') if result['break_threshold'] is not None
                       else (result['select_threshold'], 'select_threshold'))
        if not result['explode_grade'] > floor:
            raise ValueError(f"explode_grade: must be > {name} ({floor}), got {result['explode_grade']}")
    result['min_distance'] = _number(merged, 'min_distance', at_least=0.0)
    result['max_candidates_per_walker'] = _integer(merged, 'max_candidates_per_walker', 0)
    if family == 'mtp':
        if merged['engine'] not in ENGINES:
            raise ValueError(f"engine: must be one of {list(ENGINES)}, got {merged['engine']!r}")
        result['engine'] = merged['engine']

    if ensemble == 'nvt':
        result['friction'] = _number(merged, 'friction', above=0)
    else:
        result['pressure'] = _number(merged, 'pressure')
        result['compressibility'] = _number(merged, 'compressibility', above=0)
        result['taut'] = _number(merged, 'taut', above=0)
        result['taup'] = _number(merged, 'taup', above=0)
    return result


# ------------------------------------------------------------------------------------ walkers


def _thermalise(atoms, temperature: float, rng) -> None:
    """Maxwell-Boltzmann momenta at ``temperature`` from ``rng``, zero total momentum."""
    from ase.md import velocitydistribution as vd

    if hasattr(vd, 'thermalize_momenta'):  # ASE >= 3.29; MaxwellBoltzmannDistribution is a deprecated alias
        vd.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    if len(atoms) > 1:
        vd.Stationary(atoms, preserve_temperature=True)
    else:
        atoms.set_momenta(np.zeros((1, 3)))


def _dynamics(atoms, temperature: float, settings: dict, rng):
    from ase import units

    time_step = settings['time_step'] * units.fs
    if settings['ensemble'] == 'nvt':
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        # ASE >= 3.28 deprecates Langevin(fixcm=True); the recommended equivalent is a FixCom constraint.
        atoms.set_constraint(FixCom())
        return Langevin(atoms, time_step, temperature_K=temperature, friction=settings['friction'] / units.fs,
                        fixcm=False, rng=rng)
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(
        atoms, time_step, temperature_K=temperature,
        pressure_au=settings['pressure'] / GPA_PER_EV_A3,
        compressibility_au=settings['compressibility'] * GPA_PER_EV_A3,
        taut=settings['taut'] * units.fs, taup=settings['taup'] * units.fs,
    )


def _finite_energy_and_forces(atoms) -> str | None:
    """``None`` if energy and forces of the current frame are finite, else why not."""
    try:
        with np.errstate(all='ignore'):
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
    except (ArithmeticError, ValueError) as exception:
        return f'the potential failed on the frame: {type(exception).__name__}: {exception}'
    if not np.isfinite(energy):
        return f'energy is not finite ({energy})'
    if not np.all(np.isfinite(forces)):
        return 'forces are not finite'
    return None


def _min_distance(atoms) -> float:
    from .mtp.selection import min_interatomic_distance

    return min_interatomic_distance(np.asarray(atoms.cell), atoms.positions, atoms.pbc)


class _MinDistCounter(logging.Filter):
    """Counts (and silences) motep's per-evaluation warning about neighbours closer than the
    potential's ``min_dist``; a hot walker would otherwise write one stderr line per MD step."""

    LOGGER = 'motep.potentials.mtp.base'

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if 'smaller than min_dist' in record.getMessage():
            self.count += 1
            return False
        return True


class _CandidateWriter:
    """Appends unlabelled frames to ``candidates.xyz`` one at a time and flushes after each."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.handle = open(self.path, 'w', encoding='utf-8', newline='\n')
        self.count = 0

    def write(self, atoms, info: dict) -> None:
        from .formats.extxyz import write_extxyz
        from .formats.frames import Frame

        frame = Frame(
            symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell), positions=atoms.get_positions(),
            pbc=tuple(bool(p) for p in atoms.pbc), info=dict(info),
        )
        write_extxyz([frame], self.handle, convention='ase')
        self.handle.flush()
        self.count += 1

    def close(self) -> None:
        self.handle.close()


class _MtpFamily:
    """The MTP drives the MD; the grade is mlip-2's extrapolation grade against the training set's active set."""

    name = 'mtp'
    potential_name = 'MTP'

    def __init__(self, potential_path, species, training_cfg_path, settings, say):
        from .mtp import engine

        if isinstance(potential_path, (list, tuple)):
            raise ValueError('potential: family mtp takes one .mtp file')
        if training_cfg_path is None:
            raise ValueError('training: family mtp needs the training set (.cfg) to build the active set')
        self.engine_name = settings['engine']
        self.species = [str(s) for s in species]
        self.mtp = engine.read_potential(potential_path, self.species)
        engine._require_trained(self.mtp)
        self.training = engine.load_images(training_cfg_path, self.species)
        if not self.training:
            raise ValueError('training set: no configurations to build the active set from')
        self.active_set = None
        self._say = say

    def prepare(self) -> None:
        """Build the active set (after the starts are checked: it is the expensive part)."""
        from .mtp import engine

        self.active_set = engine.build_active_set(self.mtp, self.species, self.training, engine=self.engine_name)
        self._say(f'active set: {self.active_set.size} rows, {self.active_set.n_regularisers} regularisers, '
                  f'{len(self.training)} training configurations')

    def calculator(self):
        from motep.calculator import MTP

        return MTP(self.mtp, engine=self.engine_name, mode='run')

    def grade(self, atoms) -> float:
        from .mtp import engine

        jacobians = engine.energy_jacobians(self.mtp, self.species, [atoms], engine=self.engine_name)
        return float(self.active_set.grades(jacobians)[0])

    @staticmethod
    def above(value: float, threshold: float) -> bool:
        return value > threshold  # mlip-2: gamma > threshold

    def summary(self) -> dict:
        return {'active_set': {
            'size': self.active_set.size, 'regularisers': self.active_set.n_regularisers,
            'training_configurations': len(self.training),
        }}


class _NepFamily:
    """The first committee member drives the MD; the grade is the committee's largest per-atom force deviation."""

    name = 'nep'
    potential_name = 'NEP'

    def __init__(self, potential_paths, species, training_cfg_path, settings, say):
        from .nep.cpu import NepCommittee

        if training_cfg_path is not None:
            raise ValueError('training: family nep grades with the committee and takes no training set')
        if isinstance(potential_paths, (str, os.PathLike)):
            potential_paths = [potential_paths]
        self.committee = NepCommittee(list(potential_paths))
        if species is not None and [str(s) for s in species] != self.committee.species:
            raise ValueError(f'species: {list(species)} differ from the models\' species {self.committee.species}')
        self.species = self.committee.species
        self._say = say

    def prepare(self) -> None:
        self._say(f'committee: {len(self.committee)} NEP models ({", ".join(p.name for p in self.committee.paths)}), '
                  f'species {self.species}; the MD runs with {self.committee.paths[0].name}')

    def calculator(self):
        from .nep.cpu import nep_calculator

        return nep_calculator(self.committee.paths[0])

    def grade(self, atoms) -> float:
        # The MD calculator is member 0 and has the forces of this frame cached. Raw forces: the walker's FixCom
        # constraint changes what get_forces() returns, and the other members' forces are unconstrained.
        return self.committee.deviation(atoms, first=atoms.get_forces(apply_constraint=False))

    @staticmethod
    def above(value: float, threshold: float) -> bool:
        return value >= threshold  # trust window [lower, upper)

    def summary(self) -> dict:
        return {'committee': {'models': len(self.committee), 'files': [p.name for p in self.committee.paths],
                              'md_model': self.committee.paths[0].name}}


def _run_walker(index: int, start_index: int, start, temperature: float, seed: int, settings: dict,
                family, writer: _CandidateWriter, min_dist_counter: _MinDistCounter) -> dict:
    record = {
        'walker': index, 'start': start_index, 'start_label': str(start.info.get('label', start_index)),
        'temperature': temperature, 'seed': seed, 'natoms': len(start), 'steps_run': 0,
        'stop_reason': 'completed', 'stop_detail': '', 'graded': 0, 'above_select': 0, 'candidates': 0,
        'max_grade': None, 'below_min_dist_evaluations': 0, 'wall_time': 0.0,
    }
    below_before = min_dist_counter.count
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    atoms = start.copy()  # positions, cell, pbc; no labels, no calculator
    atoms.calc = family.calculator()
    select, break_, explode = settings['select_threshold'], settings['break_threshold'], settings['explode_grade']
    above = family.above

    def stop(reason: str, step: int, detail: str = '') -> dict:
        record.update(stop_reason=reason, steps_run=step, stop_detail=detail, wall_time=time.perf_counter() - t0,
                      below_min_dist_evaluations=min_dist_counter.count - below_before)
        return record

    def exploded_at(step: int) -> str | None:
        problem = _finite_energy_and_forces(atoms)
        if problem is None and settings['min_distance'] > 0:
            distance = _min_distance(atoms)
            if distance < settings['min_distance']:
                problem = f"atoms {distance:.3f} Å apart (min_distance {settings['min_distance']} Å)"
        return problem

    problem = exploded_at(0)
    if problem:
        return stop('exploded', 0, f'start: {problem}')
    _thermalise(atoms, temperature, rng)
    dynamics = _dynamics(atoms, temperature, settings, rng)

    grade_every, max_saved = settings['grade_every'], settings['max_candidates_per_walker']
    for step in range(1, settings['steps'] + 1):
        try:
            with np.errstate(all='ignore'):
                dynamics.step()
            dynamics.nsteps += 1
        except (ArithmeticError, ValueError) as exception:
            return stop('exploded', step, f'step failed: {type(exception).__name__}: {exception}')
        if step % grade_every:
            problem = _finite_energy_and_forces(atoms)  # cached results: no extra evaluation
            if problem:
                return stop('exploded', step, problem)
            continue
        problem = exploded_at(step)
        if problem:
            return stop('exploded', step, problem)
        with np.errstate(all='ignore'):
            gamma = family.grade(atoms)
        if not math.isfinite(gamma) or (explode is not None and gamma > explode):
            return stop('exploded', step, f'grade {gamma:.6g} > explode_grade {explode}')
        record['graded'] += 1
        record['max_grade'] = gamma if record['max_grade'] is None else max(record['max_grade'], gamma)
        if above(gamma, select):
            record['above_select'] += 1
            if record['candidates'] < max_saved:
                writer.write(atoms, {
                    'walker': index, 'step': step, 'temperature': temperature, 'grade': gamma, 'seed': seed,
                    'start': start_index, 'origin': 'explore',
                })
                record['candidates'] += 1
        if break_ is not None and above(gamma, break_):
            relation = '>' if family.name == 'mtp' else '>='
            return stop('break', step, f'grade {gamma:.6g} {relation} break_threshold {break_:g}')
    return stop('completed', settings['steps'])


# --------------------------------------------------------------------------------------- driver


def _read_starts(starts_path, species, family: str = 'mtp') -> list:
    from .formats.extxyz import read_extxyz

    starts = []
    for i, frame in enumerate(read_extxyz(starts_path)):
        extra = sorted(set(frame.symbols) - set(species))
        if extra:
            raise ValueError(f'starts: structure {i} holds {extra}, which the potential ({list(species)}) lacks')
        atoms = frame.to_ase()
        atoms.calc = None  # a start is a geometry; any labels in the file are not used
        if family == 'nep' and (not all(atoms.pbc) or atoms.cell.rank != 3):
            raise ValueError(f'starts: structure {i} is not periodic in 3 directions; nep_cpu treats every cell as '
                             'periodic')
        starts.append(atoms)
    if not starts:
        raise ValueError('starts: no starting structure')
    return starts


def explore(settings: dict, potential_path, species: Sequence[str] | None, training_cfg_path, starts_path, out_dir,
            log=None) -> dict:
    """Run every walker and write ``candidates.xyz`` and ``summary.json`` into ``out_dir``.

    :param settings: see :func:`check_explore_settings` (completed with the defaults here); ``family``
        chooses between the MTP and the NEP committee.
    :param potential_path: mtp: the trained ``.mtp`` (mlip-2 layout); nep: the list of ``nep.txt`` files of
        the committee (at least 2, same species in the same order), the first one drives the MD.
    :param species: mtp: element symbols of the ``.mtp`` types, type 0 first, also the ``.cfg`` type order;
        nep: ``None`` (read from the models) or the models' species, checked.
    :param training_cfg_path: mtp: mlip ``.cfg`` of the training set; only positions, cells and types are
        used (labels may be missing), to build the active set once. nep: ``None``.
    :param starts_path: extended XYZ of the starting structures (``info['label']`` names a start).
    :param log: text stream for one line per walker (``None``: silent).
    :returns: the summary written to ``summary.json``: ``family``, ``settings``, ``species``, for mtp
        ``active_set`` (size, regularisers, training configurations), for nep ``committee`` (``models``,
        ``files``, ``md_model``), ``walkers`` (one dict each: ``walker``,
        ``start``, ``start_label``, ``temperature``, ``seed``, ``natoms``, ``steps_run``,
        ``stop_reason`` in completed/break/exploded, ``stop_detail``, ``graded``, ``above_select``,
        ``candidates`` (written), ``max_grade`` (None if nothing was graded; nep: the largest committee
        deviation, eV/Å), ``below_min_dist_evaluations`` (mtp: MTP evaluations with neighbours closer than
        the potential's ``min_dist``; motep's warning for each is counted instead of printed; nep: 0),
        ``wall_time``) and
        ``totals`` (``walkers``, ``steps_run``, ``graded``, ``above_select``, ``candidates``,
        ``candidate_fraction`` = above_select / graded (None without graded frames),
        ``completed``, ``break``, ``exploded`` (walker counts), ``max_grade``,
        ``below_min_dist_evaluations``, ``wall_time`` (s, whole call), ``steps_per_second`` (MD steps
        per second of walker time, grading included)).
    """
    start_time = time.perf_counter()
    settings = check_explore_settings(settings)
    out_dir = pathlib.Path(out_dir)

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    family_class = {'mtp': _MtpFamily, 'nep': _NepFamily}[settings.get('family', 'mtp')]
    family = family_class(potential_path, species, training_cfg_path, settings, say)
    species = family.species
    starts = _read_starts(starts_path, species, family.name)
    if settings['ensemble'] == 'npt':
        for i, atoms in enumerate(starts):
            if not all(atoms.pbc) or atoms.cell.rank != 3:
                raise ValueError(f'starts: structure {i} is not periodic in 3 directions; npt needs a full cell')
    family.prepare()
    out_dir.mkdir(parents=True, exist_ok=True)

    walkers = []
    writer = _CandidateWriter(out_dir / CANDIDATES_FILENAME)
    counter = _MinDistCounter()
    motep_logger = logging.getLogger(_MinDistCounter.LOGGER)
    motep_logger.addFilter(counter)
    try:
        index = 0
        for temperature in settings['temperatures']:
            for start_index, start in enumerate(starts):
                for seed in settings['seeds']:
                    with warnings.catch_warnings():
                        warnings.simplefilter('ignore', FutureWarning)
                        record = _run_walker(index, start_index, start, temperature, seed, settings, family,
                                             writer, counter)
                    walkers.append(record)
                    max_grade = 'n/a' if record['max_grade'] is None else f"{record['max_grade']:.3g}"
                    say(f"walker {index}: T={temperature:g} K seed={seed} start={start_index} "
                        f"{record['stop_reason']} after {record['steps_run']} steps, graded {record['graded']}, "
                        f"above select {record['above_select']}, max grade {max_grade}"
                        + (f" ({record['stop_detail']})" if record['stop_detail'] else ''))
                    index += 1
    finally:
        writer.close()
        motep_logger.removeFilter(counter)

    graded = sum(w['graded'] for w in walkers)
    above = sum(w['above_select'] for w in walkers)
    steps_run = sum(w['steps_run'] for w in walkers)
    grades = [w['max_grade'] for w in walkers if w['max_grade'] is not None]
    wall_time = time.perf_counter() - start_time
    md_time = sum(w['wall_time'] for w in walkers)
    totals = {
        'walkers': len(walkers),
        'steps_run': steps_run,
        'graded': graded,
        'above_select': above,
        'candidates': writer.count,
        'candidate_fraction': above / graded if graded else None,
        'completed': sum(w['stop_reason'] == 'completed' for w in walkers),
        'break': sum(w['stop_reason'] == 'break' for w in walkers),
        'exploded': sum(w['stop_reason'] == 'exploded' for w in walkers),
        'max_grade': max(grades) if grades else None,
        'below_min_dist_evaluations': counter.count,
        'wall_time': wall_time,
        'steps_per_second': steps_run / md_time if md_time > 0 else None,
    }
    summary = {
        'family': family.name,
        'settings': settings,
        'species': species,
        **family.summary(),
        'walkers': walkers,
        'totals': totals,
    }
    text = json.dumps(summary, indent=1, allow_nan=False)
    tmp = out_dir / (SUMMARY_FILENAME + '.tmp')
    tmp.write_text(text + '\n', encoding='utf-8')
    os.replace(tmp, out_dir / SUMMARY_FILENAME)
    return summary


def _nep_files(document: dict) -> list[str]:
    """The committee files named in the settings, else ``potential_0.txt``, ``potential_1.txt``... present."""
    files = document.pop('potentials', None)
    if files is not None:
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError('potentials: must be a list of file names')
        return files
    files = []
    while pathlib.Path(f'potential_{len(files)}.txt').is_file():
        files.append(f'potential_{len(files)}.txt')
    if len(files) < 2:
        raise ValueError(f'potentials: family nep needs potential_0.txt, potential_1.txt, ... (at least 2), '
                         f'found {files}')
    return files


def main(argv=None) -> int:
    """``mlcampaign-explore settings.json``: run in the working directory.

    The settings file holds the exploration settings (:func:`check_explore_settings`) and may name
    the input files. Family ``mtp`` (default): ``potential`` = ``potential.mtp``, ``training`` =
    ``training.cfg``, ``starts`` = ``starts.xyz``, and ``species`` (the ``.mtp`` type order) is required.
    Family ``nep``: ``potentials`` = the committee's ``nep.txt`` files (default ``potential_0.txt``,
    ``potential_1.txt``, ... as present; the first drives the MD), ``starts``; ``species`` optional (checked
    against the models). Exit status 0 on success (also when walkers exploded: that is a scientific result,
    read it from ``summary.json``), 1 on any error, announced on stdout by a line starting with
    ``mlcampaign-explore: ERROR``.
    """
    parser = argparse.ArgumentParser(prog='mlcampaign-explore', description=__doc__.splitlines()[0])
    parser.add_argument('settings', help='JSON file: exploration settings, species and input file names')
    args = parser.parse_args(argv)
    try:
        with open(args.settings, encoding='utf-8') as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError(f'{args.settings}: expected a JSON object')
        document = dict(document)
        species = document.pop('species', None)
        if document.get('family', 'mtp') == 'nep':
            if species is not None and (not isinstance(species, list) or not species):
                raise ValueError('species: if given, the element symbols of the models in type order')
            potentials = _nep_files(document)
            starts = document.pop('starts', 'starts.xyz')
            print(f'mlcampaign-explore: settings {args.settings}, family nep, committee {potentials}', flush=True)
            summary = explore(document, potentials, species, None, starts, '.', log=sys.stdout)
        else:
            if not isinstance(species, list) or not species:
                raise ValueError('species: required, the element symbols of the .mtp types in order')
            files = {key: document.pop(key, default) for key, default in
                     (('potential', 'potential.mtp'), ('training', 'training.cfg'), ('starts', 'starts.xyz'))}
            print(f'mlcampaign-explore: settings {args.settings}, species {species}', flush=True)
            summary = explore(document, files['potential'], species, files['training'], files['starts'], '.',
                              log=sys.stdout)
    except Exception as exception:  # noqa: BLE001 - reported to the parser, then a non-zero exit
        print(f'{ERROR_MARKER}: {type(exception).__name__}: {exception}', flush=True)
        traceback.print_exc(file=sys.stderr)
        return 1
    totals = summary['totals']
    print(f"{DONE_MARKER}: {totals['walkers']} walkers, {totals['candidates']} candidates, "
          f"{totals['exploded']} exploded, {totals['wall_time']:.2f} s", flush=True)
    return 0


if __name__ == '__main__':  # pragma: no cover
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
