"""Tests for the ordered argyrodite model (pure ASE/numpy)."""

from collections import Counter

import numpy as np
import pytest

from ase.neighborlist import neighbor_list

from aiida_mlcampaign.structures.argyrodite import (
    MOBILE_SITES,
    build_argyrodite,
    check_pair_distances,
    pair_minimum_distances,
    pair_threshold,
    select_mobile_sites,
)

# Minimum distances (Å) per pair of the default Cu7PS6 model (a = 9.65 Å), as documented in the module.
EXPECTED_MINIMA = {
    ('Cu', 'Cu'): 2.787,
    ('Cu', 'P'): 3.417,
    ('Cu', 'S'): 2.220,
    ('P', 'P'): 6.824,
    ('P', 'S'): 2.006,
    ('S', 'S'): 3.275,
}


@pytest.fixture(scope='module')
def cu7ps6():
    return build_argyrodite()


def test_composition_and_cell(cu7ps6):
    assert len(cu7ps6) == 56
    assert cu7ps6.get_chemical_formula() == 'Cu28P4S24'
    assert Counter(cu7ps6.get_chemical_symbols()) == {'Cu': 28, 'P': 4, 'S': 24}
    assert np.allclose(cu7ps6.cell.array, np.eye(3) * 9.65)
    assert cu7ps6.pbc.all()


def test_wyckoff_sites(cu7ps6):
    sites = cu7ps6.arrays['wyckoff']
    symbols = np.array(cu7ps6.get_chemical_symbols())
    assert Counter(sites[symbols == 'P'].tolist()) == {'4b': 4}
    assert Counter(sites[symbols == 'S'].tolist()) == {'16e': 16, '4a': 4, '4c': 4}
    assert Counter(sites[symbols == 'Cu'].tolist()) == {'24g': 12, '48h': 12, '16e': 4}
    frac = cu7ps6.get_scaled_positions()
    assert any(np.allclose(p, [0.5, 0.5, 0.5]) for p in frac[symbols == 'P'])
    assert any(np.allclose(p, [0.62, 0.62, 0.62]) for p in frac[symbols == 'S'])
    assert any(np.allclose(p, [0.0, 0.0, 0.0]) for p in frac[symbols == 'S'])
    assert any(np.allclose(p, [0.25, 0.25, 0.25]) for p in frac[symbols == 'S'])


def test_minimum_distances_per_pair(cu7ps6):
    minima = pair_minimum_distances(cu7ps6)
    assert set(minima) == set(EXPECTED_MINIMA)
    for pair, expected in EXPECTED_MINIMA.items():
        assert minima[pair] == pytest.approx(expected, abs=2e-3), pair
        assert minima[pair] >= max(1.8, pair_threshold(*pair))
    assert check_pair_distances(cu7ps6) == minima


def test_ps4_tetrahedra(cu7ps6):
    i, j, d = neighbor_list('ijd', cu7ps6, 2.6)
    symbols = np.array(cu7ps6.get_chemical_symbols())
    for p in np.flatnonzero(symbols == 'P'):
        mask = i == p
        assert sorted(symbols[j[mask]].tolist()) == ['S'] * 4
        assert np.all((d[mask] > 2.0) & (d[mask] < 2.1))


def test_cu_coordination(cu7ps6):
    """Every Cu has 3 (24g) or 4 (48h, 16e) S within 2.5 Å, and every free S has Cu neighbours."""
    i, j, d = neighbor_list('ijd', cu7ps6, 2.5)
    symbols = np.array(cu7ps6.get_chemical_symbols())
    sites = cu7ps6.arrays['wyckoff']
    for k in np.flatnonzero(symbols == 'Cu'):
        neighbours = symbols[j[i == k]]
        assert set(neighbours) == {'S'}
        assert len(neighbours) == (3 if sites[k] == '24g' else 4)
    for k in np.flatnonzero((symbols == 'S') & np.isin(sites, ['4a', '4c'])):
        assert np.count_nonzero(symbols[j[i == k]] == 'Cu') >= 4


def test_deterministic(cu7ps6):
    again = build_argyrodite()
    assert np.array_equal(again.positions, cu7ps6.positions)
    assert again.get_chemical_symbols() == cu7ps6.get_chemical_symbols()


def test_other_seed_equally_good(cu7ps6):
    other = build_argyrodite(seed=3)
    assert pair_minimum_distances(other)[('Cu', 'Cu')] == pytest.approx(2.787, abs=2e-3)


def test_ordering_independent_of_lattice_parameter(cu7ps6):
    scaled = build_argyrodite(10.0)
    assert np.allclose(scaled.get_scaled_positions(), cu7ps6.get_scaled_positions())


@pytest.mark.parametrize(
    ('kwargs', 'formula', 'pair'),
    [
        ({'a': 10.9, 'mobile': 'Ag', 'anion': 'Se'}, 'Ag28P4Se24', ('P', 'Se')),
        ({'a': 10.1, 'anion': 'Se'}, 'Cu28P4Se24', ('P', 'Se')),
        ({'a': 9.99, 'mobile': 'Li', 'mobile_sites': ('48h', '16e')}, 'Li28P4S24', ('P', 'S')),
        ({'a': 9.86, 'mobile': 'Li', 'free_anions': ('Cl', 'S'), 'n_mobile': 24}, 'Cl4Li24P4S20', ('P', 'S')),
        ({'a': 10.3, 'mobile': 'Ag', 'center': 'As'}, 'Ag28As4S24', ('As', 'S')),
    ],
)
def test_other_species(kwargs, formula, pair):
    atoms = build_argyrodite(**kwargs)
    assert atoms.get_chemical_formula() == formula
    minima = pair_minimum_distances(atoms)
    assert minima[pair] == pytest.approx(np.sqrt(3) * 0.12 * kwargs['a'], abs=1e-6)
    for (sa, sb), value in minima.items():
        assert value >= pair_threshold(sa, sb)


def test_too_small_cell_rejected():
    with pytest.raises(ValueError, match='Cu-Cu|Cu-S|P-S'):
        build_argyrodite(7.0)


def test_too_close_threshold_rejected():
    with pytest.raises(ValueError, match='below the threshold'):
        build_argyrodite(distance_floor=2.5)


@pytest.mark.parametrize(
    ('kwargs', 'field'),
    [
        ({'a': -1.0}, 'a'),
        ({'a': float('nan')}, 'a'),
        ({'mobile': 'Xx'}, 'mobile'),
        ({'mobile': 'X'}, 'mobile'),
        ({'center': 'p'}, 'center'),
        ({'anion': 5}, 'anion'),
        ({'free_anions': ('S',)}, 'free_anions'),
        ({'n_mobile': 0}, 'n_mobile'),
        ({'n_mobile': 2.5}, 'n_mobile'),
        ({'seed': -1}, 'seed'),
    ],
)
def test_invalid_arguments(kwargs, field):
    with pytest.raises(ValueError, match=f'^{field}'):
        build_argyrodite(**kwargs)


def test_select_mobile_sites_simple():
    # Four points on a line in a cubic cell: the two farthest apart (minimum image) are picked.
    pool = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.5, 0, 0], [0.6, 0, 0]])
    chosen = select_mobile_sites(pool, 2)
    assert len(chosen) == 2
    delta = pool[chosen[0]] - pool[chosen[1]]
    delta -= np.round(delta)
    assert np.linalg.norm(delta) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='^n_mobile'):
        select_mobile_sites(pool, 5)


# ------------------------------------------------------------------------------------------ Li argyrodites

# Minimum distances (Å) of Li6PS5Cl (a = 9.86 Å, Li on 48h), as documented in the module.
LI6PS5CL_MINIMA = {('Li', 'Li'): 2.217, ('Li', 'S'): 2.416, ('Cl', 'Li'): 2.563, ('Li', 'P'): 3.617,
                   ('P', 'S'): 2.049}


@pytest.fixture(scope='module')
def li6ps5cl():
    return build_argyrodite(9.86, mobile='Li', free_anions=('Cl', 'S'), n_mobile=24)


def test_li6ps5cl_li_on_48h_not_on_the_24g_saddle(li6ps5cl):
    assert li6ps5cl.get_chemical_formula() == 'Cl4Li24P4S20'
    symbols = np.array(li6ps5cl.get_chemical_symbols())
    assert Counter(li6ps5cl.arrays['wyckoff'][symbols == 'Li'].tolist()) == {'48h': 24}
    frac = li6ps5cl.get_scaled_positions()[symbols == 'Li']
    # Every Li is on the orbit of (0.317, 0.317, 0.024) = (0.183, 0.183, 0.024): two equal coordinates
    # x or 1 - x (mod 1/2), the third z or -z (mod 1/2) near 0.024.
    folded = np.minimum(np.mod(frac, 0.5), 0.5 - np.mod(frac, 0.5))
    for row in np.sort(folded, axis=1):
        assert row == pytest.approx([0.024, 0.183, 0.183], abs=1e-6)


def test_li6ps5cl_shortest_distances_per_pair(li6ps5cl):
    minima = pair_minimum_distances(li6ps5cl)
    for pair, expected in LI6PS5CL_MINIMA.items():
        assert minima[pair] == pytest.approx(expected, abs=2e-3), pair
    assert minima[('Li', 'Li')] > 1.9
    assert minima[('Li', 'S')] > 2.2 and minima[('Cl', 'Li')] > 2.2
    assert check_pair_distances(li6ps5cl) == minima


def test_li6ps5cl_one_li_per_48h_pair_and_tetrahedral(li6ps5cl):
    symbols = np.array(li6ps5cl.get_chemical_symbols())
    li = li6ps5cl.get_scaled_positions()[symbols == 'Li']
    # The 24 face-sharing 48h pairs meet at the 24g sites: each pair holds exactly one Li.
    from aiida_mlcampaign.structures.argyrodite import _cubic_distance_matrix, _orbit

    saddles = _orbit((0.0, 0.25, 0.25))
    near = _cubic_distance_matrix(saddles, li) < 0.1  # the pair's sites are 0.095 a from their face
    assert near.sum(axis=1).tolist() == [1] * 24
    i, j, d = neighbor_list('ijd', li6ps5cl, 2.7)
    for k in np.flatnonzero(symbols == 'Li'):
        anions = [s for s in symbols[j[i == k]].tolist() if s in ('S', 'Cl')]
        assert sorted(anions) == ['Cl', 'S', 'S', 'S']


def test_li6ps5cl_other_seed_equally_good(li6ps5cl):
    other = build_argyrodite(9.86, mobile='Li', free_anions=('Cl', 'S'), n_mobile=24, seed=5)
    assert pair_minimum_distances(other)[('Li', 'Li')] == pytest.approx(LI6PS5CL_MINIMA[('Li', 'Li')], abs=2e-3)


def test_li7ps6_needs_more_than_48h():
    with pytest.raises(ValueError, match='Li-Li .* mobile sites'):
        build_argyrodite(9.99, mobile='Li')  # 28 Li on 24 pairs: some pair doubled at 1.89 Å
    atoms = build_argyrodite(9.99, mobile='Li', mobile_sites=['16e', '48h'])
    symbols = np.array(atoms.get_chemical_symbols())
    assert Counter(atoms.arrays['wyckoff'][symbols == 'Li'].tolist()) == {'48h': 20, '16e': 8}
    assert pair_minimum_distances(atoms)[('Li', 'Li')] > 2.2


def test_mobile_sites_choose_the_pool(cu7ps6):
    # Cu keeps the three-site pool; naming it (in any order) changes nothing.
    same = build_argyrodite(mobile_sites=('16e', '48h', '24g'))
    assert np.array_equal(same.positions, cu7ps6.positions)
    # The three-site pool puts Li6PS5Cl's Li on the 24g saddles: what the Li default avoids.
    saddle = build_argyrodite(9.86, mobile='Li', free_anions=('Cl', 'S'), n_mobile=24, mobile_sites=MOBILE_SITES,
                              xz_48h=(0.32, 0.02))
    assert set(saddle.arrays['wyckoff'][np.array(saddle.get_chemical_symbols()) == 'Li']) == {'24g'}
    # Cu on 48h only, if asked.
    only_48h = build_argyrodite(n_mobile=24, mobile_sites=['48h'])
    assert set(only_48h.arrays['wyckoff'][np.array(only_48h.get_chemical_symbols()) == 'Cu']) == {'48h'}


@pytest.mark.parametrize('bad', [(), '48h', ('24h',), ('48h', '48h'), (48,), 5])
def test_invalid_mobile_sites(bad):
    with pytest.raises(ValueError, match='^mobile_sites'):
        build_argyrodite(mobile_sites=bad)


@pytest.mark.parametrize('bad', [(0.3,), 0.3, 'ab', (0.3, 'x')])
def test_invalid_xz_48h(bad):
    with pytest.raises(ValueError, match='^xz_48h'):
        build_argyrodite(xz_48h=bad)
