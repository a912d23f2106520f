"""Fast tier: the handlers of ``mlcampaign.gpumd.base`` on generated CalcJob nodes, no executable run (as
aiida-quantumespresso tests ``PwBaseWorkChain``'s handlers): each failure a real job can end with is built as a
node with the outputs the parser would have attached, and the handler's decision is checked directly."""

import io

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation
from aiida_mlcampaign.workchains.gpumd_base import GpumdBaseWorkChain
from tests.workchains.test_gpumd_base import builder_for

STAGES = [
    {'velocity': 300, 'time_step': 1, 'ensemble': ['nvt_ber', 300, 600, 100], 'dump_thermo': 10, 'dump_restart': 20,
     'run': 100},
    {'ensemble': 'nve', 'dump_thermo': 10, 'dump_restart': 20, 'run': 60},
]


@pytest.fixture
def generate_workchain(aiida_localhost):
    def generate():
        code = orm.InstalledCode(label='gpumd-handlers', computer=aiida_localhost, filepath_executable='/bin/true')
        process = instantiate_process(get_manager().get_runner(), builder_for(code.store(), STAGES))
        process.setup()
        return process

    return generate


@pytest.fixture
def generate_calculation(aiida_localhost):
    """A finished ``GpumdCalculation`` node with ``exit_code`` and the outputs a parser attaches."""

    def generate(exit_code, restart_point=None, with_restart=True):
        node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:mlcampaign.gpumd.md')
        node.set_process_state('finished')
        node.set_exit_status(exit_code.status)
        node.set_exit_message(exit_code.message)
        node.store()
        outputs = {'output_parameters': orm.Dict({'restart': restart_point})}
        if with_restart:
            outputs['restart'] = orm.SinglefileData(io.BytesIO(b'8\nLattice="..."\n'), filename='restart.xyz')
        for label, output in outputs.items():
            output.base.links.add_incoming(node, LinkType.CREATE, label)
            output.store()
        return node

    return generate


def test_walltime_continues_from_the_restart_with_what_is_left(generate_workchain, generate_calculation):
    process = generate_workchain()
    walltime = GpumdCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
    assert walltime.status == 120  # aiida-core's own code, handled by its label
    point = {'stage': 0, 'step_in_stage': 40, 'step': 40, 'time_fs': 40.0, 'exact': True}
    calculation = generate_calculation(walltime, point)
    report = process.handle_stopped_early(calculation)
    assert report.do_break and report.exit_code.status == 0  # go on: submit the next job
    assert process.ctx.inputs.restart.uuid == calculation.outputs.restart.uuid
    assert 'structure' not in process.ctx.inputs
    assert [stage['run'] for stage in process.ctx.stages] == [60, 60]  # 100 - 40 steps of stage 0, then stage 1
    assert process.ctx.offset == {'step': 40, 'time_fs': 40.0}


def test_stopped_without_a_usable_restart_reruns_the_segment(generate_workchain, generate_calculation):
    process = generate_workchain()
    calculation = generate_calculation(GpumdCalculation.exit_codes.ERROR_NOT_FINISHED, None, with_restart=False)
    report = process.handle_stopped_early(calculation)
    assert report.do_break and report.exit_code.status == 0
    assert 'restart' not in process.ctx.inputs and [stage['run'] for stage in process.ctx.stages] == [100, 60]


def test_stopped_after_the_last_dump_at_the_end_is_done(generate_workchain, generate_calculation):
    process = generate_workchain()
    point = {'stage': 1, 'step_in_stage': 60, 'step': 160, 'time_fs': 160.0, 'exact': True}
    report = process.handle_stopped_early(generate_calculation(GpumdCalculation.exit_codes.ERROR_NOT_FINISHED, point))
    assert report.exit_code.status == 0 and process.ctx.is_finished


def test_blowup_halves_the_time_step_once(generate_workchain, generate_calculation):
    process = generate_workchain()
    blowup = GpumdCalculation.exit_codes.ERROR_BLOWUP.format(detail='temperature_K is not finite')
    report = process.handle_blowup(generate_calculation(blowup))
    assert report.exit_code.status == 0 and process.ctx.halved
    assert process.ctx.stages[0]['time_step'] == {'dt': 0.5}
    assert [stage['run'] for stage in process.ctx.stages] == [200, 120]  # twice the steps for the same time
    again = process.handle_blowup(generate_calculation(blowup))
    assert again.exit_code.status == GpumdBaseWorkChain.exit_codes.ERROR_BLOWUP_AFTER_TIMESTEP_HALVING.status
