"""Tests of ``TrainingSetData``: building, storing, set algebra, import and export.

All frames are small and hand-made except the GPUMD ``train.xyz`` fixture (2 frames of 250 atoms).
Frames deliberately mix species, atom counts and the presence of stress, energy and forces so that
the flat per-atom/per-frame layout and its NaN placeholders are exercised.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.extxyz import read_extxyz
from aiida_mlcampaign.formats.frames import FormatError, Frame
from aiida_mlcampaign.formats.mlip_cfg import read_cfg

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures'
PBTE_TRAIN = FIXTURES / 'gpumd' / 'pbte_train_master' / 'train.xyz'

ARRAY_NAMES = (
    'natoms', 'cells', 'pbc', 'energies', 'stresses', 'weights', 'temperatures', 'source_uuids', 'origins',
    'species_index', 'positions', 'forces',
)
UUID_A = '123e4567-e89b-12d3-a456-426614174000'


# ----------------------------------------------------------------------------------------- helpers


def make_frame(symbols, seed, *, a=4.0, stress=True, energy=True, forces=True, weight=1.0, info=None) -> Frame:
    """A labelled frame in a slightly skewed cell; every label can be switched off."""
    rng = np.random.default_rng(seed)
    n = len(symbols)
    cell = np.diag([a, a + 0.25, a + 0.5]) + np.triu(rng.normal(0, 0.1, (3, 3)), 1)
    return Frame(
        symbols=list(symbols),
        cell=cell,
        positions=rng.uniform(0, a, (n, 3)),
        energy=float(rng.normal(-3.5 * n, 0.5)) if energy else None,
        forces=rng.normal(0, 0.5, (n, 3)) if forces else None,
        stress=rng.normal(0, 0.01, 6) if stress else None,
        weight=weight,
        info=dict(info or {}),
    )


def mixed_frames() -> list[Frame]:
    """Four frames: 2, 5, 3 and 1 atoms, Cu/S/P mixed, one without stress, one with weight 2.5."""
    return [
        make_frame(['Cu', 'S'], 1, info={'origin': 'rattle', 'source_uuid': UUID_A, 'temperature': 300.0}),
        make_frame(['S', 'Cu', 'P', 'S', 'Cu'], 2, stress=False, weight=2.5, info={'origin': 'aimd-600K'}),
        make_frame(['P', 'P', 'S'], 3, info={'temperature': 600.0}),
        make_frame(['Cu'], 4, a=3.0),
    ]


def assert_same_frame(expected: Frame, actual: Frame, *, info=True, stress_rtol=0.0):
    assert actual.symbols == expected.symbols
    np.testing.assert_array_equal(actual.cell, expected.cell)
    np.testing.assert_array_equal(actual.positions, expected.positions)
    assert actual.pbc == expected.pbc
    assert actual.energy == expected.energy
    if expected.forces is None:
        assert actual.forces is None
    else:
        np.testing.assert_array_equal(actual.forces, expected.forces)
    if expected.stress is None:
        assert actual.stress is None
    elif stress_rtol:  # stress that went through a virial (-V * stress) may differ in the last bit
        np.testing.assert_allclose(actual.stress, expected.stress, rtol=stress_rtol, atol=1e-17)
    else:
        np.testing.assert_array_equal(actual.stress, expected.stress)
    assert actual.weight == expected.weight
    if info:
        assert actual.info == expected.info


def assert_same_arrays(a: TrainingSetData, b: TrainingSetData):
    for name in ARRAY_NAMES:
        x, y = a.get_array(name), b.get_array(name)
        assert x.dtype.kind == y.dtype.kind, name
        assert x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here


# ----------------------------------------------------------------------------------------- building


def test_from_frames_round_trip_mixed_species_counts_and_stress():
    frames = mixed_frames()
    node = TrainingSetData.from_frames(frames)
    back = list(node.iter_frames())
    assert len(back) == 4
    for expected, actual in zip(frames, back, strict=True):
        assert_same_frame(expected, actual)
    assert [f.natoms for f in back] == [2, 5, 3, 1]
    assert back[1].stress is None and back[0].stress is not None
    assert_same_frame(frames[2], node.get_frame(2))
    assert_same_frame(frames[3], node.get_frame(-1))  # negative index counts from the end
    with pytest.raises(IndexError):
        node.get_frame(4)


def test_missing_labels_are_nan_and_come_back_as_none():
    frames = [make_frame(['Cu', 'S'], 5, energy=False, forces=False, stress=False), make_frame(['S'], 6)]
    node = TrainingSetData.from_frames(frames)
    assert np.isnan(node.get_array('energies')[0])
    assert np.isnan(node.get_array('forces')[:2]).all()
    assert np.isnan(node.get_array('stresses')[0]).all()
    assert np.isnan(node.get_array('temperatures')).all()
    first, second = node.iter_frames()
    assert first.energy is None and first.forces is None and first.stress is None
    assert_same_frame(frames[1], second)
    assert node.base.attributes.get('num_labelled') == 1


def test_layout_and_attributes():
    node = TrainingSetData.from_frames(mixed_frames())
    assert node.species == ['Cu', 'P', 'S']  # default: sorted
    assert node.num_frames == len(node) == 4
    assert node.base.attributes.get('num_frames') == 4
    assert node.base.attributes.get('num_atoms_total') == 11
    assert node.base.attributes.get('num_labelled') == 4
    assert node.base.attributes.get('has_stress') is False  # frame 1 has none
    np.testing.assert_array_equal(node.get_array('natoms'), [2, 5, 3, 1])
    np.testing.assert_array_equal(node.offsets, [0, 2, 7, 10, 11])
    assert node.get_array('positions').shape == (11, 3)
    assert node.get_array('forces').shape == (11, 3)
    assert node.get_array('cells').shape == (4, 3, 3)
    assert node.get_array('stresses').shape == (4, 3, 3)
    np.testing.assert_array_equal(node.get_array('species_index')[:7], [0, 2, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(node.get_array('weights'), [1.0, 2.5, 1.0, 1.0])
    np.testing.assert_array_equal(node.get_array('temperatures')[[0, 2]], [300.0, 600.0])
    assert list(node.get_array('origins')) == ['rattle', 'aimd-600K', '', '']
    assert list(node.get_array('source_uuids')) == [UUID_A, '', '', '']

    with_stress = TrainingSetData.from_frames([f for i, f in enumerate(mixed_frames()) if i != 1])
    assert with_stress.base.attributes.get('has_stress') is True


def test_species_order_is_kept_when_given():
    node = TrainingSetData.from_frames(mixed_frames(), species=['S', 'P', 'Cu', 'Ag'])
    assert node.species == ['S', 'P', 'Cu', 'Ag']
    np.testing.assert_array_equal(node.get_array('species_index')[:2], [2, 0])
    assert [f.symbols for f in node.iter_frames()] == [f.symbols for f in mixed_frames()]


def test_stored_node_reloads_with_same_arrays(aiida_profile):
    node = TrainingSetData.from_frames(mixed_frames())
    node.store()
    loaded = orm.load_node(node.pk)
    assert loaded is not node
    assert isinstance(loaded, TrainingSetData)
    assert_same_arrays(node, loaded)
    assert loaded.species == ['Cu', 'P', 'S']
    for name in ('num_frames', 'num_atoms_total', 'num_labelled', 'has_stress'):
        assert loaded.base.attributes.get(name) == node.base.attributes.get(name)
    for expected, actual in zip(mixed_frames(), loaded.iter_frames(), strict=True):
        assert_same_frame(expected, actual)
    # The queryable summary is in the attributes, not only in the arrays.
    qb = orm.QueryBuilder().append(TrainingSetData, filters={'id': node.pk},
                                   project=['attributes.num_frames', 'attributes.species'])
    assert qb.one() == [4, ['Cu', 'P', 'S']]


# ----------------------------------------------------------------------------------------- bad inputs


def test_empty_frame_list_is_refused():
    with pytest.raises(ValueError, match='frames'):
        TrainingSetData.from_frames([])


def test_species_list_missing_an_element_is_refused():
    with pytest.raises(ValueError, match=r"species: \['P'\]"):
        TrainingSetData.from_frames(mixed_frames(), species=['Cu', 'S'])


@pytest.mark.parametrize('weight', [0.0, -1.0])
def test_non_positive_weight_is_refused(weight):
    with pytest.raises(ValueError, match='weight'):  # Frame itself refuses it (FormatError is a ValueError)
        make_frame(['Cu'], 1, weight=weight)
    frame = make_frame(['Cu'], 1)
    frame.weight = weight  # set after validation: the node's own check must catch it
    with pytest.raises(ValueError, match='weights'):
        TrainingSetData.from_frames([make_frame(['S'], 2), frame])
    arrays = TrainingSetData.from_frames(mixed_frames())._arrays()
    arrays['weights'][2] = weight
    with pytest.raises(ValueError, match='weights'):
        TrainingSetData.from_arrays(['Cu', 'P', 'S'], **arrays)


def test_from_arrays_checks_layout():
    arrays = TrainingSetData.from_frames(mixed_frames())._arrays()
    with pytest.raises(ValueError, match='forces'):
        TrainingSetData.from_arrays(['Cu', 'P', 'S'], **{**arrays, 'forces': arrays['forces'][:-1]})
    with pytest.raises(ValueError, match='energies'):
        TrainingSetData.from_arrays(['Cu', 'P', 'S'], **{**arrays, 'energies': arrays['energies'][:-1]})
    with pytest.raises(ValueError, match='species_index'):
        TrainingSetData.from_arrays(['Cu', 'P'], **arrays)
    with pytest.raises(ValueError, match='missing'):
        TrainingSetData.from_arrays(['Cu', 'P', 'S'], **{k: v for k, v in arrays.items() if k != 'origins'})


# ----------------------------------------------------------------------------------------- set algebra


def test_subset_keeps_order_and_labels():
    frames = mixed_frames()
    node = TrainingSetData.from_frames(frames)
    sub = node.subset([3, 1])
    assert not sub.is_stored
    assert sub.species == node.species
    assert sub.num_frames == 2
    assert sub.base.attributes.get('num_atoms_total') == 6
    for expected, actual in zip([frames[3], frames[1]], sub.iter_frames(), strict=True):
        assert_same_frame(expected, actual)
    with pytest.raises(IndexError, match='indices'):
        node.subset([0, 4])
    with pytest.raises(IndexError, match='indices'):
        node.subset([-1])


def many_frames(count=20) -> TrainingSetData:
    return TrainingSetData.from_frames([make_frame(['Cu', 'S', 'S'][: 1 + i % 3], 100 + i) for i in range(count)])


def test_split_indices_deterministic_and_partitioning():
    node = many_frames(20)
    train, test = node.split_indices(0.25, seed=42)
    again_train, again_test = many_frames(20).split_indices(0.25, seed=42)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    assert len(test) == 5 and len(train) == 15
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(20))
    assert list(train) == sorted(train) and list(test) == sorted(test)

    others = [node.split_indices(0.25, seed=seed)[1] for seed in (1, 2, 3)]
    assert any(not np.array_equal(test, other) for other in others)
    assert not np.array_equal(test, node.split_indices(0.25, seed=43)[1])


@pytest.mark.parametrize('fraction, n_test', [(0.0, 0), (0.01, 1), (0.1, 2), (0.5, 10), (0.9, 18), (0.999, 19)])
def test_split_fractions(fraction, n_test):
    train, test = many_frames(20).split_indices(fraction, seed=0)
    assert len(test) == n_test
    assert len(train) == 20 - n_test
    assert len(train) >= 1  # a split never leaves the training set empty


def test_split_of_a_single_frame_keeps_it_for_training():
    node = many_frames(1)
    for fraction in (0.0, 0.5, 0.9):
        train, test = node.split_indices(fraction, seed=0)
        assert list(train) == [0] and len(test) == 0


@pytest.mark.parametrize('fraction', [-0.1, 1.0, 1.5])
def test_split_fraction_out_of_range(fraction):
    with pytest.raises(ValueError, match='test_fraction'):
        many_frames(5).split_indices(fraction, seed=0)


def two_sets():
    """Set A species [Cu, S]; set B species [P, S] whose first frame repeats A's second geometry."""
    a0 = make_frame(['Cu', 'S', 'S'], 10, info={'origin': 'a'})
    a1 = make_frame(['S', 'S'], 11, info={'origin': 'a'})
    b0 = Frame(symbols=a1.symbols, cell=a1.cell, positions=a1.positions + a1.cell[0],  # same site, next image
               energy=a1.energy + 1.0, forces=a1.forces * 2, info={'origin': 'b'})
    b1 = make_frame(['P', 'S', 'P'], 12, info={'origin': 'b'})
    b2 = make_frame(['S'], 13, stress=False, info={'origin': 'b'})
    set_a = TrainingSetData.from_frames([a0, a1])
    set_b = TrainingSetData.from_frames([b0, b1, b2])
    return set_a, set_b, (a0, a1, b0, b1, b2)


def test_merge_deduplicates_first_label_wins_and_remaps_species():
    set_a, set_b, (a0, a1, b0, b1, b2) = two_sets()
    assert set_a.species == ['Cu', 'S'] and set_b.species == ['P', 'S']
    assert a1.structure_hash() == b0.structure_hash()

    merged = TrainingSetData.merge([set_a, set_b])
    assert merged.species == ['Cu', 'S', 'P']
    assert merged.num_frames == 4
    frames = list(merged.iter_frames())
    for expected, actual in zip([a0, a1, b1, b2], frames, strict=True):
        assert_same_frame(expected, actual)
    assert frames[1].energy == a1.energy  # not b0's
    # Cu S S | S S | P S P | S  with Cu=0, S=1, P=2 (B's own indices were P=0, S=1).
    np.testing.assert_array_equal(set_b.get_array('species_index'), [1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(merged.get_array('species_index'), [0, 1, 1, 1, 1, 2, 1, 2, 1])
    assert list(merged.get_array('origins')) == ['a', 'a', 'b', 'b']
    assert merged.base.attributes.get('num_atoms_total') == 9
    assert merged.base.attributes.get('has_stress') is False

    reverse = TrainingSetData.merge([set_b, set_a])
    assert reverse.species == ['P', 'S', 'Cu']
    assert reverse.num_frames == 4
    assert list(reverse.iter_frames())[0].energy == b0.energy  # now b0 came first

    kept = TrainingSetData.merge([set_a, set_b], deduplicate=False)
    assert kept.num_frames == 5
    assert [f.symbols for f in kept.iter_frames()] == [f.symbols for f in (a0, a1, b0, b1, b2)]


def test_merge_of_stored_sets_and_all_duplicates(aiida_profile):
    set_a, set_b, _ = two_sets()
    set_a.store()
    set_b.store()
    merged = TrainingSetData.merge([set_a, set_b, set_a])  # the third adds nothing
    assert merged.num_frames == 4
    merged.store()
    assert orm.load_node(merged.pk).num_frames == 4
    with pytest.raises(ValueError, match='sets'):
        TrainingSetData.merge([])


# ----------------------------------------------------------------------------------------- export / import


def labelled_frames() -> list[Frame]:
    """Frames GPUMD can train on (energy and forces everywhere); stress on some."""
    return [
        make_frame(['Cu', 'S'], 21, info={'origin': 'rattle', 'source_uuid': UUID_A, 'temperature': 300.0}),
        make_frame(['S', 'Cu', 'P', 'S', 'Cu'], 22, stress=False, weight=2.5),
        make_frame(['P', 'P', 'S'], 23, info={'origin': 'aimd'}),
    ]


def test_export_extxyz_read_back_with_ase(tmp_path):
    import ase.io

    node = TrainingSetData.from_frames(labelled_frames())
    path = node.export_extxyz(tmp_path / 'train.xyz')
    assert path == tmp_path / 'train.xyz'
    images = ase.io.read(path, index=':')
    assert len(images) == 3
    forces = node.get_array('forces')
    offsets = node.offsets
    for i, (atoms, frame) in enumerate(zip(images, labelled_frames(), strict=True)):
        assert atoms.get_chemical_symbols() == frame.symbols
        np.testing.assert_array_equal(atoms.get_positions(), frame.positions)
        np.testing.assert_array_equal(np.array(atoms.cell), frame.cell)
        assert atoms.get_potential_energy() == frame.energy
        # GPUMD's ``force:R:3`` column: ASE keeps it as a plain per-atom array.
        np.testing.assert_array_equal(atoms.arrays['force'], forces[offsets[i]:offsets[i + 1]])
        if frame.stress is None:
            assert 'virial' not in atoms.info
        else:
            np.testing.assert_allclose(atoms.info['virial'], -frame.volume * frame.stress, rtol=1e-14, atol=1e-16)
    assert images[0].info['config_type'] == 'rattle'
    assert images[1].info['weight'] == 2.5


def test_export_extxyz_read_back_with_own_reader(tmp_path):
    node = TrainingSetData.from_frames(labelled_frames())
    back = list(read_extxyz(node.export_extxyz(tmp_path / 'train.xyz')))
    for expected, actual in zip(labelled_frames(), back, strict=True):
        assert_same_frame(expected, actual, info=False, stress_rtol=1e-13)
    assert back[0].info == {'origin': 'rattle', 'source_uuid': UUID_A, 'temperature': 300.0}
    # And back into a node: the same arrays (stress goes through the virial, so allow rounding).
    again = TrainingSetData.from_extxyz(tmp_path / 'train.xyz')
    for name in ARRAY_NAMES:
        if name == 'stresses':
            np.testing.assert_allclose(again.get_array(name), node.get_array(name), rtol=1e-13, atol=1e-17)
        else:
            np.testing.assert_array_equal(again.get_array(name), node.get_array(name), err_msg=name)


def test_export_extxyz_refuses_unlabelled_frames(tmp_path):
    node = TrainingSetData.from_frames([make_frame(['Cu'], 1), make_frame(['S'], 2, energy=False)])
    with pytest.raises(FormatError, match='frame 1: energy'):
        node.export_extxyz(tmp_path / 'train.xyz')
    assert not (tmp_path / 'train.xyz').exists()


def test_export_cfg_round_trip(tmp_path):
    node = TrainingSetData.from_frames(labelled_frames())
    path = node.export_cfg(tmp_path / 'train.cfg')
    text = path.read_text()
    assert text.count('BEGIN_CFG') == 3 and text.count('PlusStress') == 2
    back = list(read_cfg(path, node.species))
    for expected, actual in zip(labelled_frames(), back, strict=True):
        assert actual.symbols == expected.symbols
        np.testing.assert_array_equal(actual.positions, expected.positions)
        np.testing.assert_array_equal(actual.cell, expected.cell)
        np.testing.assert_array_equal(actual.forces, expected.forces)
        assert actual.energy == expected.energy
        assert actual.weight == expected.weight
        if expected.stress is None:
            assert actual.stress is None
        else:
            np.testing.assert_allclose(actual.stress, expected.stress, rtol=1e-13, atol=1e-17)

    # Type indices follow an explicit species order (that of the .mtp file).
    order = ['S', 'P', 'Cu']
    node.export_cfg(tmp_path / 'ordered.cfg', species_order=order)
    first = (tmp_path / 'ordered.cfg').read_text().split('AtomData:')[1].splitlines()
    assert [int(line.split()[1]) for line in first[1:3]] == [2, 0]  # Cu, S
    assert [f.symbols for f in read_cfg(tmp_path / 'ordered.cfg', order)] == [f.symbols for f in labelled_frames()]
    with pytest.raises(FormatError, match='species_order'):
        node.export_cfg(tmp_path / 'bad.cfg', species_order=['S', 'P'])


def test_from_extxyz_gpumd_fixture():
    node = TrainingSetData.from_extxyz(PBTE_TRAIN, temperature=300.0)
    assert node.num_frames == 2
    np.testing.assert_array_equal(node.get_array('natoms'), [250, 250])
    assert node.base.attributes.get('num_atoms_total') == 500
    assert node.species == ['Pb', 'Te']
    energies = node.get_array('energies')
    assert energies[0] == -937.191  # literal of the first comment line
    assert energies[1] == -944.7615
    assert node.base.attributes.get('has_stress') is False
    assert list(node.get_array('origins')) == ['nep2xyz', 'nep2xyz']
    np.testing.assert_array_equal(node.get_array('temperatures'), [300.0, 300.0])  # from the defaults
    first = node.get_frame(0)
    assert first.symbols[0] == 'Te'
    np.testing.assert_array_equal(first.positions[0], [3.391217, 3.024926, 3.37478])
    np.testing.assert_array_equal(first.forces[0], [0.07834588, 0.3368932, -0.1323393])
    np.testing.assert_array_equal(first.cell, [[0.0, 16.42598, 16.42598], [16.42598, 0.0, 16.42598],
                                               [16.42598, 16.42598, 0.0]])


def test_from_ase():
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for frame in labelled_frames():
        atoms = Atoms(frame.symbols, positions=frame.positions, cell=frame.cell, pbc=True)
        results = {'energy': frame.energy, 'forces': frame.forces}
        if frame.stress is not None:
            results['stress'] = np.array([frame.stress[0, 0], frame.stress[1, 1], frame.stress[2, 2],
                                          frame.stress[1, 2], frame.stress[0, 2], frame.stress[0, 1]])
        atoms.calc = SinglePointCalculator(atoms, **results)
        images.append(atoms)
    images[1].info['weight'] = 2.5
    node = TrainingSetData.from_ase(images, origin='ase', species=['S', 'P', 'Cu'])
    assert node.species == ['S', 'P', 'Cu']
    assert list(node.get_array('origins')) == ['ase'] * 3
    for expected, actual in zip(labelled_frames(), node.iter_frames(), strict=True):
        assert_same_frame(expected, actual, info=False)

    # to_ase gives the images back with calculator results.
    for atoms, expected in zip(node.to_ase(), labelled_frames(), strict=True):
        assert atoms.get_potential_energy() == expected.energy
        np.testing.assert_array_equal(atoms.get_forces(), expected.forces)


def test_structure_hashes_ignore_labels():
    frames = labelled_frames()
    node = TrainingSetData.from_frames(frames)
    assert node.structure_hashes() == [f.structure_hash() for f in frames]
    relabelled = [Frame(f.symbols, f.cell, f.positions, energy=0.0) for f in frames]
    assert TrainingSetData.from_frames(relabelled).structure_hashes() == node.structure_hashes()
