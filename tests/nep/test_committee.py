"""Committee force deviation and trust-window selection, checked on cases computed by hand."""

import math

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.nep import committee as cm

SPECIES = ['Te', 'Pb']


# -------------------------------------------------------------------------------- deviation


def test_force_deviation_by_hand():
    # 2 models, 2 atoms: atom 0 gets +-1 eV/Å along x (mean 0, |dF|^2 = 1 each), atom 1 agrees
    forces = np.array([[[1.0, 0, 0], [0.5, 0.5, 0]], [[-1.0, 0, 0], [0.5, 0.5, 0]]])
    np.testing.assert_allclose(cm.per_atom_force_deviation(forces), [1.0, 0.0])
    assert cm.max_force_deviation(forces) == pytest.approx(1.0)
    # 3 models on one atom: x = 0, 3, 0 (mean 1, squared deviations 1, 4, 1) and y = 0, 0, 3 likewise
    forces = np.array([[[0.0, 0, 0]], [[3.0, 0, 0]], [[0.0, 3, 0]]])
    # sqrt(mean_k |F_k - <F>|^2) = sqrt((1+1 + 4+1 + 1+4) / 3) = sqrt(4) = 2
    assert cm.max_force_deviation(forces) == pytest.approx(2.0)
    # = sqrt of the summed population variances of the components (DP-GEN's max_devi_f)
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(4, 5, 3))
    expected = np.sqrt(np.var(forces, axis=0).sum(axis=1)).max()
    assert cm.max_force_deviation(forces) == pytest.approx(expected)


def test_force_deviation_edge_cases():
    forces = np.zeros((2, 3, 3))
    forces[1, 2, 0] = np.nan
    assert math.isnan(cm.max_force_deviation(forces))
    assert cm.max_force_deviation(np.zeros((2, 0, 3))) == 0.0
    with pytest.raises(ValueError, match='forces: a committee needs at least 2 models'):
        cm.max_force_deviation(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r'forces: expected shape \(n_models, natoms, 3\)'):
        cm.max_force_deviation(np.zeros((2, 6)))


# -------------------------------------------------------------------------------- selection


DEVIATIONS = [0.05, 0.30, 0.25, 0.60, 0.28, 0.20, 0.10, np.nan]
LOWER, UPPER = 0.1, 0.5


def test_window_without_descriptors_takes_the_largest_spread():
    # window [0.1, 0.5): frames 1 (0.30), 4 (0.28), 2 (0.25), 5 (0.20), 6 (0.10, lower bound included)
    choice = cm.select_in_trust_window(DEVIATIONS, LOWER, UPPER, budget=3)
    assert choice.indices == [1, 4, 2]
    assert choice.counts == {'below': 1, 'in_window': 5, 'above': 2, 'not_finite': 1, 'near_duplicates': 0,
                             'over_budget': 2, 'selected': 3}
    assert 'highest deviation' in choice.reasons[0]
    assert 'below the window' in choice.rejected[0]
    assert 'at or above the window' in choice.rejected[3]  # 0.60 >= upper: never taken
    assert 'not finite' in choice.rejected[7]
    assert 'budget of 3' in choice.rejected[5] and 'budget of 3' in choice.rejected[6]
    # a large budget takes the whole window, never frame 3
    assert cm.select_in_trust_window(DEVIATIONS, LOWER, UPPER, budget=10).indices == [1, 4, 2, 5, 6]
    # the upper bound is excluded: a frame exactly at 0.5 is above the window
    assert cm.select_in_trust_window([0.5, 0.2], LOWER, UPPER, budget=2).indices == [1]


def test_farthest_point_selection_skips_duplicates():
    # 1-D descriptors: frame 4 is a near-copy of frame 1 (0.01 away); frames 2, 5, 6 lie at 1, 3, 2.9
    descriptors = np.array([[9.0], [0.0], [1.0], [50.0], [0.01], [3.0], [2.9], [7.0]])
    choice = cm.select_in_trust_window(DEVIATIONS, LOWER, UPPER, budget=3, descriptors=descriptors,
                                       min_separation=0.05)
    # seed: frame 1 (largest deviation in the window); then the farthest from {1}: frame 5 (3.0);
    # then distances to {1, 5}: frame 2 -> 1.0, frame 6 -> 0.1, frame 4 -> 0.01: frame 2
    assert choice.indices == [1, 5, 2]
    assert 'descriptor distance 3 to frame 1' in choice.reasons[1]
    assert 'near-duplicate of chosen frame 1' in choice.rejected[4]
    assert 'budget of 3' in choice.rejected[6]
    assert choice.counts['near_duplicates'] == 1 and choice.counts['over_budget'] == 1
    assert 3 not in choice.indices  # above the window, however far away

    # with a large budget the near-duplicate is still skipped, and frame 6 (0.1 from frame 5) is too
    # once min_separation covers it
    choice = cm.select_in_trust_window(DEVIATIONS, LOWER, UPPER, budget=10, descriptors=descriptors,
                                       min_separation=0.2)
    assert choice.indices == [1, 5, 2]
    assert 'near-duplicate of chosen frame 5' in choice.rejected[6]
    # exact duplicates are skipped even with min_separation 0; ties in distance go to the larger deviation
    descriptors = np.array([[0.0], [0.0], [1.0], [0.0], [0.0], [-1.0], [0.0], [0.0]])
    choice = cm.select_in_trust_window(DEVIATIONS, LOWER, UPPER, budget=10, descriptors=descriptors,
                                       min_separation=0.0)
    assert choice.indices == [1, 2, 5]
    assert {i for i, reason in choice.rejected.items() if 'near-duplicate' in reason} == {4, 6}


def test_selection_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r'upper: must be > lower \(0.5\)'):
        cm.select_in_trust_window(DEVIATIONS, 0.5, 0.5, 2)
    with pytest.raises(ValueError, match='lower: must be >= 0'):
        cm.select_in_trust_window(DEVIATIONS, -0.1, 0.5, 2)
    with pytest.raises(ValueError, match='budget: must be an integer >= 1'):
        cm.select_in_trust_window(DEVIATIONS, 0.1, 0.5, 0)
    with pytest.raises(ValueError, match=r'descriptors: expected shape \(8, dim\)'):
        cm.select_in_trust_window(DEVIATIONS, 0.1, 0.5, 2, descriptors=np.zeros((3, 2)))
    with pytest.raises(ValueError, match='min_separation: must be >= 0'):
        cm.select_in_trust_window(DEVIATIONS, 0.1, 0.5, 2, min_separation=-1)
    assert cm.select_in_trust_window([], 0.1, 0.5, 2).indices == []


# -------------------------------------------------------------------------------- descriptor


def _frame(atoms) -> Frame:
    return Frame.from_ase(atoms)


def _rattled(amplitude, seed):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=True)
    atoms.rattle(amplitude, seed=seed)
    return atoms


def test_descriptor_sees_structure_not_cell_size():
    base = bulk('PbTe', 'rocksalt', a=6.46, cubic=True)
    descriptors = cm.structure_descriptors([_frame(base), _frame(base.repeat(2)), _frame(_rattled(0.01, 1)),
                                            _frame(_rattled(0.01, 2)), _frame(_rattled(0.05, 3))], SPECIES)
    assert descriptors.shape[0] == 5 and np.isfinite(descriptors).all()
    distance = cm.descriptor_distances(descriptors, 0)
    assert distance[1] == pytest.approx(0.0, abs=1e-10)  # a supercell is the same structure
    # the default min_separation sits between 0.01 Å and 0.05 Å rattles (calibration in committee.py)
    assert cm.descriptor_distances(descriptors, 2)[3] < cm.DEFAULT_MIN_SEPARATION
    assert cm.descriptor_distances(descriptors, 2)[4] > 3 * cm.DEFAULT_MIN_SEPARATION
    # the Te-Pb block differs from the Te-Te one: the species pairs are kept apart
    ordered = cm.structure_descriptor(base.get_chemical_symbols(), base.cell, base.positions, base.pbc, SPECIES)
    swapped = base.copy()
    swapped.symbols[[0, 1]] = swapped.symbols[[1, 0]]
    other = cm.structure_descriptor(swapped.get_chemical_symbols(), swapped.cell, swapped.positions, swapped.pbc,
                                    SPECIES)
    assert np.linalg.norm(ordered - other) > 1.0
    with pytest.raises(ValueError, match=r"symbols: \['Cu'\] are not in the species"):
        cm.structure_descriptor(['Cu'], np.eye(3) * 3, [[0, 0, 0]], True, SPECIES)
