"""Error metrics and parity data on hand-built frame sets whose errors are known exactly."""

import numpy as np
import pytest

from aiida_mlcampaign.analysis import errors

A = 4.0  # cubic cell edge (Å), V = 64 Å^3


def reference_set():
    """Two frames (Cu S, then Cu Cu S) in the TrainingSetData array layout."""
    rng = np.random.default_rng(7)
    natoms = np.array([2, 3])
    return {
        'species': ['Cu', 'S'],
        'natoms': natoms,
        'cells': np.array([np.eye(3) * A, np.eye(3) * A]),
        'pbc': np.ones((2, 3), dtype=bool),
        'energies': np.array([-10.0, -14.0]),
        'stresses': np.array([np.diag([0.01, 0.02, 0.03]), np.zeros((3, 3))]),
        'species_index': np.array([0, 1, 0, 0, 1]),
        'positions': rng.uniform(0.5, 3.5, (5, 3)),
        'forces': rng.normal(0, 1, (5, 3)),
    }


def predicted(reference, energy_shift_per_atom=0.002, cu_force=0.01, s_force=-0.03, stress_shift=None):
    """Labels shifted by known amounts: energy +2 meV/atom, Cu forces +10 meV/Å, S forces -30 meV/Å."""
    prediction = {key: np.array(value, copy=True) if not isinstance(value, list) else list(value)
                  for key, value in reference.items()}
    prediction['energies'] = reference['energies'] + energy_shift_per_atom * reference['natoms']
    shift = np.where(np.asarray(reference['species_index']) == 0, cu_force, s_force)
    prediction['forces'] = reference['forces'] + shift[:, None]
    if stress_shift is not None:
        prediction['stresses'] = reference['stresses'] + stress_shift
    return prediction


def test_known_errors():
    reference = reference_set()
    # stress shift -0.001 eV/Å^3 on xx of frame 0 only → virial xx shift +0.064 eV → 32 meV/atom (2 atoms)
    stress_shift = np.zeros((2, 3, 3))
    stress_shift[0, 0, 0] = -0.001
    metrics = errors.error_metrics(reference, predicted(reference, stress_shift=stress_shift), 'mtp')
    assert metrics['energy_rmse_meV_per_atom'] == pytest.approx(2.0)
    assert metrics['energy_mae_meV_per_atom'] == pytest.approx(2.0)
    # 3 Cu atoms × 3 components at 10 meV/Å, 2 S atoms × 3 at 30 meV/Å
    assert metrics['force_rmse_meV_per_A'] == pytest.approx(np.sqrt((9 * 10**2 + 6 * 30**2) / 15))
    assert metrics['force_mae_meV_per_A'] == pytest.approx((9 * 10 + 6 * 30) / 15)
    assert metrics['force_max_meV_per_A'] == pytest.approx(30.0)
    assert metrics['force_rmse_by_element_meV_per_A'] == pytest.approx({'Cu': 10.0, 'S': 30.0})
    # 12 virial components (6 per frame), one of them off by 32 meV/atom
    assert metrics['virial_rmse_meV_per_atom'] == pytest.approx(np.sqrt(32.0**2 / 12))
    assert metrics['virial_max_meV_per_atom'] == pytest.approx(32.0)
    assert (metrics['n_frames'], metrics['n_energy'], metrics['n_force_atoms'], metrics['n_virial']) == (2, 2, 5, 2)


def test_missing_labels_are_left_out_and_counted():
    reference = reference_set()
    reference['energies'][1] = np.nan
    reference['stresses'][:] = np.nan
    prediction = predicted(reference)
    prediction['forces'][2:] = np.nan  # the model gave no forces for frame 1
    metrics = errors.error_metrics(reference, prediction, 'nep')
    assert metrics['n_energy'] == 1 and metrics['n_force_atoms'] == 2 and metrics['n_virial'] == 0
    assert metrics['virial_rmse_meV_per_atom'] is None
    assert metrics['force_rmse_by_element_meV_per_A'] == pytest.approx({'Cu': 10.0, 'S': 30.0})


def test_wrapped_positions_and_other_species_order_are_the_same_frames():
    reference = reference_set()
    prediction = predicted(reference)
    prediction['positions'][0] += [A, 0.0, -A]                 # wrapped differently
    prediction['species'] = ['S', 'Cu']                         # another species order, same elements
    prediction['species_index'] = 1 - reference['species_index']
    errors.check_same_frames(reference, prediction, 'nep')


@pytest.mark.parametrize('change, message', [
    (lambda p: p.update(natoms=np.array([2, 2]), species_index=p['species_index'][:4],
                        positions=p['positions'][:4], forces=p['forces'][:4]), 'frame 1 has 2 atoms'),
    (lambda p: p['positions'].__setitem__((3, 0), p['positions'][3, 0] + 0.1), 'frame 1 atom 1 is 0.1 Å away'),
    (lambda p: p['species_index'].__setitem__(0, 1), 'frame 0 atom 0 is S'),
    (lambda p: p['cells'].__setitem__((1, 2, 2), 4.5), 'frame 1 has a different cell'),
    (lambda p: p.update({key: p[key][:1] for key in ('natoms', 'cells', 'pbc', 'energies', 'stresses')}),
     '1 frames, the reference has 2'),
])
def test_mismatched_frames_are_refused_naming_the_model(change, message):
    reference = reference_set()
    prediction = predicted(reference)
    change(prediction)
    with pytest.raises(ValueError, match=f'^my_mtp: {message}'):
        errors.error_metrics(reference, prediction, 'my_mtp')


def test_parity_arrays_and_figure():
    reference = reference_set()
    predictions = {'mtp': predicted(reference), 'nep': predicted(reference, 0.001, 0.0, 0.0)}
    parity = errors.parity_arrays(reference, predictions)
    np.testing.assert_allclose(parity['energy_reference_eV_per_atom'], [-5.0, -14.0 / 3])
    np.testing.assert_allclose(parity['energy_mtp_eV_per_atom'] - parity['energy_reference_eV_per_atom'], 0.002)
    assert parity['force_nep_eV_per_A'].shape == (5, 3)
    # virial = -V·stress / natoms: frame 0 xx = -64·0.01/2 eV/atom
    assert parity['virial_reference_eV_per_atom'][0, 0] == pytest.approx(-0.32)
    metrics = {model: errors.error_metrics(reference, p, model) for model, p in predictions.items()}
    png = errors.parity_figure(parity, ['mtp', 'nep'], metrics)
    assert png.startswith(b'\x89PNG') and len(png) > 1000
