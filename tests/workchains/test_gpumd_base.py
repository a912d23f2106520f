"""``mlcampaign.gpumd.base`` end to end with the engine on ``aiida_localhost`` and the GPUMD replay stand-in.

``tests/standins/gpumd_replay.py`` replays the recorded ``thermo.out`` of ``tests/fixtures/gpumd/md/
carbon_nve_thermo_v5.6`` (real GPUMD output; provenance in ``md/SOURCES.md``); no GPU and no dynamics here. With
``MLCAMPAIGN_GPUMD_REPLAY_STOP=walltime`` it stops a fresh start (model.xyz without velocities) half way, with
``=blowup`` it writes NaN rows in the second half of every job.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.gpumd_run import read_run_in
from aiida_mlcampaign.workchains.gpumd_base import GpumdBaseWorkChain, protocol_stages
from tests.helpers import python_program

TESTS = pathlib.Path(__file__).parent.parent
STANDIN = TESTS / 'standins' / 'gpumd_replay.py'
REPLAY = TESTS / 'fixtures' / 'gpumd' / 'md' / 'carbon_nve_thermo_v5.6'
NEP = TESTS / 'fixtures' / 'gpumd' / 'nep' / 'pbte_train_master' / 'nep.txt'


@pytest.fixture
def replay_code(aiida_localhost, tmp_path):
    """``replay_code(stop)``: an InstalledCode running the stand-in with ``MLCAMPAIGN_GPUMD_REPLAY_STOP=stop``."""

    def factory(stop: str):
        wrapper = python_program(tmp_path, f'gpumd-{stop}', STANDIN, {'MLCAMPAIGN_GPUMD_REPLAY_DIR': REPLAY,
                                                                      'MLCAMPAIGN_GPUMD_REPLAY_STOP': stop})
        return orm.InstalledCode(label=f'gpumd-replay-{stop}', computer=aiida_localhost,
                                 filepath_executable=str(wrapper)).store()

    return factory


def builder_for(code, stages):
    builder = GpumdBaseWorkChain.get_builder()
    builder.gpumd.code = code
    builder.gpumd.potential = NepPotentialData(NEP)
    builder.gpumd.structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))
    builder.gpumd.stages = orm.List(stages)
    builder.gpumd.metadata.options = {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 60}
    return builder


def run_in_of(calculation) -> str:
    return pathlib.Path(calculation.outputs.remote_folder.get_remote_path(), 'run.in').read_text()


def test_walltime_continues_from_the_stored_restart_with_the_remaining_steps(replay_code):
    stages = [
        {'velocity': 300, 'time_step': 1, 'ensemble': ['nvt_ber', 300, 600, 100], 'dump_thermo': 10,
         'dump_restart': 20, 'run': 100},
        {'ensemble': 'nve', 'dump_thermo': 10, 'dump_restart': 20, 'run': 60},
    ]
    results, node = run_get_node(builder_for(replay_code('walltime'), stages))
    assert node.is_finished_ok, node.exit_status
    first, second = sorted(node.called, key=lambda n: n.ctime)[:2]
    assert len(node.called) == 3  # two GpumdCalculations and the merge_thermo calcfunction
    # the stand-in stopped at step 80 of 160 without the finish line
    assert first.exit_status == GpumdCalculation.exit_codes.ERROR_NOT_FINISHED.status == 400
    assert first.outputs.output_parameters['restart'] == {'stage': 0, 'step_in_stage': 80, 'step': 80,
                                                          'time_fs': 80.0, 'exact': True}
    # The continuation's model.xyz is the stopped job's restart output node, not a file on the remote.
    assert second.inputs.restart.uuid == first.outputs.restart.uuid
    assert 'structure' not in second.inputs
    continued = read_run_in(run_in_of(second))['stages']
    assert continued == [
        {'time_step': {'dt': 1.0}, 'ensemble': {'name': 'nvt_ber', 'T1': 540.0, 'T2': 600.0, 'T_coup': 100.0},
         'dump_thermo': 10, 'dump_restart': 20, 'run': 20},
        {'ensemble': {'name': 'nve'}, 'dump_thermo': 10, 'dump_restart': 20, 'run': 60},
    ]
    assert second.is_finished_ok
    thermo = results['thermo']
    assert np.array_equal(thermo.get_array('step'), np.arange(10, 161, 10))
    assert np.array_equal(thermo.get_array('segment'), [0] * 8 + [1] * 8)
    assert thermo.base.attributes.get('units')['time_fs'] == 'fs'
    assert results['restart'].uuid == second.outputs.restart.uuid


def test_blowup_halves_the_time_step_once_then_fails(replay_code):
    stages = [{'velocity': 300, 'ensemble': ['nvt_nhc', 300, 300, 100], 'dump_thermo': 10, 'dump_restart': 50,
               'run': 100}]
    _, node = run_get_node(builder_for(replay_code('blowup'), stages))
    assert node.exit_status == GpumdBaseWorkChain.exit_codes.ERROR_BLOWUP_AFTER_TIMESTEP_HALVING.status
    first, second = sorted(node.called, key=lambda n: n.ctime)
    assert first.exit_status == second.exit_status == 500
    assert second.inputs.structure.uuid == first.inputs.structure.uuid  # rerun from the same start
    halved = read_run_in(run_in_of(second))['stages']
    assert halved == [{'time_step': {'dt': 0.5}, 'velocity': {'temperature': 300.0},
                       'ensemble': {'name': 'nvt_nhc', 'T1': 300.0, 'T2': 300.0, 'T_coup': 200.0},
                       'dump_thermo': 20, 'dump_restart': 100, 'run': 200}]
    assert 'not finite' in node.exit_message


def test_protocol_builder_and_restartability_checks(aiida_localhost):
    code = orm.InstalledCode(label='gpumd-protocol', computer=aiida_localhost, filepath_executable='/bin/true')
    structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))
    builder = GpumdBaseWorkChain.get_builder_from_protocol(code, NepPotentialData(NEP), structure, temperature=600,
                                                           protocol='fast')
    stages = builder.gpumd.stages.get_list()
    assert [s['run'] for s in stages] == [1000, 5000] and stages[0]['velocity'] == 600.0
    assert builder.max_iterations.value == 10 and 'dump_xyz' not in stages[1]
    moderate = GpumdBaseWorkChain.get_protocol_inputs('moderate')['md']
    assert protocol_stages(300.0, moderate)[1]['dump_xyz']['interval'] == 10000

    spec = GpumdBaseWorkChain.spec().inputs
    inputs = {'gpumd': {'code': code, 'potential': NepPotentialData(NEP), 'structure': structure}}
    missing = {**inputs['gpumd'], 'stages': orm.List([{'ensemble': 'nve', 'run': 100}])}
    assert 'stages[0]: dump_thermo: needed in every run block' in str(spec.validate({'gpumd': missing}))
    skewed = {**inputs['gpumd'], 'stages': orm.List([{'ensemble': 'nve', 'dump_thermo': 30, 'dump_restart': 50,
                                                      'run': 100}])}
    assert 'dump_restart: interval 50 must be a multiple of dump_thermo 30' in str(spec.validate({'gpumd': skewed}))
