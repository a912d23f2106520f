"""The GPU options shared by ``GpumdCalculation`` and ``NepTrainCalculation`` (``calculations/gpu.py``), tested on both.

Every test takes ``gpu_job``: the CalcJob class and a minimal valid set of its inputs (the PbTe model and an 8-atom
cell for ``gpumd``; the two recorded PbTe frames for ``nep``; provenance in ``tests/fixtures/gpumd/SOURCES.md`` and
``SOURCES-nep.md``). Nothing is submitted: the job script is written by ``CalcJob.presubmit`` on a SLURM computer.
"""

import pathlib

import pytest
from aiida import orm
from aiida.common.folders import Folder
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from ase.build import bulk

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation
from aiida_mlcampaign.calculations.nep import NepTrainCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'
NEP = FIXTURES / 'nep' / 'pbte_train_master' / 'nep.txt'
TRAIN_XYZ = FIXTURES / 'pbte_train_master' / 'train.xyz'


@pytest.fixture(scope='module')
def stored_inputs(fake_code):
    """Minimal valid inputs of each CalcJob, stored once per module."""
    structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True)).store()
    return {
        'gpumd': (GpumdCalculation, {'code': fake_code('gpumd'), 'potential': NepPotentialData(NEP).store(),
                                     'structure': structure, 'stages': orm.List([{'ensemble': 'nve', 'run': 10}])}),
        'nep': (NepTrainCalculation, {'code': fake_code('nep'), 'settings': orm.Dict({'generation': 10}),
                                      'training_set': TrainingSetData.from_extxyz(TRAIN_XYZ,
                                                                                  species=['Te', 'Pb']).store()}),
    }


@pytest.fixture(params=['gpumd', 'nep'])
def gpu_job(request, stored_inputs):
    """``(CalcJob class, inputs)`` for each GPU CalcJob; the inputs dict is a fresh copy."""
    process_class, inputs = stored_inputs[request.param]
    return process_class, dict(inputs)


def refusal(process_class, inputs) -> str:
    error = process_class.spec().inputs.validate(inputs)
    assert error is not None, 'inputs were accepted'
    return str(error)


def test_gpu_requests_and_visible_devices(generate_calc_job, gpu_job):
    process_class, inputs = gpu_job
    options = {'cuda_visible_devices': '0,1', 'custom_scheduler_commands': '#SBATCH --qos=gpu'}
    calcinfo, _, process = generate_calc_job(process_class, {**inputs, 'gpus': orm.Int(2),
                                                             'metadata': {'options': options}})
    assert process.node.get_option('custom_scheduler_commands') == '#SBATCH --qos=gpu\n#SBATCH --gpus-per-node=2'
    assert calcinfo.prepend_text == 'export CUDA_VISIBLE_DEVICES=0,1'
    calcinfo, _, process = generate_calc_job(process_class, {**inputs, 'gpus': orm.Int(4),
                                                             'metadata': {'options': {'gres_syntax': True}}})
    assert process.node.get_option('custom_scheduler_commands') == '#SBATCH --gres=gpu:4'
    assert not calcinfo.prepend_text
    _, _, process = generate_calc_job(process_class, inputs)
    assert not process.node.get_option('custom_scheduler_commands')


@pytest.mark.parametrize('gres_syntax, directive', [(False, '#SBATCH --gpus-per-node=2'),
                                                    (True, '#SBATCH --gres=gpu:2')])
def test_job_script_header_requests_the_gpus(gpu_job, aiida_computer, tmp_path, gres_syntax, directive):
    """The directive is in the ``#SBATCH`` header (read by SLURM), the export after the computer's prepend text."""
    process_class, inputs = gpu_job
    computer = aiida_computer(scheduler_type='core.slurm', configuration_kwargs={'safe_interval': 0.0})
    computer.set_prepend_text('#SBATCH --partition=gpu\nmodule load cuda')
    code = orm.InstalledCode(label='gpu-exe', computer=computer, filepath_executable='/bin/true').store()
    options = {'gres_syntax': gres_syntax, 'cuda_visible_devices': '0,1', 'max_wallclock_seconds': 600}
    process = instantiate_process(get_manager().get_runner(), process_class,
                                  **{**inputs, 'code': code, 'gpus': orm.Int(2), 'metadata': {'options': options}})
    process.presubmit(Folder(str(tmp_path)))
    lines = (tmp_path / '_aiidasubmit.sh').read_text().splitlines()
    header = lines[:next(i for i, line in enumerate(lines) if line.strip() and not line.startswith('#'))]
    assert directive in header and '#SBATCH --partition=gpu' in header  # both read by SLURM
    assert lines.index('export CUDA_VISIBLE_DEVICES=0,1') > lines.index('module load cuda')


@pytest.mark.parametrize('change, message', [
    ({'gpus': 0}, 'gpus: expected a positive number of GPUs'),
    ({'gpus': 1, 'custom_scheduler_commands': '#SBATCH --gres=gpu:2'},
     'gpus: metadata.options.custom_scheduler_commands already requests GPUs'),
    ({'custom_scheduler_commands': '#SBATCH --gpus-per-node=0'},
     "metadata.options.custom_scheduler_commands: '#SBATCH --gpus-per-node=0' requests 0 GPUs"),
    ({'custom_scheduler_commands': '#SBATCH --gres=gpu:a100:-1'}, 'requests -1 GPUs'),
    ({'cuda_visible_devices': 'all'}, 'metadata.options.cuda_visible_devices: expected comma-separated GPU indices'),
    ({'gpus': 1, 'cuda_visible_devices': '0,1'}, 'metadata.options.cuda_visible_devices: 2 devices (0,1) but only 1'),
    ({'custom_scheduler_commands': '#SBATCH --gres=gpu:1', 'cuda_visible_devices': '0,1'}, 'but only 1 GPU(s)'),
])
def test_gpu_requests_refused_naming_the_field(gpu_job, change, message):
    process_class, inputs = gpu_job
    options = {key: value for key, value in change.items() if key != 'gpus'}
    if 'gpus' in change:
        inputs['gpus'] = orm.Int(change['gpus'])
    assert message in refusal(process_class, {**inputs, 'metadata': {'options': options}})


def test_computer_wide_gpu_request_conflicts_with_gpus(gpu_job, aiida_computer_local):
    process_class, inputs = gpu_job
    computer = aiida_computer_local(label='gpu-prepend')
    computer.set_prepend_text('#SBATCH --partition=gpu\n#SBATCH --gres=gpu:1\nmodule load cuda')
    code = orm.InstalledCode(label=f'{process_class.__name__}-gres', computer=computer,
                             filepath_executable='/bin/true').store()
    inputs = {**inputs, 'code': code}
    assert process_class.spec().inputs.validate(inputs) is None
    assert 'gpus: computer gpu-prepend requests GPUs in its prepend_text' in refusal(
        process_class, {**inputs, 'gpus': orm.Int(2)})
    assert 'but only 1 GPU(s)' in refusal(
        process_class, {**inputs, 'metadata': {'options': {'cuda_visible_devices': '0,1'}}})
    exports = {'metadata': {'options': {'environment_variables': {'OMP_NUM_THREADS': '1'}}}}
    assert ('metadata.options.environment_variables: aiida-core writes these exports before the computer\'s '
            'prepend_text, so SLURM would ignore the #SBATCH lines of computer gpu-prepend') in refusal(
        process_class, {**inputs, **exports})
