"""RDF: cell-list pair counts against brute force, ideal gas, fcc shells, ASE, GPUMD's rdf.out."""

import itertools
import pathlib

import numpy as np
import pytest
from ase.build import bulk
from ase.geometry.rdf import get_rdf

from aiida_mlcampaign.analysis.rdf import (
    RdfAccumulator,
    cell_widths,
    coordination_from_g,
    coordination_number,
    first_shell,
    pair_counts,
    plot_rdf,
    plot_rdf_comparison,
    rdf_overlap,
)
from aiida_mlcampaign.formats.gpumd import read_msd, read_rdf

SI_LIQUID = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md' / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6'
TRICLINIC = np.array([[12.0, 0.0, 0.0], [4.0, 11.0, 0.0], [-3.0, 2.5, 13.0]])


def brute_force_ordered_counts(positions, cell, types, n_types, r_max, bins):
    """Every ordered pair (i, j + image) with i != j or a non-zero image, by explicit images."""
    counts = np.zeros((n_types, n_types, bins), dtype=int)
    for image in itertools.product(range(-2, 3), repeat=3):
        shift = np.array(image) @ cell
        distance = np.linalg.norm(positions[None, :, :] + shift - positions[:, None, :], axis=2)
        mask = distance < r_max
        if image == (0, 0, 0):
            np.fill_diagonal(mask, False)
        i, j = np.nonzero(mask)
        np.add.at(counts, (types[i], types[j], (distance[i, j] * bins / r_max).astype(int)), 1)
    return counts


@pytest.mark.parametrize('reach', [1, 2])
def test_pair_counts_match_brute_force_in_a_triclinic_cell(reach):
    rng = np.random.default_rng(3)
    positions = rng.random((250, 3)) @ TRICLINIC + rng.normal(0, 3, (250, 3))  # some atoms outside the cell
    types = rng.integers(0, 3, 250)
    r_max = 0.5 * cell_widths(TRICLINIC).min()
    found = pair_counts(positions, TRICLINIC, types, 3, r_max, 25, reach=reach)
    expected = brute_force_ordered_counts(positions, TRICLINIC, types, 3, r_max, 25)
    np.testing.assert_array_equal(found + found.swapaxes(0, 1), expected)


def test_ideal_gas_in_a_triclinic_cell_gives_one():
    rng = np.random.default_rng(0)
    accumulator = RdfAccumulator(r_max=5.0, bins=25, species=['A', 'B'])
    symbols = ['A'] * 300 + ['B'] * 900
    for _ in range(6):
        accumulator.add_frame(symbols, TRICLINIC, rng.random((1200, 3)) @ TRICLINIC)
    result = accumulator.result()
    assert result['pairs'] == ['A-A', 'A-B', 'B-B']
    for g in list(result['g_partial']) + [result['g_total']]:
        # Beyond 2 Å each bin has >= ~1e3 pairs (A-A the fewest); the mean over bins is far tighter.
        assert abs(g[10:].mean() - 1.0) < 0.02
        assert np.all(np.abs(g[10:] - 1.0) < 0.2)
    # Coordination of an ideal gas: rho_b * 4/3 pi r^3 (b around a), exactly the pair density.
    volume = abs(np.linalg.det(TRICLINIC))
    expected = 900 / volume * 4 / 3 * np.pi * 5.0 ** 3
    assert result['cn_ab'][1][-1] == pytest.approx(expected, rel=0.03)


def test_fcc_first_shell_and_coordination_twelve():
    atoms = bulk('Cu', 'fcc', a=3.61).repeat((4, 4, 4))  # triclinic primitive cell, 64 atoms
    atoms.rattle(0.02, seed=1)
    accumulator = RdfAccumulator(r_max=0.5 * cell_widths(atoms.cell).min(), bins=120)
    accumulator.add_frame(atoms.get_chemical_symbols(), atoms.cell.array, atoms.positions)
    result = accumulator.result()
    shell = result['first_shell'][0]
    assert shell['peak_A'] == pytest.approx(3.61 / np.sqrt(2), abs=0.04)
    assert shell['found_minimum']
    assert shell['cn_ab'] == pytest.approx(12.0)
    assert coordination_number(result['edges_A'], result['cn_ab'][0], 3.1) == pytest.approx(12.0)


def test_agrees_with_ase_get_rdf_for_every_partial():
    rng = np.random.default_rng(0)
    atoms = bulk('NaCl', 'rocksalt', a=5.64).repeat((3, 3, 3))
    atoms.set_cell(atoms.cell.array + rng.normal(0, 0.3, (3, 3)), scale_atoms=True)
    atoms.rattle(0.2, seed=1)
    r_max = 0.499 * cell_widths(atoms.cell).min()
    accumulator = RdfAccumulator(r_max, 40)
    accumulator.add_frame(atoms.get_chemical_symbols(), atoms.cell.array, atoms.positions)
    result = accumulator.result()
    counts = dict(zip(result['species'], result['mean_counts']))
    for pair, g in zip(result['pairs'], result['g_partial'], strict=True):
        a, b = pair.split('-')
        reference, r = get_rdf(atoms, r_max, 40, elements=[a, b])
        # ASE normalises like pairs with N_a^2, we with N_a (N_a - 1) (ideal gas -> 1).
        factor = (counts[a] - 1) / counts[a] if a == b else 1.0
        np.testing.assert_allclose(g * factor, reference, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result['r_A'], r)
    reference = get_rdf(atoms, r_max, 40, no_dists=True)
    natoms = len(atoms)
    np.testing.assert_allclose(result['g_total'] * (natoms - 1) / natoms, reference, atol=1e-10)


def test_frames_are_normalised_with_their_own_volume():
    """An NPT-like pair of frames: the result is the mean of the per-frame RDFs."""
    rng = np.random.default_rng(5)
    frames = []
    for scale in (1.0, 1.1):
        cell = TRICLINIC * scale
        frames.append((['Ar'] * 200, cell, rng.random((200, 3)) @ cell))
    both = RdfAccumulator(4.0, 20)
    singles = []
    for frame in frames:
        both.add_frame(*frame)
        single = RdfAccumulator(4.0, 20)
        single.add_frame(*frame)
        singles.append(single.result()['g_partial'][0])
    np.testing.assert_allclose(both.result()['g_partial'][0], np.mean(singles, axis=0))
    assert both.result()['mean_volume_A3'] == pytest.approx(np.mean([abs(np.linalg.det(f[1])) for f in frames]))


def test_r_max_beyond_the_inscribed_sphere_is_refused():
    accumulator = RdfAccumulator(6.0, 10)
    with pytest.raises(ValueError, match=r'r_max: 6 Å exceeds the largest sphere'):
        accumulator.add_frame(['Si'] * 2, TRICLINIC, [[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match='pbc'):
        RdfAccumulator(3.0, 10).add_frame(['Si'] * 2, TRICLINIC, [[0, 0, 0], [1, 1, 1]], pbc=(True, True, False))
    with pytest.raises(ValueError, match='bins'):
        RdfAccumulator(3.0, 0)
    with pytest.raises(ValueError, match='trajectory'):
        RdfAccumulator(3.0, 10).result()


def test_species_met_later_are_appended():
    accumulator = RdfAccumulator(3.0, 10)
    cell = np.eye(3) * 8
    accumulator.add_frame(['Cu', 'Cu'], cell, [[0, 0, 0], [2, 0, 0]])
    accumulator.add_frame(['Cu', 'S'], cell, [[0, 0, 0], [2, 0, 0]])
    result = accumulator.result()
    assert result['pairs'] == ['Cu-Cu', 'Cu-S', 'S-S']
    assert np.isnan(result['g_partial'][2]).all()  # one S atom: no S-S pair in any frame
    assert result['cn_ab'][1][-1] == pytest.approx(0.5)  # S around Cu: 1 in frame 2, 0 in frame 1


def test_overlap_score():
    r = np.linspace(0.05, 5, 100)
    g = np.exp(-(r - 2.5) ** 2 / 0.1)
    assert rdf_overlap(r, g, r, g) == pytest.approx(1.0)
    assert rdf_overlap(r, g, r, np.exp(-(r - 4.5) ** 2 / 0.01)) == pytest.approx(0.0, abs=1e-6)
    assert rdf_overlap(r, g, r, 2 * g) == pytest.approx(1 - 1 / 3)
    fine = np.linspace(0.05, 5, 400)
    assert rdf_overlap(r, g, fine, np.exp(-(fine - 2.5) ** 2 / 0.1)) == pytest.approx(1.0, abs=1e-3)


def test_gpumd_rdf_out_shape_and_coordination_of_liquid_si():
    """GPUMD's own g(r) of liquid Si (NEP, 8000 atoms, NVE after NPT at 2500 K).

    The structure is not in the fixture, so the check is on what the file gives: GPUMD's bin
    centres equal ours for the same r_cut/num_bins, the first peak and the first-shell
    coordination (density from the cell in the msd.out header of the same run) are those of liquid
    Si (peak ~2.4 Å, about 6 neighbours), and g -> 1 at large r.
    """
    data = read_rdf(SI_LIQUID / 'rdf.out')
    assert data['pairs'] == ['Si-Si']
    edges = RdfAccumulator(r_max=5.0, bins=100).edges  # compute_rdf 5 100 100 in run.in
    np.testing.assert_allclose(0.5 * (edges[1:] + edges[:-1]), data['r_A'], atol=5e-6)
    header = read_msd(SI_LIQUID / 'msd.out')['headers'][0]
    density = header['num_atoms'] / abs(np.linalg.det(header['cell_A']))
    cumulative = coordination_from_g(data['r_A'], data['g_total'], density)
    shell = first_shell(edges, data['g_total'], cumulative)
    assert shell['peak_A'] == pytest.approx(2.425)
    assert shell['found_minimum'] and 3.0 < shell['minimum_A'] < 3.4
    assert 6.0 < shell['cn_ab'] < 6.6
    assert data['g_total'][-20:].mean() == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(data['g_total'], data['g_partial'][:, 0])  # one species: total = partial


def test_figures_are_png():
    accumulator = RdfAccumulator(3.0, 30)
    rng = np.random.default_rng(0)
    accumulator.add_frame(['Cu'] * 20 + ['S'] * 20, np.eye(3) * 8, rng.random((40, 3)) * 8)
    result = accumulator.result()
    png = plot_rdf(result, 'test')
    assert png.startswith(b'\x89PNG') and len(png) > 1000
    curves = {'total': (result['r_A'], result['g_total'])}
    png = plot_rdf_comparison(curves, curves, {'total': 1.0})
    assert png.startswith(b'\x89PNG')
