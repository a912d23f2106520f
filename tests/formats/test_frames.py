"""Tests of the in-memory ``Frame`` that the format readers and writers share."""

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError, Frame, matrix_to_voigt, voigt_or_matrix_to_matrix


def _frame(positions, cell=None, **kwargs):
    cell = np.array([[3.0, 0.0, 0.0], [0.5, 3.2, 0.0], [0.3, 0.4, 3.5]]) if cell is None else cell
    return Frame(symbols=['Si', 'C', 'Si'], cell=cell, positions=positions, **kwargs)


POSITIONS = np.array([[0.1, 0.2, 0.3], [1.5, 1.6, 1.7], [2.0, 0.4, 3.1]])


def test_structure_hash_invariant_under_lattice_translation():
    frame = _frame(POSITIONS)
    shift = frame.cell[0] - 2 * frame.cell[2]
    moved = POSITIONS.copy()
    moved[1] += shift
    moved[2] -= frame.cell[1]
    assert _frame(moved).structure_hash() == frame.structure_hash()


def test_structure_hash_sees_a_1e_3_angstrom_displacement():
    displaced = POSITIONS.copy()
    displaced[0, 2] += 1e-3
    assert _frame(displaced).structure_hash() != _frame(POSITIONS).structure_hash()


def test_structure_hash_ignores_labels():
    bare = _frame(POSITIONS)
    labelled = _frame(POSITIONS, energy=-1.0, forces=np.ones((3, 3)), weight=2.0, info={'origin': 'x'})
    assert bare.structure_hash() == labelled.structure_hash()


def test_volume_of_a_cube_is_exact():
    # np.linalg.det gives 7.999999999999998 here; the virial -V*stress must not inherit that.
    frame = Frame(symbols=['Cu'], cell=np.eye(3) * 2.0, positions=[[0, 0, 0]])
    assert frame.volume == 8.0


def test_virial_sign_is_minus_volume_times_stress():
    frame = Frame(symbols=['Cu'], cell=np.eye(3) * 2.0, positions=[[0, 0, 0]],
                  stress=[0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    assert np.array_equal(matrix_to_voigt(frame.virial), [-0.8, -1.6, -2.4, -0.08, -0.16, -0.24])


def test_voigt_round_trip():
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    matrix = voigt_or_matrix_to_matrix(voigt)
    assert matrix[1, 2] == 4.0 and matrix[0, 2] == 5.0 and matrix[0, 1] == 6.0
    assert np.array_equal(matrix_to_voigt(matrix), voigt)


@pytest.mark.parametrize('kwargs, field', [
    ({'symbols': ['Xx']}, 'symbols'),
    ({'positions': [[0, 0, 0], [1, 1, 1]]}, 'positions'),
    ({'forces': [[0, 0]]}, 'forces'),
    ({'stress': [1, 2, 3]}, 'stress'),
    ({'weight': 0.0}, 'weight'),
    ({'energy': float('nan')}, 'energy'),
])
def test_frame_validation_names_the_field(kwargs, field):
    arguments = {'symbols': ['Cu'], 'cell': np.eye(3), 'positions': [[0, 0, 0]], **kwargs}
    with pytest.raises(FormatError, match=field):
        Frame(**arguments)


@pytest.mark.parametrize('field', ['positions', 'forces', 'cell', 'stress'])
def test_non_finite_geometry_or_labels_are_refused(field):
    values = {'positions': np.zeros((2, 3)), 'forces': np.zeros((2, 3)), 'cell': np.eye(3) * 3, 'stress': np.zeros(6)}
    values[field] = np.array(values[field], dtype=float)
    values[field].flat[-1] = np.nan
    with pytest.raises(FormatError, match=f'{field}: non-finite value'):
        Frame(symbols=['Cu', 'Cu'], energy=-1.0, **values)
