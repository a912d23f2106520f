"""Harmonic phonon DOS by finite displacements (phonopy) with ASE EMT forces, and DOS overlaps."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlcampaign.analysis import phonons as ph


@pytest.fixture(scope='module')
def copper():
    atoms = bulk('Cu', 'fcc', a=3.61)
    args = (atoms.get_chemical_symbols(), np.array(atoms.cell), atoms.get_scaled_positions())
    dataset, supercells, reference = ph.displaced_supercells(*args, [2, 2, 2])
    forces = ph.calculator_forces(supercells, EMT)
    return args, dataset, supercells, reference, forces


def test_cu_emt_acoustic_modes_vanish_at_gamma_and_dos_integrates_to_3n(copper):
    args, dataset, supercells, reference, forces = copper
    assert json.loads(json.dumps(dataset)) == dataset  # storable in a Dict node as is
    assert dataset['natom'] == 8 and len(dataset['first_atoms']) == 1 and len(supercells) == 1
    assert np.linalg.norm(dataset['first_atoms'][0]['displacement']) == pytest.approx(0.01)
    moved = np.linalg.norm(supercells[0]['positions'] - reference['positions'], axis=1)
    assert np.count_nonzero(moved > 1e-9) == 1
    result = ph.dos_from_forces(*args, dataset, forces, mesh=[10, 10, 10], frequency_pitch_THz=0.02)
    assert np.abs(result['gamma_frequencies_THz']).max() < 1e-3  # three acoustic modes, one atom
    assert result['min_frequency_THz'] > -1e-3  # stable: no imaginary mode anywhere on the mesh
    assert result['integral'] == pytest.approx([3.0], rel=0.01)
    assert np.trapezoid(result['dos_per_THz'], result['frequency_THz']) == pytest.approx(3.0, rel=0.01)
    assert 6.0 < result['max_frequency_THz'] < 9.0  # EMT copper; experiment ~7.3 THz
    assert result['species'] == ['Cu'] and result['force_constants'].shape == (8, 8, 3, 3)


def test_residual_forces_are_subtracted(copper):
    args, dataset, _, _, forces = copper
    plain = ph.dos_from_forces(*args, dataset, forces, mesh=[4, 4, 4])
    offset = np.random.default_rng(0).normal(scale=0.05, size=(8, 3))
    shifted = ph.dos_from_forces(*args, dataset, forces + offset, mesh=[4, 4, 4], reference_forces=offset)
    assert np.allclose(plain['dos_per_THz'], shifted['dos_per_THz'])
    with pytest.raises(ValueError, match=r'forces: expected shape \(1, 8, 3\)'):
        ph.dos_from_forces(*args, dataset, forces[:, :4], mesh=[4, 4, 4])
    with pytest.raises(ValueError, match='forces: NaN'):
        ph.dos_from_forces(*args, dataset, forces * np.nan, mesh=[4, 4, 4])


def test_two_species_partial_dos_and_mesh_by_length():
    atoms = bulk('NaCl', 'rocksalt', a=5.64)
    args = (atoms.get_chemical_symbols(), np.array(atoms.cell), atoms.get_scaled_positions())
    dataset, supercells, _ = ph.displaced_supercells(*args, [[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    assert dataset['natom'] == 8 and len(supercells) == 2  # one displacement per inequivalent atom
    forces = ph.calculator_forces(supercells, lambda: _Pair())
    result = ph.dos_from_forces(*args, dataset, forces, mesh=15.0, frequency_pitch_THz=0.02)
    assert result['species'] == ['Na', 'Cl'] and list(result['num_atoms']) == [1, 1]
    assert result['mesh'] == [round(15.0 * b) for b in np.linalg.norm(np.linalg.inv(atoms.cell).T, axis=1)]
    assert result['integral'] == pytest.approx([3.0, 3.0], rel=0.02)


class _Pair:
    """A stand-in force field for NaCl: nearest-neighbour Lennard-Jones pairs (ASE's LJ, cut at 4.5 Å)."""

    def __new__(cls):
        from ase.calculators.lj import LennardJones

        return LennardJones(sigma=2.5, epsilon=0.1, rc=4.5, smooth=True)


@pytest.mark.parametrize('value, message', [
    ([2, 2], 'expected 3 diagonal entries'),
    ([2, 2, 0], 'determinant must be >= 1'),
    ([2, 2, 1.5], 'entries must be integers'),
])
def test_supercell_matrix_is_checked(value, message):
    with pytest.raises(ValueError, match=f'supercell_matrix: {message}'):
        ph.supercell_matrix_3x3(value)


def test_overlap_of_identical_shifted_and_disjoint_dos():
    nu = np.linspace(0, 10, 501)

    def gauss(centre):
        return np.exp(-((nu - centre) ** 2) / 0.5)

    grid, normalised = ph.normalised_on_grid({'a': (nu, 3 * gauss(4)), 'b': (nu, gauss(4)), 'c': (nu, gauss(4.5)),
                                              'd': (nu[:200], gauss(0.5)[:200])})
    labels, matrix, mean = ph.dos_overlap(grid, normalised)
    assert labels == ['a', 'b', 'c', 'd']
    assert matrix[0, 1] == pytest.approx(1.0, abs=1e-6)  # same shape, different area
    assert 0.4 < matrix[0, 2] < 0.9 and matrix[0, 3] < 1e-3
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert mean[:3] == pytest.approx([4.0, 4.0, 4.5], abs=1e-3)
    png = ph.plot_dos_comparison(grid, normalised, labels, matrix, title='test')
    assert png.startswith(b'\x89PNG')
    with pytest.raises(ValueError, match='dos.z: the DOS has no positive weight'):
        ph.normalised_on_grid({'z': (nu, -gauss(3))})
