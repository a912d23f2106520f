"""The NEP loop exploring with GPUMD: committee trained by ``nep``, MD by ``gpumd``, candidates from dump.xyz.

No GPU here, so both programs are the stand-ins that replay recorded real outputs
(``tests/standins/nep_replay.py``: two recorded PbTe models; ``tests/standins/gpumd_replay.py``: a recorded
PbTe ``dump.xyz`` of 250 atoms and a recorded ``thermo.out``). What is real: the parsers, the work chains,
streaming the dump into candidates and the committee deviations (calorine). The trust window is set above
what this frame shows, so no 250-atom frame is sent to pw.x: the DFT path is covered by the daemon test.
"""

import pathlib
import shutil

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
from tests.helpers import outputs_without_creator, python_program
from tests.workchains.test_active_learning_inputs import label_inputs  # noqa: F401 (fixture)

TESTS = pathlib.Path(__file__).parent.parent
RECORDED = TESTS / 'fixtures' / 'gpumd'


@pytest.fixture
def replay_codes(aiida_localhost, tmp_path):
    nep_runs = tmp_path / 'recorded-nep'
    for member, name in enumerate(('pbte_train_master', 'pbte_train_legacy_v3.9.5')):
        (nep_runs / f'member_{member}').mkdir(parents=True)
        for filename in ('nep.txt', 'loss.out'):
            shutil.copy(RECORDED / 'nep' / name / filename, nep_runs / f'member_{member}' / filename)
    md_run = tmp_path / 'recorded-gpumd'
    md_run.mkdir()
    shutil.copy(RECORDED / 'md' / 'pbte_static_dump_xyz_master' / 'dump.xyz', md_run / 'dump.xyz')
    shutil.copy(RECORDED / 'md' / 'carbon_nve_thermo_v5.6' / 'thermo.out', md_run / 'thermo.out')
    nep = python_program(tmp_path, 'nep', TESTS / 'standins' / 'nep_replay.py', {'MLCAMPAIGN_NEP_REPLAY_DIR': nep_runs})
    gpumd = python_program(tmp_path, 'gpumd', TESTS / 'standins' / 'gpumd_replay.py',
                           {'MLCAMPAIGN_GPUMD_REPLAY_DIR': md_run})
    return {name: orm.InstalledCode(label=f'{name}-STANDIN-replay', computer=aiida_localhost,
                                    filepath_executable=str(path)).store() for name, path in (('nep', nep),
                                                                                            ('gpumd', gpumd))}


def seed_set():
    """One labelled frame: the stand-in ``nep`` needs labels to write its parity files, not their values."""
    from aiida_mlcampaign.formats.frames import Frame

    atoms = bulk('PbTe', 'rocksalt', a=6.46)
    atoms.rattle(0.05, seed=3)
    frame = Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], positions=atoms.positions,
                  energy=-7.5, forces=[[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]])
    return TrainingSetData.from_frames([frame], species=['Te', 'Pb'])


def gpumd_builder(replay_codes, label_inputs, stages):
    options = {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 60}
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = seed_set()
    builder.nep.committee_size = orm.Int(2)
    builder.nep.train.code = replay_codes['nep']
    builder.nep.train.species = orm.List(['Te', 'Pb'])
    builder.nep.train.settings = orm.Dict({'generation': 1000})
    builder.nep.train.metadata = {'options': options}
    builder.nep.gpumd.gpumd.code = replay_codes['gpumd']
    builder.nep.gpumd.gpumd.structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))
    builder.nep.gpumd.gpumd.stages = orm.List(stages)
    builder.nep.gpumd.gpumd.metadata = {'options': options}
    builder.nep.trust_window = orm.List([5.0, 10.0])
    for key, value in label_inputs.items():
        setattr(builder.label, key, value)
    builder.max_iterations = orm.Int(1)
    return builder


STAGE = {'velocity': 300, 'time_step': 1, 'ensemble': 'nve', 'dump_thermo': 10, 'dump_restart': 20, 'run': 20}


def test_gpumd_exploration_without_dump_is_refused_at_launch(replay_codes, label_inputs):  # noqa: F811
    from tests.workchains.test_active_learning_inputs import refusal

    message = refusal(gpumd_builder(replay_codes, label_inputs, [STAGE]))
    assert "'inputs.nep': gpumd.gpumd.stages: no dump_xyz" in message, message
    no_thermo = {key: value for key, value in STAGE.items() if key != 'dump_thermo'}
    message = refusal(gpumd_builder(replay_codes, label_inputs, [{**no_thermo, 'dump_xyz': [10, 'dump.xyz']}]))
    assert "'inputs.nep.gpumd': gpumd.stages: stages[0]: dump_thermo" in message, message


def test_gpumd_exploration_feeds_the_committee(replay_codes, label_inputs):  # noqa: F811
    builder = gpumd_builder(replay_codes, label_inputs, [{**STAGE, 'dump_xyz': [10, 'dump.xyz']}])
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert outputs_without_creator(node) == []
    row = results['summary'].get_list()[0]
    assert row['explored_frames'] == row['candidates'] >= 1
    assert row['labels_added'] == 0 and row['candidate_fraction'] == 0.0
    assert results['stop_reason'].value.startswith('converged')
    candidates = results['iterations']['iteration_01']['candidates']
    assert isinstance(candidates, TrainingSetData) and candidates.get_array('natoms')[0] == 250
    # The candidates descend from the GPUMD trajectory; their DFT-free labels are absent.
    assert all(f.energy is None or f.energy != f.energy for f in candidates.iter_frames())
    select = next(n for n in node.called_descendants if n.process_label == 'select_by_committee')
    statistics = select.outputs.statistics.get_dict()
    assert statistics['candidates'] == candidates.num_frames and statistics['selected'] == 0
    assert 0.0 < statistics['max_deviation'] < 5.0  # two different recorded models: a real, finite spread
    assert set(results['committee']) == {'member_0', 'member_1'}
