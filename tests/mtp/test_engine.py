"""motep-based train / evaluate / Jacobian / grade / select-add (fixtures: fixtures/mtp/SOURCES.md).

One level-06 Cu potential is trained once per module on the first 20 EMT configurations with a
short BFGS run (a few seconds); grading is also checked on the better-converged level-08
potential trained on all 40 configurations.
"""

import copy
import pathlib
import re

import numpy as np
import pytest

motep = pytest.importorskip('motep')

from motep.io.mlip.mtp import read_mtp

from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from aiida_mlcampaign.mtp import engine

MTP = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mtp'
TEMPLATE_06 = MTP / 'motep_template_06.mtp'
TRAIN_CFG = MTP / 'cu_emt_train_40cfg_made-here.cfg'
CANDIDATES_CFG = MTP / 'cu_emt_grade-candidates_12cfg_made-here.cfg'
L08_BFGS = MTP / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
N_TRAIN = 20
IN_DISTRIBUTION, RATTLED, STRAINED = slice(0, 4), slice(4, 8), slice(8, 12)


def _images(path, n=None):
    images = [frame.to_ase() for frame in read_cfg(path, ['Cu'])]
    return images if n is None else images[:n]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('mtp') / 'sub' / 'trained_06.mtp'
    images = _images(TRAIN_CFG, N_TRAIN)
    errors = engine.train(TEMPLATE_06, images, ['Cu'], out, seed=0, max_iter=50, update_mindist=True)
    return out, images, errors


def test_train_writes_mlip2_layout_and_reports_errors(trained):
    out, images, errors = trained
    lines = out.read_text().splitlines()
    keys = [re.split(r'\s*=', line.strip())[0] for line in lines if line.strip()]
    assert lines[0] == 'MTP'
    assert lines[1] == 'version = 1.1.0'
    # mlip-2's strict token order for the header and the radial basis block
    header = [k for k in keys if k in (
        'potential_name', 'scaling', 'species_count', 'potential_tag', 'radial_basis_type', 'min_dist',
        'max_dist', 'radial_basis_size', 'radial_funcs_count', 'radial_coeffs', 'alpha_moments_count',
        'alpha_index_basic_count', 'alpha_index_basic', 'alpha_index_times_count', 'alpha_index_times',
        'alpha_scalar_moments', 'alpha_moment_mapping', 'species_coeffs', 'moment_coeffs')]
    assert header == [
        'potential_name', 'scaling', 'species_count', 'potential_tag', 'radial_basis_type', 'min_dist',
        'max_dist', 'radial_basis_size', 'radial_funcs_count', 'radial_coeffs', 'alpha_moments_count',
        'alpha_index_basic_count', 'alpha_index_basic', 'alpha_index_times_count', 'alpha_index_times',
        'alpha_scalar_moments', 'alpha_moment_mapping', 'species_coeffs', 'moment_coeffs']
    assert keys.index('min_dist') < keys.index('radial_coeffs')
    assert keys.index('radial_funcs_count') < keys.index('radial_coeffs')
    for broken in ('min', 'max', 'size'):  # motep 0.2.0's default writer keys (doc 7.1)
        assert broken not in keys
    assert '0-0' in [line.strip() for line in lines]

    # update_mindist: 0.99 x the shortest distance in the 20 training configurations
    shortest = engine.min_distance_of(images)
    assert 1.9 < shortest < 2.3
    assert errors['min_dist'] == pytest.approx(0.99 * shortest, rel=1e-12)
    pot = read_mtp(out)  # loads again in motep
    assert float(pot.radial_basis.min) == pytest.approx(0.99 * shortest, rel=1e-12)
    assert float(pot.radial_basis.max) == 5.0
    assert pot.radial_coeffs.shape == (1, 1, 2, 8)
    assert pot.moment_coeffs.shape == (5,)

    assert errors['n_configurations'] == N_TRAIN and errors['n_stress'] == N_TRAIN
    assert errors['n_parameters'] == 22
    assert errors['optimizer_iterations'] == [50]
    assert errors['optimizer_converged'] == [False]  # stopped by max_iter
    # 50 BFGS iterations on EMT Cu: ~0.4 meV/atom, ~0.009 eV/Å, ~0.2 GPa; generous bounds
    assert errors['energy_per_atom_rmse'] < 3e-3
    assert errors['forces_rmse'] < 0.03
    assert errors['stress_rmse'] < 1.0
    assert errors['energy_per_atom_mae'] <= errors['energy_per_atom_rmse'] <= errors['energy_per_atom_max']
    assert errors['wall_time'] < 30


def test_train_leaves_no_intermediate_files(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'short.mtp'
    default_before = copy.deepcopy(engine.DEFAULT_STEPS)
    # TOML-style steps: a bare scipy method name becomes method='minimize' with maxiter=max_iter
    steps = [{'method': 'Level2MTP', 'optimized': ['radial_coeffs']},
             {'method': 'LLS', 'optimized': ['species_coeffs', 'moment_coeffs']},
             'BFGS']
    errors = engine.train(TEMPLATE_06, _images(TRAIN_CFG, 6), 'Cu', out, steps=steps, max_iter=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['short.mtp']  # no intermediate_*.mtp
    assert errors['optimizer_iterations'] == [3]
    assert steps[2] == 'BFGS' and engine.DEFAULT_STEPS == default_before  # inputs not modified
    assert float(read_mtp(out).radial_basis.min) == 0.5  # template value kept without update_mindist


def test_evaluate_matches_training_errors_and_writes_predictions(trained, tmp_path):
    out, images, errors = trained
    result = engine.evaluate(out, images, 'Cu', output_cfg_path=tmp_path / 'pred.cfg')
    for key in ('energy_per_atom_rmse', 'energy_per_atom_mae', 'forces_rmse', 'stress_rmse', 'energy_rmse'):
        assert result.errors[key] == pytest.approx(errors[key], rel=1e-9, abs=1e-12)
    assert result.energies.shape == (N_TRAIN,) and result.stresses.shape == (N_TRAIN, 6)
    # energy RMSE recomputed by hand from the arrays
    ref = np.array([a.calc.results['energy'] for a in images])
    natoms = np.array([len(a) for a in images])
    assert result.errors['energy_per_atom_rmse'] == pytest.approx(
        np.sqrt(np.mean(((result.energies - ref) / natoms) ** 2)), rel=1e-12)
    np.testing.assert_array_equal(result.natoms, natoms)

    written = list(read_cfg(tmp_path / 'pred.cfg', ['Cu']))
    assert len(written) == N_TRAIN
    np.testing.assert_allclose([f.energy for f in written], result.energies, rtol=0, atol=1e-12)
    np.testing.assert_allclose(written[3].forces, result.forces[3], atol=1e-12)
    assert written[0].info['EFS_by'] == 'MTP'

    # from a .cfg path (our reader), test set of the remaining configurations: same order of error
    test = engine.evaluate(out, TRAIN_CFG, ['Cu'])
    assert test.errors['n_configurations'] == 40
    assert test.errors['energy_per_atom_rmse'] < 5e-3


def test_energy_jacobian_matches_finite_differences():
    mtp = engine.read_potential(L08_BFGS, ['Cu'])
    atoms = _images(TRAIN_CFG, 1)
    rows = engine.energy_jacobians(L08_BFGS, ['Cu'], atoms)
    assert rows.shape == (1, 26)
    labels = engine.parameter_labels(L08_BFGS, ['Cu'])
    assert labels[0] == 'moment_coeffs[0]' and labels[9] == 'species_coeffs[0]'
    assert labels[10] == 'radial_coeffs[0,0,0,0]' and labels[-1] == 'radial_coeffs[0,0,1,7]'
    natoms = len(atoms[0])
    # species coefficient: dE/de_0 = number of atoms -> divided by it, exactly 1
    assert rows[0, 9] == pytest.approx(1.0, abs=1e-15)

    mtp.optimized = ['species_coeffs', 'moment_coeffs', 'radial_coeffs']
    p0 = np.array(mtp.parameters, dtype=float)

    def energy(parameters):
        trial = copy.deepcopy(mtp)
        trial.parameters = parameters
        trial.optimized = list(mtp.optimized)
        path_free = engine.evaluate(trial, atoms, ['Cu'])
        return path_free.energies[0]

    fd = np.empty_like(p0)
    for k in range(p0.size):
        h = 1e-5 * max(1.0, abs(p0[k]))
        up, down = p0.copy(), p0.copy()
        up[k] += h
        down[k] -= h
        fd[k] = (energy(up) - energy(down)) / (2 * h) / natoms
    np.testing.assert_allclose(rows[0], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())

    linear = engine.energy_jacobians(L08_BFGS, ['Cu'], atoms, linear_only=True)
    assert linear.shape == (1, 10)
    np.testing.assert_allclose(linear[0], rows[0, :10], rtol=1e-12)


def test_grade_fixture_candidates_l08():
    """Level-08 potential, active set from all 40 training configurations (doc section 8 data)."""
    train = _images(TRAIN_CFG)
    gamma = engine.grade(L08_BFGS, ['Cu'], train, CANDIDATES_CFG)
    assert gamma.shape == (12,)
    # measured: in-distribution 0.54 0.90 0.84 1.15; rattled 98 183 51 310; strained 29 12.6 10.0 13.5
    assert gamma[IN_DISTRIBUTION].max() < 2.0
    assert gamma[RATTLED].min() > 20
    assert gamma[STRAINED].min() > 5
    assert gamma[RATTLED].min() > 10 * gamma[IN_DISTRIBUTION].max()

    own = engine.grade(L08_BFGS, ['Cu'], train, train)
    assert own.max() <= 1.0 + 1e-6
    active = engine.build_active_set(L08_BFGS, ['Cu'], train)
    np.testing.assert_allclose(own[active.selected], 1.0, rtol=1e-6)
    # 40 configurations x 26 parameters is rank-deficient (doc 7.4): some regulariser rows stay
    assert active.n_regularisers >= 3

    chosen = engine.select_add(L08_BFGS, ['Cu'], train, CANDIDATES_CFG)
    assert set(chosen.tolist()) >= {4, 5, 6, 7}  # every rattled one
    assert not set(chosen.tolist()) & {0, 1, 2, 3}  # no in-distribution one
    assert len(set(chosen.tolist())) == len(chosen)
    assert gamma[chosen[0]] == gamma[chosen].max()  # highest grade first
    assert engine.select_add(L08_BFGS, ['Cu'], train, CANDIDATES_CFG, budget=2).tolist() == chosen[:2].tolist()


def test_grade_with_quick_potential_and_fewer_configs_than_parameters(trained):
    out, images, _ = trained
    gamma = engine.grade(out, ['Cu'], images, CANDIDATES_CFG)
    # measured: in-distribution 1.9 0.7 1.3 2.8; rattled 5e3-4e4; strained 34-750
    assert gamma[IN_DISTRIBUTION].max() < 5
    assert gamma[RATTLED].min() > 100
    assert np.median(gamma[STRAINED]) > 10
    assert engine.grade(out, ['Cu'], images, images).max() <= 1.0 + 1e-6
    # only 10 configurations for 22 parameters: works thanks to the regulariser
    few = engine.grade(out, ['Cu'], images[:10], images[:10])
    assert few.max() <= 1.0 + 1e-6


def test_grade_does_not_touch_reference_labels(trained):
    out, images, _ = trained
    candidates = _images(CANDIDATES_CFG)
    calcs = [a.calc for a in candidates]
    energies = [a.calc.results['energy'] for a in candidates]
    forces = [a.calc.results['forces'].copy() for a in candidates]
    stresses = [a.calc.results['stress'].copy() for a in candidates]
    positions = [a.positions.copy() for a in candidates]
    engine.grade(out, ['Cu'], images, candidates)
    engine.select_add(out, ['Cu'], images, candidates)
    engine.energy_jacobians(out, ['Cu'], candidates)
    for atoms, calc, e, f, s, r in zip(candidates, calcs, energies, forces, stresses, positions, strict=True):
        assert atoms.calc is calc
        assert atoms.calc.results['energy'] == e
        np.testing.assert_array_equal(atoms.calc.results['forces'], f)
        np.testing.assert_array_equal(atoms.calc.results['stress'], s)
        np.testing.assert_array_equal(atoms.positions, r)
        assert 'MV_grade' not in atoms.calc.results and 'mv_grade' not in atoms.info
    # the file itself is untouched too (reading it again gives the EMT labels)
    again = _images(CANDIDATES_CFG)
    assert [a.calc.results['energy'] for a in again] == energies


def test_species_and_potential_checks(trained):
    out, images, _ = trained
    assert engine.energy_jacobians(out, [29], images[:2]).shape == (2, 22)  # atomic numbers work too
    with pytest.raises(ValueError, match='species'):
        engine.read_potential(out, ['Cu', 'Al'])
    with pytest.raises(ValueError, match='no coefficients'):
        engine.energy_jacobians(TEMPLATE_06, ['Cu'], images[:1])
    with pytest.raises(ValueError, match='species'):
        engine.read_potential(out, ['Xx'])
