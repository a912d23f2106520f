"""Tests for the pure structure-variant helpers."""

import math

import numpy as np
import pytest

from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry import get_distances

from aiida_mlcampaign.structures.argyrodite import build_argyrodite
from aiida_mlcampaign.structures.variants import (
    check_structure,
    closest_pair,
    minimum_distance,
    nearest_neighbour_distances,
    random_strains,
    rattle,
    species_rattle_amplitudes,
    strain,
    strain_matrix,
    supercell,
)


@pytest.fixture(scope='module')
def cu7ps6():
    return build_argyrodite()


# ------------------------------------------------------------------------------------------------ rattle


def test_rattle_deterministic_and_new_array(cu7ps6):
    original = cu7ps6.positions.copy()
    a = rattle(cu7ps6, 0.05, seed=1)
    b = rattle(cu7ps6, 0.05, seed=1)
    c = rattle(cu7ps6, 0.05, seed=2)
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)
    assert np.array_equal(cu7ps6.positions, original)
    assert a.positions is not cu7ps6.positions
    assert np.array_equal(a.cell.array, cu7ps6.cell.array)
    assert a.get_chemical_symbols() == cu7ps6.get_chemical_symbols()


def test_rattle_statistics():
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((8, 8, 8))  # 2048 atoms
    stdev = 0.1
    disp = rattle(atoms, stdev, seed=7).positions - atoms.positions
    assert disp.mean() == pytest.approx(0.0, abs=4 * stdev / math.sqrt(disp.size))
    assert disp.std() == pytest.approx(stdev, rel=0.03)
    expected_mean_length = stdev * math.sqrt(8 / math.pi)
    assert np.linalg.norm(disp, axis=1).mean() == pytest.approx(expected_mean_length, rel=0.03)


def test_rattle_zero_and_invalid(cu7ps6):
    assert np.array_equal(rattle(cu7ps6, 0.0, seed=0).positions, cu7ps6.positions)
    with pytest.raises(ValueError, match='^stdev'):
        rattle(cu7ps6, -0.01, seed=0)
    with pytest.raises(ValueError, match='^stdev'):
        rattle(cu7ps6, float('inf'), seed=0)
    with pytest.raises(ValueError, match='^seed'):
        rattle(cu7ps6, 0.01, seed=-3)
    with pytest.raises(ValueError, match='^seed'):
        rattle(cu7ps6, 0.01, seed=1.5)


def test_rattle_per_atom_stdev(cu7ps6):
    n = len(cu7ps6)
    # A per-atom array of one value draws the very same numbers as the scalar.
    assert np.array_equal(rattle(cu7ps6, np.full(n, 0.05), seed=4).positions, rattle(cu7ps6, 0.05, seed=4).positions)
    unit = rattle(cu7ps6, 1.0, seed=4).positions - cu7ps6.positions
    stdev = np.where(np.array(cu7ps6.get_chemical_symbols()) == 'P', 0.0, 0.07)
    stdev[0] = 0.2
    disp = rattle(cu7ps6, list(stdev), seed=4).positions - cu7ps6.positions
    assert np.allclose(disp, unit * stdev[:, None], rtol=0, atol=1e-12)
    assert np.all(disp[stdev == 0] == 0)


@pytest.mark.parametrize('bad', [[0.1, 0.1], np.full((56, 3), 0.1), np.r_[np.full(55, 0.1), -0.1],
                                 np.r_[np.full(55, 0.1), np.nan], ['a'] * 56])
def test_rattle_per_atom_invalid(cu7ps6, bad):
    with pytest.raises(ValueError, match='^stdev'):
        rattle(cu7ps6, bad, seed=0)


def test_nearest_neighbour_distances(cu7ps6):
    nearest = nearest_neighbour_distances(cu7ps6)
    _, dist = get_distances(cu7ps6.positions, cell=cu7ps6.cell, pbc=True)
    np.fill_diagonal(dist, np.inf)
    assert np.allclose(nearest, dist.min(axis=1))
    # Own periodic images count; a lone atom of a molecule has no neighbour.
    assert nearest_neighbour_distances(bulk('Cu', 'fcc', a=3.61)) == pytest.approx([3.61 / math.sqrt(2)])
    assert nearest_neighbour_distances(Atoms('Cu', positions=[[0, 0, 0]])).tolist() == [math.inf]
    assert nearest_neighbour_distances(Atoms('Cu2', positions=[[0, 0, 0], [0, 0, 12.0]])) == pytest.approx([12, 12])


def test_species_rattle_amplitudes(cu7ps6):
    # Cu7PS6 (a = 9.65 Å): P-S 2.006 Å, Cu-S 2.220 Å.
    assert species_rattle_amplitudes(cu7ps6, 0.05) == pytest.approx({'Cu': 0.05, 'P': 0.05, 'S': 0.05})
    wide = species_rattle_amplitudes(cu7ps6, 0.2)
    assert wide == pytest.approx({'Cu': 0.035 * 2.220, 'P': 0.035 * 2.006, 'S': 0.035 * 2.006}, abs=1e-4)
    assert list(wide) == ['Cu', 'P', 'S']
    assert species_rattle_amplitudes(cu7ps6, 0.2, {'Cu': 0.3}, bond_fraction=0.02) == pytest.approx(
        {'Cu': 0.3, 'P': 0.02 * 2.006, 'S': 0.02 * 2.006}, abs=1e-4)
    assert species_rattle_amplitudes(Atoms('Cu', positions=[[0, 0, 0]]), 0.1) == {'Cu': 0.1}


def test_species_rattle_amplitudes_keep_bonds_physical(cu7ps6):
    """One 0.1 Å amplitude shortens P-S to ~1.6 Å in a few copies; the per-species one keeps it above 1.7 Å."""
    symbols = np.array(cu7ps6.get_chemical_symbols())
    amplitudes = species_rattle_amplitudes(cu7ps6, 0.1)
    per_atom = np.array([amplitudes[s] for s in symbols])
    p, s = np.flatnonzero(symbols == 'P'), np.flatnonzero(symbols == 'S')

    def shortest_ps(stdev):
        values = []
        for seed in range(40):
            atoms = rattle(cu7ps6, stdev, seed)
            _, dist = get_distances(atoms.positions[p], atoms.positions[s], cell=atoms.cell, pbc=True)
            values.append(dist.min())
        return min(values)

    assert shortest_ps(per_atom) > 1.7
    assert shortest_ps(0.1) < shortest_ps(per_atom)


@pytest.mark.parametrize(('kwargs', 'field'), [
    ({'amplitude': -0.1}, 'amplitude'),
    ({'amplitude': float('nan')}, 'amplitude'),
    ({'bond_fraction': 0.0}, 'bond_fraction'),
    ({'per_species': {'Li': 0.1}}, 'per_species.Li'),
    ({'per_species': {'P': 0.0}}, 'per_species.P'),
    ({'per_species': {'P': -0.1}}, 'per_species.P'),
    ({'per_species': {'P': 'a'}}, 'per_species.P'),
    ({'per_species': [('P', 0.1)]}, 'per_species'),
])
def test_species_rattle_amplitudes_invalid(cu7ps6, kwargs, field):
    kwargs = {'amplitude': 0.05, **kwargs}
    with pytest.raises(ValueError, match=f'^{field}'):
        species_rattle_amplitudes(cu7ps6, **kwargs)


# ------------------------------------------------------------------------------------------------ strain


def test_strain_volume_matrix(cu7ps6):
    eps = np.array([[0.02, 0.01, -0.005], [0.01, -0.01, 0.003], [-0.005, 0.003, 0.015]])
    new = strain(cu7ps6, eps)
    assert new.get_volume() / cu7ps6.get_volume() == pytest.approx(np.linalg.det(np.eye(3) + eps), rel=1e-12)
    assert np.allclose(new.get_scaled_positions(), cu7ps6.get_scaled_positions())
    assert np.allclose(new.cell.array, cu7ps6.cell.array @ (np.eye(3) + eps).T)
    assert np.allclose(cu7ps6.cell.array, np.eye(3) * 9.65)  # input untouched


def test_strain_voigt_engineering_shear():
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)
    voigt = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    eps = strain_matrix(voigt)
    assert np.allclose(eps, [[0.01, 0.03, 0.025], [0.03, 0.02, 0.02], [0.025, 0.02, 0.03]])
    new = strain(atoms, voigt)
    assert new.get_volume() / atoms.get_volume() == pytest.approx(np.linalg.det(np.eye(3) + eps))


def test_strain_scalar_needs_seed():
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)
    with pytest.raises(ValueError, match='^seed'):
        strain(atoms, 0.02)
    a = strain(atoms, 0.02, seed=5)
    b = strain(atoms, 0.02, seed=5)
    assert np.array_equal(a.cell.array, b.cell.array)
    eps = random_strains(1, 0.02, 5)[0]
    assert np.allclose(a.cell.array, atoms.cell.array @ (np.eye(3) + eps).T)


@pytest.mark.parametrize(
    'bad', [[0.1, 0.2], [[0, 0], [0, 0]], 'abc', [[-1, 0, 0], [0, 0, 0], [0, 0, 0]], [0, 0, float('nan'), 0, 0, 0]]
)
def test_strain_invalid(bad):
    with pytest.raises(ValueError, match='^strain'):
        strain(bulk('Cu'), bad)


def test_random_strains():
    s = random_strains(50, 0.03, seed=11)
    assert s.shape == (50, 3, 3)
    assert np.allclose(s, s.transpose(0, 2, 1))
    assert np.abs(s).max() <= 0.03
    assert np.abs(s).max() > 0.02
    assert np.array_equal(s, random_strains(50, 0.03, seed=11))
    assert not np.allclose(s, random_strains(50, 0.03, seed=12))
    assert random_strains(0, 0.03, seed=1).shape == (0, 3, 3)
    with pytest.raises(ValueError, match='^max_strain'):
        random_strains(3, -0.1, seed=1)
    with pytest.raises(ValueError, match='^max_strain'):
        random_strains(3, 0.7, seed=1)
    with pytest.raises(ValueError, match='^n'):
        random_strains(-1, 0.1, seed=1)


# ------------------------------------------------------------------------------------------------ supercell


@pytest.mark.parametrize(
    ('matrix', 'factor'),
    [(2, 8), ((1, 2, 3), 6), ([[1, 1, 0], [-1, 1, 0], [0, 0, 1]], 2), ([[0, 1, 1], [1, 0, 1], [1, 1, 0]], 2)],
)
def test_supercell_counts(cu7ps6, matrix, factor):
    new = supercell(cu7ps6, matrix)
    assert len(new) == factor * 56
    assert new.get_volume() == pytest.approx(factor * cu7ps6.get_volume())
    assert new.get_chemical_formula() == f'Cu{28 * factor}P{4 * factor}S{24 * factor}'
    assert minimum_distance(new) == pytest.approx(minimum_distance(cu7ps6))


@pytest.mark.parametrize('bad', [0, (1, 0, 1), [[1, 0, 0], [0, 1, 0], [0, 0, -1]], (1.5, 1, 1), [[1, 2], [3, 4]], 'x'])
def test_supercell_invalid(bad):
    with pytest.raises(ValueError, match='^matrix'):
        supercell(bulk('Cu'), bad)


# ------------------------------------------------------------------------------------------------ distances


def test_minimum_distance_matches_brute_force_triclinic():
    rng = np.random.default_rng(3)
    cell = np.array([[4.0, 0.0, 0.0], [3.1, 2.5, 0.0], [1.2, 1.7, 3.3]])  # strongly sheared
    atoms = Atoms('Si5', scaled_positions=rng.random((5, 3)), cell=cell, pbc=True)
    # Brute force over many images.
    shifts = np.array([[i, j, k] for i in range(-3, 4) for j in range(-3, 4) for k in range(-3, 4)]) @ cell
    best = math.inf
    for a in range(5):
        for b in range(5):
            d = np.linalg.norm(atoms.positions[b] + shifts - atoms.positions[a], axis=1)
            if a == b:
                d = d[d > 1e-12]
            best = min(best, d.min())
    assert minimum_distance(atoms) == pytest.approx(best)
    # ase.geometry.get_distances (minimum image) agrees for distinct pairs.
    _, dist = get_distances(atoms.positions, cell=cell, pbc=True)
    np.fill_diagonal(dist, np.inf)
    assert minimum_distance(atoms) <= dist.min() + 1e-12


def test_minimum_distance_self_image_and_molecule():
    assert minimum_distance(bulk('Cu', 'fcc', a=3.6)) == pytest.approx(3.6 / math.sqrt(2))
    sc = Atoms('Po', positions=[[0, 0, 0]], cell=np.eye(3) * 3.3, pbc=True)
    assert closest_pair(sc) == (pytest.approx(3.3), 0, 0)
    assert minimum_distance(molecule('H2O')) == pytest.approx(0.9686, abs=1e-3)
    assert minimum_distance(Atoms('H', positions=[[0, 0, 0]])) == math.inf


def test_check_structure_accepts(cu7ps6):
    assert check_structure(cu7ps6) == pytest.approx(2.006, abs=1e-3)  # P-S


def test_check_structure_too_close(cu7ps6):
    atoms = cu7ps6.copy()
    atoms.positions[7] = atoms.positions[3] + [0.31, 0.0, 0.0]
    with pytest.raises(ValueError, match=r'^structure: atoms 3 and 7 are 0\.31 Å apart \(< 0\.5 Å\)$'):
        check_structure(atoms, min_distance=0.5)
    with pytest.raises(ValueError, match=r'^frames\[2\]: atoms 3 and 7'):
        check_structure(atoms, field='frames[2]')


def test_check_structure_wraps_periodic_images():
    atoms = Atoms('Cu2', positions=[[0.1, 0, 0], [9.9, 0, 0]], cell=np.eye(3) * 10, pbc=True)
    with pytest.raises(ValueError, match='atoms 0 and 1 are 0.20 Å apart'):
        check_structure(atoms)
    atoms.pbc = False
    assert check_structure(atoms) == pytest.approx(9.8)


def test_check_structure_self_image():
    atoms = Atoms('Cu', positions=[[0, 0, 0]], cell=np.eye(3) * 0.4, pbc=True)
    with pytest.raises(ValueError, match='atom 0 is 0.40 Å from its own periodic image'):
        check_structure(atoms)


def test_check_structure_rejects_unknown_elements():
    atoms = Atoms('X2', positions=[[0, 0, 0], [2, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(ValueError, match='^structure: atom 0 has an unknown element'):
        check_structure(atoms)
    with pytest.raises(ValueError, match='^structure: contains no atoms'):
        check_structure(Atoms())
    with pytest.raises(ValueError, match='^structure: expected an ase.Atoms'):
        check_structure('Cu')
    flat = Atoms('Cu2', positions=[[0, 0, 0], [1, 1, 1]], cell=[[1, 0, 0], [0, 1, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(ValueError, match='^structure: the cell is degenerate'):
        check_structure(flat)
    with pytest.raises(ValueError, match='^min_distance'):
        check_structure(bulk('Cu'), min_distance=-1)
