"""Provenance and unit conversions of the training-set calcfunctions.

``training_set_from_pw`` runs on hand-built stored ``TrajectoryData`` nodes shaped like
aiida-quantumespresso's ``output_trajectory`` (energy in eV, forces in eV/Å, stress in GPa with QE's
sign: positive = compressed), so no pw.x is needed.
"""

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_mlcampaign.calculations.training_set import (
    merge_training_sets,
    split_training_set,
    training_set_from_pw,
)
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.extxyz import read_extxyz
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.formats.qe import EV_PER_ANG3_IN_GPA

A = 5.0  # cubic cell edge (Å) of every trajectory here; V = 125 Å^3


def pw_trajectory(nsteps=4, symbols=('Cu1', 'Cu1', 'S', 'S'), seed=0, stress_gpa=None, store=True):
    """A stored TrajectoryData as PwCalculation would leave it; step i has energy -10 - i eV."""
    rng = np.random.default_rng(seed)
    natoms = len(symbols)
    positions = rng.uniform(0, A, (nsteps, natoms, 3))
    cells = np.repeat(np.eye(3)[None] * A, nsteps, axis=0)
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=list(symbols), positions=positions, cells=cells, pbc=(True, True, True))
    trajectory.set_array('energy', -10.0 - np.arange(nsteps, dtype=float))
    trajectory.set_array('forces', rng.normal(0, 0.3, (nsteps, natoms, 3)))
    if stress_gpa is None:
        stress_gpa = rng.normal(0, 2.0, (nsteps, 3, 3))
        stress_gpa = (stress_gpa + stress_gpa.transpose(0, 2, 1)) / 2
    trajectory.set_array('stress', np.asarray(stress_gpa, dtype=float))
    return trajectory.store() if store else trajectory


def small_set(seed, count, symbols=('Cu', 'S')) -> TrainingSetData:
    rng = np.random.default_rng(seed)
    frames = [
        Frame(symbols=list(symbols), cell=np.eye(3) * A, positions=rng.uniform(0, A, (len(symbols), 3)),
              energy=float(rng.normal(-7, 1)), forces=rng.normal(0, 0.2, (len(symbols), 3)))
        for _ in range(count)
    ]
    return TrainingSetData.from_frames(frames).store()


def incoming(node) -> dict:
    return {entry.link_label: entry.node for entry in node.base.links.get_incoming().all()}


# ----------------------------------------------------------------------------------------- training_set_from_pw


def test_from_pw_collects_frames_with_provenance(aiida_profile):
    run1 = pw_trajectory(4, seed=1)
    run2 = pw_trajectory(3, symbols=('P', 'S', 'S'), seed=2)
    result = training_set_from_pw(origin=orm.Str('aimd'), trajectory_run1=run1, trajectory_run2=run2)
    assert isinstance(result, TrainingSetData) and result.is_stored
    creator = result.creator
    assert creator.process_label == 'training_set_from_pw'
    inputs = incoming(creator)
    assert inputs['trajectory_run1'].uuid == run1.uuid
    assert inputs['trajectory_run2'].uuid == run2.uuid
    assert inputs['origin'].value == 'aimd'

    assert result.num_frames == 7
    assert result.species == ['Cu', 'P', 'S']  # kind name 'Cu1' mapped to its element
    np.testing.assert_array_equal(result.get_array('natoms'), [4] * 4 + [3] * 3)
    np.testing.assert_array_equal(result.get_array('energies'), [-10, -11, -12, -13, -10, -11, -12])
    np.testing.assert_array_equal(result.get_array('positions'),
                                  np.concatenate([run1.get_array('positions').reshape(-1, 3),
                                                  run2.get_array('positions').reshape(-1, 3)]))
    np.testing.assert_array_equal(result.get_array('forces')[:16], run1.get_array('forces').reshape(-1, 3))
    assert set(result.get_array('origins')) == {'aimd'}
    assert result.base.attributes.get('has_stress') is True
    frames = list(result.iter_frames())
    assert frames[0].symbols == ['Cu', 'Cu', 'S', 'S']
    assert frames[4].symbols == ['P', 'S', 'S']


def test_from_pw_stress_conversion_and_extxyz_virial(aiida_profile, tmp_path):
    # QE: +160.21766208 GPa on the diagonal (compressed) = 1 eV/Å^3.
    qe = np.repeat((np.eye(3) * EV_PER_ANG3_IN_GPA)[None], 2, axis=0)
    qe[1, 0, 1] = qe[1, 1, 0] = -EV_PER_ANG3_IN_GPA / 2  # an off-diagonal component flips sign as well
    trajectory = pw_trajectory(2, seed=3, stress_gpa=qe)
    result = training_set_from_pw(origin=orm.Str('sign'), trajectory_0=trajectory)

    stresses = result.get_array('stresses')
    np.testing.assert_allclose(stresses[0], -np.eye(3), rtol=1e-15)  # ASE sign: tensile positive
    assert stresses[0, 0, 0] == -1.0
    np.testing.assert_allclose(stresses[1], [[-1.0, 0.5, 0.0], [0.5, -1.0, 0.0], [0.0, 0.0, -1.0]], rtol=1e-15)

    path = result.export_extxyz(tmp_path / 'train.xyz')
    comment = path.read_text().splitlines()[1]
    volume = A ** 3
    assert f'virial="{volume!r} 0.0 0.0 0.0 {volume!r} 0.0 0.0 0.0 {volume!r}"' in comment  # +V, compressed
    back = list(read_extxyz(path))
    np.testing.assert_allclose(back[0].virial, np.eye(3) * volume, rtol=1e-15)
    np.testing.assert_allclose(back[1].virial[0, 1], -volume / 2, rtol=1e-15)
    np.testing.assert_allclose(back[1].stress, stresses[1], rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize('skip, every, expected', [
    (None, None, [0, 1, 2, 3, 4, 5, 6]),
    (2, None, [2, 3, 4, 5, 6]),
    (None, 3, [0, 3, 6]),
    (1, 2, [1, 3, 5]),
    (5, 4, [5]),
])
def test_from_pw_skip_and_every(aiida_profile, skip, every, expected):
    trajectory = pw_trajectory(7, seed=4)
    kwargs = {}
    if skip is not None:
        kwargs['skip'] = orm.Int(skip)
    if every is not None:
        kwargs['every'] = orm.Int(every)
    result = training_set_from_pw(origin=orm.Str('md'), trajectory_md=trajectory, **kwargs)
    assert result.num_frames == len(expected)
    np.testing.assert_array_equal(result.get_array('energies'), [-10.0 - i for i in expected])
    np.testing.assert_array_equal(result.get_array('positions'),
                                  trajectory.get_array('positions')[expected].reshape(-1, 3))
    np.testing.assert_array_equal(result.get_array('forces'), trajectory.get_array('forces')[expected].reshape(-1, 3))
    np.testing.assert_allclose(result.get_array('stresses'),
                               -trajectory.get_array('stress')[expected] / EV_PER_ANG3_IN_GPA, rtol=1e-15)
    for name in ('skip', 'every'):
        if name in kwargs:
            assert incoming(result.creator)[name].value == kwargs[name].value


def test_from_pw_reads_md_temperatures_from_retrieved(aiida_profile):
    import io

    trajectory = pw_trajectory(3, seed=5)
    stdout = ''.join(
        f'     kinetic energy (Ekin) =        0.0{i}000000 Ry\n'
        f'     temperature           =      {300 + 10 * i}.00000000 K \n'
        f'     Ekin + Etot (const)   =      -20.00000000 Ry\n'
        for i in range(3)
    )
    retrieved = orm.FolderData()
    retrieved.base.repository.put_object_from_filelike(io.BytesIO(stdout.encode()), 'aiida.out')
    retrieved.store()
    result = training_set_from_pw(origin=orm.Str('aimd'), skip=orm.Int(1), trajectory_a=trajectory,
                                  retrieved_a=retrieved)
    np.testing.assert_array_equal(result.get_array('temperatures'), [310.0, 320.0])
    assert incoming(result.creator)['retrieved_a'].uuid == retrieved.uuid


def test_from_pw_refuses_bad_source_names(aiida_profile):
    trajectory = pw_trajectory(2, seed=6)
    with pytest.raises(ValueError, match='sources'):
        training_set_from_pw(origin=orm.Str('x'), output_trajectory=trajectory)
    retrieved = orm.FolderData().store()
    with pytest.raises(ValueError, match='retrieved_b given without trajectory_b'):
        training_set_from_pw(origin=orm.Str('x'), trajectory_a=trajectory, retrieved_b=retrieved)


# ----------------------------------------------------------------------------------------- merge / split


def test_merge_links_both_inputs(aiida_profile):
    set_a = small_set(1, 3)
    set_b = small_set(2, 2, symbols=('P', 'S'))
    merged = merge_training_sets(set_a=set_a, set_b=set_b)
    assert isinstance(merged, TrainingSetData) and merged.is_stored
    creator = merged.creator
    assert creator.process_label == 'merge_training_sets'
    links = creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    assert {entry.link_label: entry.node.uuid for entry in links} == {'set_a': set_a.uuid, 'set_b': set_b.uuid}
    assert merged.num_frames == 5
    assert merged.species == ['Cu', 'S', 'P']

    # From the merged set, a graph walk reaches both sources.
    qb = orm.QueryBuilder()
    qb.append(TrainingSetData, filters={'id': merged.pk}, tag='merged')
    qb.append(orm.CalcFunctionNode, with_outgoing='merged', tag='calc')
    qb.append(TrainingSetData, with_outgoing='calc', project='uuid')
    assert set(qb.all(flat=True)) == {set_a.uuid, set_b.uuid}


def test_merge_order_by_input_name_and_deduplicate_flag(aiida_profile):
    set_a = small_set(3, 2)
    frames = list(set_a.iter_frames())
    relabelled = TrainingSetData.from_frames(
        [Frame(f.symbols, f.cell, f.positions, energy=f.energy + 1, forces=f.forces) for f in frames]).store()
    # Input names are sorted: 'a_first' wins over 'b_second' regardless of keyword order.
    merged = merge_training_sets(b_second=relabelled, a_first=set_a)
    assert merged.num_frames == 2
    np.testing.assert_array_equal(merged.get_array('energies'), set_a.get_array('energies'))
    kept = merge_training_sets(deduplicate=orm.Bool(False), a_first=set_a, b_second=relabelled)
    assert kept.num_frames == 4
    assert incoming(kept.creator)['deduplicate'].value is False


def test_split_partitions_and_is_deterministic(aiida_profile):
    source = small_set(4, 12)
    outputs = split_training_set(training_set=source, test_fraction=orm.Float(0.25), seed=orm.Int(7))
    assert set(outputs) == {'train', 'test'}
    train, test = outputs['train'], outputs['test']
    assert train.is_stored and test.is_stored
    assert train.creator.uuid == test.creator.uuid
    assert incoming(train.creator)['training_set'].uuid == source.uuid
    assert (train.num_frames, test.num_frames) == (9, 3)

    hashes = source.structure_hashes()
    train_hashes, test_hashes = train.structure_hashes(), test.structure_hashes()
    assert not set(train_hashes) & set(test_hashes)
    assert sorted(train_hashes + test_hashes) == sorted(hashes)
    train_index, test_index = source.split_indices(0.25, 7)
    np.testing.assert_array_equal(test.get_array('positions'), source.subset(test_index).get_array('positions'))
    np.testing.assert_array_equal(train.get_array('energies'), source.get_array('energies')[train_index])

    again = split_training_set(training_set=source, test_fraction=orm.Float(0.25), seed=orm.Int(7))
    assert again['train'].uuid != train.uuid  # a new calculation, the same content
    assert again['test'].structure_hashes() == test_hashes
    assert again['train'].structure_hashes() == train_hashes
    # (a different seed giving a different split is covered for split_indices in tests/data)


def test_split_without_test_frames_returns_only_train(aiida_profile):
    source = small_set(5, 4)
    outputs = split_training_set(training_set=source, test_fraction=orm.Float(0.0), seed=orm.Int(0))
    assert set(outputs) == {'train'}
    assert outputs['train'].num_frames == 4
    with pytest.raises(ValueError, match='test_fraction'):
        split_training_set(training_set=source, test_fraction=orm.Float(1.0), seed=orm.Int(0))
