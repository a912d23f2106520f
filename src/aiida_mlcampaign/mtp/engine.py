"""Train, evaluate, grade and select with motep 0.2.0 - small functions a CalcJob driver can call.

No AiiDA here; motep (MIT) is imported lazily so that importing this module stays cheap. Every
function takes file paths (or lists of structures) and writes files only where asked, in formats
mlip-2 reads. The motep 0.2.0 defects of the shared ``docs/mtp-formats.md`` section 7 are worked
around, not inherited:

* 7.1 the default ``.mtp`` writer produces files nobody can read: we always call
  ``write_mtp(..., legacy=True)`` and never let motep write ``intermediate_*.mtp`` files (our
  training loop replaces ``Trainer.train``, which writes them into the working directory with
  the broken writer).
* 7.2 ``update_mindist`` is broken: :func:`train` sets ``radial_basis.min`` itself, to
  ``0.99 x`` the shortest interatomic distance of the training set (periodic images included).
* 7.3 ``Grader.grade`` overwrites reference labels and 7.4/7.5 its configuration mode is
  ill-conditioned, needs at least as many configurations as parameters and does not divide by the
  atom count: :func:`grade` and :func:`select_add` use our MaxVol
  (:mod:`aiida_mlcampaign.mtp.selection`, regularised start) on :func:`energy_jacobians` and
  work on copies of the structures.
* 7.6 motep's ``.cfg`` reader has gaps: files are read with
  :func:`aiida_mlcampaign.formats.mlip_cfg.read_cfg`.
* 7.7 the stress loss indexes volumes by position among stressed images: we hand the loss a
  volume array indexed by image.
* ``Trainer(seed=0)`` silently draws a random seed (``seed or ...``): we seed the generator
  ourselves, so ``seed=0`` is reproducible.

Energy Jacobians come from motep's engine itself, the same internals its ``Grader`` uses: a
calculator in ``mode='train'`` fills the basis data and ``engine.jac_energy(atoms).parameters`` is
the analytic dE/dtheta (moment coefficients = summed basis values, species coefficients = atom
counts per species, radial coefficients = the engine's accumulated dE/dc). The tests compare it
with central finite differences.

Parameter order (columns of the Jacobians, motep's ``MTPData.parameters``): ``moment_coeffs``
(``alpha_scalar_moments``), ``species_coeffs`` (``species_count``), then ``radial_coeffs``
flattened in C order over ``(species_i, species_j, radial_func, basis_function)``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np

from . import selection

__all__ = [
    'DEFAULT_STEPS',
    'WARM_START_STEPS',
    'Evaluation',
    'build_active_set',
    'energy_jacobians',
    'errors_against_references',
    'evaluate',
    'grade',
    'load_images',
    'min_distance_of',
    'parameter_labels',
    'read_potential',
    'select_add',
    'train',
]

ALL_PARAMETERS = ['species_coeffs', 'moment_coeffs', 'radial_coeffs']
LINEAR_PARAMETERS = ['species_coeffs', 'moment_coeffs']

DEFAULT_STEPS = (
    {'method': 'Level2MTP', 'optimized': ['radial_coeffs']},
    {'method': 'LLS', 'optimized': LINEAR_PARAMETERS},
    {'method': 'BFGS', 'optimized': ALL_PARAMETERS},
    {'method': 'LLS', 'optimized': LINEAR_PARAMETERS},
)
"""``Level2MTP -> LLS -> BFGS(max_iter) -> LLS`` (doc section 8: BFGS, not L-BFGS-B, which stops
almost at once). ``Level2MTP`` replaces the radial coefficients, so for a warm restart from a
trained potential pass ``steps=WARM_START_STEPS``."""

WARM_START_STEPS = DEFAULT_STEPS[1:]
"""``LLS -> BFGS(max_iter) -> LLS``: keeps the radial coefficients of the initial potential."""

GPA_PER_EV_A3 = 160.21766208
"""1 eV/Å^3 in GPa."""

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ helpers


def _species_numbers_and_symbols(species) -> tuple[list[int], list[str]]:
    """``species`` as atomic numbers (motep) and symbols (our cfg reader); either form accepted."""
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(species, (str, int, np.integer)):
        species = [species]
    numbers, symbols = [], []
    for item in species:
        if isinstance(item, (int, np.integer)):
            if not 0 < int(item) < len(chemical_symbols):
                raise ValueError(f'species: no element with atomic number {item}')
            numbers.append(int(item))
            symbols.append(chemical_symbols[int(item)])
        elif isinstance(item, str) and item in atomic_numbers and item != 'X':
            numbers.append(atomic_numbers[item])
            symbols.append(item)
        else:
            raise ValueError(f'species: {item!r} is neither an element symbol nor an atomic number')
    if not numbers:
        raise ValueError('species: at least one species is needed')
    if len(set(numbers)) != len(numbers):
        raise ValueError(f'species: repeated element in {species}')
    return numbers, symbols


def load_images(images_or_path, species) -> list:
    """A list of new ``ase.Atoms`` from a ``.cfg`` path, ``Frame`` objects or ``ase.Atoms``.

    ``.cfg`` types map to ``species`` in order. Atoms are copied together with their reference
    labels (as a ``SinglePointCalculator``), so nothing done to the result reaches the caller's
    objects.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..formats.frames import Frame
    from ..formats.mlip_cfg import read_cfg

    if isinstance(images_or_path, (str, os.PathLike)):
        _, symbols = _species_numbers_and_symbols(species)
        return [frame.to_ase() for frame in read_cfg(images_or_path, symbols)]
    result = []
    for item in images_or_path:
        if isinstance(item, Frame):
            result.append(item.to_ase())
            continue
        atoms = item.copy()  # copies arrays and info, drops the calculator
        results = getattr(item.calc, 'results', None) if item.calc is not None else None
        labels = {k: copy.deepcopy(results[k]) for k in ('energy', 'forces', 'stress') if results and k in results}
        if labels:
            atoms.calc = SinglePointCalculator(atoms, **labels)
        result.append(atoms)
    return result


def read_potential(mtp_or_path, species):
    """A private ``MTPData`` copy with ``species`` set (atomic numbers, in ``.cfg`` type order)."""
    from motep.io.mlip.mtp import read_mtp

    numbers, _ = _species_numbers_and_symbols(species)
    if isinstance(mtp_or_path, (str, os.PathLike)):
        mtp = read_mtp(os.fspath(mtp_or_path))
    else:
        mtp = copy.deepcopy(mtp_or_path)
    if mtp.radial_coeffs is not None and mtp.radial_coeffs.shape[0] != len(numbers):
        raise ValueError(
            f'species: the potential has {mtp.radial_coeffs.shape[0]} species, got {len(numbers)}'
        )
    mtp.species = numbers
    return mtp


def _require_trained(mtp) -> None:
    if mtp.moment_coeffs is None or mtp.species_coeffs is None or mtp.radial_coeffs is None:
        raise ValueError('the potential has no coefficients (an untrained template?)')


def _serial_comm():
    from motep.parallel import DummyMPIComm

    return DummyMPIComm()


def _reference(atoms) -> dict:
    results = getattr(atoms.calc, 'results', None) if atoms.calc is not None else None
    return dict(results) if results else {}


def parameter_labels(mtp_path, species, linear_only: bool = False) -> list[str]:
    """Names of the Jacobian columns, e.g. ``moment_coeffs[3]``, ``radial_coeffs[0,0,1,7]``."""
    mtp = read_potential(mtp_path, species)
    labels = [f'moment_coeffs[{i}]' for i in range(mtp.alpha_scalar_moments)]
    labels += [f'species_coeffs[{i}]' for i in range(mtp.species_count)]
    if not linear_only:
        shape = (mtp.species_count, mtp.species_count, mtp.radial_funcs_count, int(mtp.radial_basis.size))
        labels += ['radial_coeffs[{},{},{},{}]'.format(*idx) for idx in np.ndindex(*shape)]
    return labels


# --------------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class Evaluation:
    """MTP predictions for a list of configurations and their errors against the references.

    ``stresses`` are ASE-convention stresses in eV/Å^3 (Voigt xx yy zz yz xz xy), NaN for
    configurations without a periodic cell. ``errors`` is :func:`errors_against_references`.
    """

    energies: np.ndarray
    forces: list[np.ndarray]
    stresses: np.ndarray
    natoms: np.ndarray
    errors: dict


def _predict(mtp, images, engine: str = 'cext') -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    from motep.calculator import MTP

    energies, forces, stresses = [], [], []
    for atoms in images:
        work = atoms.copy()
        work.calc = MTP(mtp, engine=engine, mode='run')
        energies.append(work.get_potential_energy())
        forces.append(np.array(work.get_forces()))
        if work.cell.rank == 3 and all(work.pbc):
            stresses.append(np.array(work.get_stress()))
        else:
            stresses.append(np.full(6, np.nan))
    return np.array(energies, dtype=float), forces, np.array(stresses, dtype=float).reshape(-1, 6)


def _stats(prefix: str, diff: np.ndarray, scale: float = 1.0) -> dict:
    diff = np.asarray(diff, dtype=float).reshape(-1) * scale
    if diff.size == 0:
        return {f'{prefix}_rmse': float('nan'), f'{prefix}_mae': float('nan'), f'{prefix}_max': float('nan')}
    return {
        f'{prefix}_rmse': float(np.sqrt(np.mean(diff**2))),
        f'{prefix}_mae': float(np.mean(np.abs(diff))),
        f'{prefix}_max': float(np.max(np.abs(diff))),
    }


def _full(voigt: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = voigt
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def errors_against_references(images, energies, forces, stresses) -> dict:
    """Error statistics of predictions against the labels attached to ``images``.

    Keys (``_rmse``, ``_mae``, ``_max`` each): ``energy`` (eV), ``energy_per_atom`` (eV/atom),
    ``forces`` (eV/Å, per Cartesian component), ``stress`` (GPa, over the nine components of the
    full tensor as motep's and mlip-2's error reports do); counts ``n_configurations``,
    ``n_energy``, ``n_forces_atoms``, ``n_stress``. Configurations without a label are skipped
    for that property; with none at all the statistics are NaN.
    """
    de, dea, df, ds = [], [], [], []
    n_atoms_forces = 0
    for atoms, energy, force, stress in zip(images, energies, forces, stresses, strict=True):
        ref = _reference(atoms)
        if ref.get('energy') is not None:
            de.append(energy - ref['energy'])
            dea.append((energy - ref['energy']) / len(atoms))
        if ref.get('forces') is not None:
            df.append((np.asarray(force) - np.asarray(ref['forces'])).reshape(-1))
            n_atoms_forces += len(atoms)
        if ref.get('stress') is not None and np.all(np.isfinite(stress)):
            ref_stress = np.asarray(ref['stress'], dtype=float).reshape(-1)
            if ref_stress.size == 9:
                ref_stress = ref_stress.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            ds.append((_full(np.asarray(stress)) - _full(ref_stress)).reshape(-1))
    errors = {
        'n_configurations': len(energies),
        'n_energy': len(de),
        'n_forces_atoms': n_atoms_forces,
        'n_stress': len(ds),
    }
    errors.update(_stats('energy', np.array(de)))
    errors.update(_stats('energy_per_atom', np.array(dea)))
    errors.update(_stats('forces', np.concatenate(df) if df else np.zeros(0)))
    errors.update(_stats('stress', np.concatenate(ds) if ds else np.zeros(0), GPA_PER_EV_A3))
    return errors


def evaluate(mtp_path, cfg_path, species, output_cfg_path=None, *, engine: str = 'cext') -> Evaluation:
    """``mlp calc-efs`` + ``mlp calc-errors``: predict E/F/S and compare with the file's labels.

    ``cfg_path`` may also be a list of ``ase.Atoms``/``Frame``. With ``output_cfg_path`` the
    predictions are written as an mlip-2 ``.cfg`` (``Feature EFS_by MTP``; the input's other
    features kept), the way ``mlp calc-efs`` does - the input is never modified.
    """
    mtp = read_potential(mtp_path, species)
    _require_trained(mtp)
    images = load_images(cfg_path, species)
    energies, forces, stresses = _predict(mtp, images, engine)
    errors = errors_against_references(images, energies, forces, stresses)
    result = Evaluation(
        energies=energies,
        forces=forces,
        stresses=stresses,
        natoms=np.array([len(a) for a in images], dtype=int),
        errors=errors,
    )
    if output_cfg_path is not None:
        _write_predictions(output_cfg_path, images, result, species)
    return result


def _write_predictions(path, images, result: Evaluation, species) -> None:
    from ..formats.frames import Frame
    from ..formats.mlip_cfg import write_cfg

    _, symbols = _species_numbers_and_symbols(species)
    frames = []
    for i, atoms in enumerate(images):
        info = {k: v for k, v in atoms.info.items() if k not in ('EFS_by', 'mv_grade', 'MV_grade')}
        info = {'EFS_by': 'MTP', **info}
        stress = result.stresses[i] if np.all(np.isfinite(result.stresses[i])) else None
        frames.append(
            Frame(
                symbols=atoms.get_chemical_symbols(),
                cell=np.array(atoms.cell),
                positions=atoms.get_positions(),
                pbc=tuple(atoms.pbc),
                energy=result.energies[i],
                forces=result.forces[i],
                stress=stress,
                info=info,
            )
        )
    write_cfg(frames, path, symbols)


# ----------------------------------------------------------------------------------- training


def _normalise_steps(steps: Iterable[dict], max_iter: int) -> list[dict]:
    """motep step dicts; a scipy method name (``'BFGS'``) becomes ``method='minimize'`` as in
    motep's TOML reader. Our BFGS steps get ``jac=True`` and ``options.maxiter = max_iter`` unless
    they set them. The caller's dicts are not modified."""
    from scipy.optimize._minimize import MINIMIZE_METHODS

    result = []
    for step in steps:
        step = copy.deepcopy({'method': step} if isinstance(step, str) else dict(step))
        method = step['method']
        if method.lower() in MINIMIZE_METHODS:
            kwargs = step.setdefault('kwargs', {})
            kwargs['method'] = method
            kwargs.setdefault('jac', True)
            kwargs.setdefault('options', {}).setdefault('maxiter', max_iter)
            step['method'] = 'minimize'
        result.append(step)
    return result


def _optimizer_class(method: str, records: list):
    """motep's optimiser class; scipy ``minimize`` steps get a subclass that records the result."""
    from motep.optimizers import make_optimizer
    from motep.optimizers.scipy import ScipyMinimizeOptimizer

    cls = make_optimizer(method)
    if cls is not ScipyMinimizeOptimizer:
        return cls

    class _RecordingMinimize(ScipyMinimizeOptimizer):
        def print_result(self, result):
            records.append(
                {'nit': int(getattr(result, 'nit', -1)), 'success': bool(result.success),
                 'message': str(result.message)}
            )
            super().print_result(result)

    return _RecordingMinimize


def min_distance_of(images) -> float:
    """Shortest interatomic distance over all images (``mlp mindist``), periodic images included."""
    return min(
        (selection.min_interatomic_distance(a.cell, a.positions, a.pbc) for a in images),
        default=float('inf'),
    )


def train(
    initial_mtp_path,
    training_cfg_path,
    species,
    output_mtp_path,
    *,
    seed: int = 0,
    max_iter: int = 1000,
    energy_weight: float = 1.0,
    forces_weight: float = 0.01,
    stress_weight: float = 0.001,
    steps: Sequence[dict | str] | None = None,
    update_mindist: bool = False,
    engine: str = 'cext',
) -> dict:
    """``mlp train`` with motep: fit, write the potential in mlip-2 layout, return training errors.

    :param initial_mtp_path: template (``NN.mtp``) or trained ``.mtp`` to start from.
    :param training_cfg_path: ``.cfg`` path or list of labelled ``ase.Atoms``/``Frame``.
    :param species: elements for ``.cfg`` types 0, 1, ... (symbols or atomic numbers).
    :param output_mtp_path: written with ``write_mtp(..., legacy=True)`` (mlip-2 layout).
    :param seed: seeds the random initial coefficients (``seed=0`` is a valid, fixed seed).
    :param max_iter: ``maxiter`` of scipy-minimize steps that do not set their own.
    :param steps: motep steps (dicts as in motep's TOML ``[[steps]]``; scipy method names such as
        ``'BFGS'`` allowed); default :data:`DEFAULT_STEPS`.
    :param update_mindist: set ``min_dist`` to 0.99 x the shortest interatomic distance in the
        training set before fitting (mlip-2's ``--update-mindist``; motep's is broken).
    :returns: :func:`errors_against_references` of the written potential on the training set, plus
        ``min_dist``, ``max_dist``, ``n_parameters``, ``optimizer_iterations`` and
        ``optimizer_converged`` (one entry per scipy-minimize step), ``loss`` (final value of
        motep's loss function) and ``wall_time`` (s).
    """
    from motep.io.mlip.mtp import write_mtp
    from motep.loss import LossFunction, LossSetting

    start = time.perf_counter()
    mtp = read_potential(initial_mtp_path, species)
    images = load_images(training_cfg_path, species)
    if not images:
        raise ValueError('training set: no configurations')
    if update_mindist:
        min_dist = 0.99 * min_distance_of(images)
        if not np.isfinite(min_dist) or not 0 < min_dist < float(mtp.radial_basis.max):
            raise ValueError(
                f'update_mindist: 0.99 x shortest distance = {min_dist} is not inside '
                f'(0, max_dist = {mtp.radial_basis.max})'
            )
        mtp.radial_basis.min = np.float64(min_dist)
        logger.info('min_dist set to %.6f (0.99 x shortest interatomic distance)', min_dist)

    setting = LossSetting(
        energy_weight=energy_weight, forces_weight=forces_weight, stress_weight=stress_weight
    )
    loss = LossFunction(images, mtp, setting, engine=engine, comm=_serial_comm())
    # motep 0.2.0 section 7.7: volumes must be indexable by image index.
    loss.loss_stress.volumes = np.array([abs(a.cell.volume) for a in loss.images], dtype=float)

    rng = np.random.default_rng(seed)
    records: list[dict] = []
    for step in _normalise_steps(DEFAULT_STEPS if steps is None else steps, max_iter):
        mtp.initialize(rng)  # fills coefficients still missing, as motep's Trainer does
        optimizer = _optimizer_class(step['method'], records)(loss, **step)
        optimizer.optimize(**step.get('kwargs', {}))

    mtp.optimized = list(ALL_PARAMETERS)
    final_loss = float(loss(mtp.parameters))
    os.makedirs(os.path.dirname(os.path.abspath(output_mtp_path)), exist_ok=True)
    write_mtp(os.fspath(output_mtp_path), mtp, legacy=True)
    logger.info('trained potential written to %s (loss %.6g)', output_mtp_path, final_loss)

    written = read_potential(output_mtp_path, species)  # errors of what was written, not of memory
    energies, forces, stresses = _predict(written, images, engine)
    errors = errors_against_references(images, energies, forces, stresses)
    errors.update(
        min_dist=float(written.radial_basis.min),
        max_dist=float(written.radial_basis.max),
        n_parameters=len(parameter_labels(written, species)),
        optimizer_iterations=[r['nit'] for r in records],
        optimizer_converged=[r['success'] for r in records],
        loss=final_loss,
        wall_time=time.perf_counter() - start,
    )
    return errors


# ------------------------------------------------------------------------ Jacobians and grades


def energy_jacobians(mtp_path, species, images, linear_only: bool = False, *, engine: str = 'cext') -> np.ndarray:
    """Rows ``dE/dtheta / N_atoms`` per configuration (mlip-2's selection rows), shape
    ``(n_configs, n_params)``.

    Analytic, from motep's engine (``jac_energy`` after a ``mode='train'`` evaluation, as in
    motep's ``Grader``); columns in the order described in the module docstring (see
    :func:`parameter_labels`). ``linear_only`` keeps only ``moment_coeffs`` and
    ``species_coeffs``. ``images``: ``.cfg`` path or ``ase.Atoms``/``Frame`` list; only copies are
    evaluated, so the caller's structures and labels are untouched.
    """
    from motep.calculator import MTP

    mtp = read_potential(mtp_path, species)
    _require_trained(mtp)
    mtp.optimized = list(LINEAR_PARAMETERS if linear_only else ALL_PARAMETERS)
    rows = []
    for atoms in load_images(images, species):
        work = atoms.copy()
        work.calc = MTP(mtp, engine=engine, mode='run' if linear_only else 'train')
        work.get_potential_energy()
        rows.append(np.array(work.calc.engine.jac_energy(work).parameters, dtype=float) / len(work))
    n_params = mtp.number_of_parameters_optimized
    return np.array(rows, dtype=float).reshape(-1, n_params)


def build_active_set(
    mtp_path,
    species,
    training_images,
    *,
    linear_only: bool = False,
    init_threshold: float = selection.DEFAULT_INIT_THRESHOLD,
    engine: str = 'cext',
) -> selection.ActiveSet:
    """MaxVol active set of the training set (mlip-2's ``state.als`` content, as numbers).

    ``ActiveSet.indices`` are training-configuration indices, -1 for regulariser rows; keep
    ``ActiveSet.inverse`` to grade later configurations with :func:`selection.grades`.
    """
    rows = energy_jacobians(mtp_path, species, training_images, linear_only, engine=engine)
    return selection.maxvol(rows, init_threshold=init_threshold)


def grade(
    mtp_path,
    species,
    training_images,
    candidate_images,
    *,
    linear_only: bool = False,
    init_threshold: float = selection.DEFAULT_INIT_THRESHOLD,
    engine: str = 'cext',
) -> np.ndarray:
    """Extrapolation grade of each candidate (``mlp calc-grade``), mlip-2's definition.

    Active set from the training configurations' energy Jacobians over *all* parameters (divided
    by atom count) with the regularised MaxVol start; ``gamma = max |b @ inv(A)|``. Returns a new
    array; no structure or label of the caller is modified (motep's ``Grader`` replaces them,
    doc section 7.3). Training configurations themselves grade ``<= 1``.
    """
    active = build_active_set(
        mtp_path, species, training_images, linear_only=linear_only, init_threshold=init_threshold, engine=engine
    )
    rows = energy_jacobians(mtp_path, species, candidate_images, linear_only, engine=engine)
    return active.grades(rows)


def select_add(
    mtp_path,
    species,
    training_images,
    candidate_images,
    select_threshold: float = 1.1,
    budget: int | None = None,
    *,
    linear_only: bool = False,
    init_threshold: float = selection.DEFAULT_INIT_THRESHOLD,
    engine: str = 'cext',
) -> np.ndarray:
    """``mlp select-add``: indices of the candidates to label with DFT (see
    :func:`selection.select_add`; highest grade first, at most ``budget``)."""
    train_rows = energy_jacobians(mtp_path, species, training_images, linear_only, engine=engine)
    candidate_rows = energy_jacobians(mtp_path, species, candidate_images, linear_only, engine=engine)
    return selection.select_add(
        train_rows,
        candidate_rows,
        select_threshold=select_threshold,
        budget=budget,
        init_threshold=init_threshold,
    )
