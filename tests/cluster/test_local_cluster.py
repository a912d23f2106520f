"""The local cluster itself, its computers (from the project's own templates too) and every CalcJob's job script
against the real ``sbatch`` -- all over SSH, none through ``core.local``/``core.direct``."""

import pathlib
import re
import subprocess

import pytest

from tests.cluster.conftest import wait_for_jobs

pytestmark = pytest.mark.cluster

TEMPLATES = pathlib.Path(__file__).parent.parent.parent / 'setup' / 'templates'


def _ssh(cluster, command: str) -> str:
    result = subprocess.run([*cluster.ssh_command(), command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gpu_requests_are_scheduled_over_ssh(local_cluster):
    assert all(local_cluster.status().values())
    ids = _ssh(local_cluster, 'sbatch --parsable -p gpu --gres=gpu:1 --wrap "echo one";'
                              'sbatch --parsable -p gpu --gpus-per-node=2 --wrap "echo two";'
                              'sbatch --parsable --wrap "echo cpu"').split()
    jobs = wait_for_jobs(local_cluster, ids)
    assert [jobs[i]['JobState'] for i in ids] == ['COMPLETED'] * 3
    assert [jobs[i]['Partition'] for i in ids] == ['gpu', 'gpu', 'cpu']
    assert 'gpu:1' in jobs[ids[0]]['TresPerNode'] and 'gpu:2' in jobs[ids[1]]['TresPerNode']


def _template(name: str, cluster, label: str) -> str:
    """The template as a user fills it in for the local cluster (there are no environment modules here)."""
    text = (TEMPLATES / name).read_text()
    values = {'<cpu-cluster>': label, '<gpu-cluster>': label, '<login.cluster.example.org>': '127.0.0.1',
              '<login.gpu-cluster.example.org>': '127.0.0.1', '/scratch/{username}/aiida/': f'{cluster.root}/tpl/',
              '<128>': '2', '<cpu-partition>': 'cpu', '<gpu-partition>': 'gpu', '<project-account>': 'rehearsal',
              '<1>': '1'}
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    text = re.sub(r'^\s*module (purge|load) .*\n', '', text, flags=re.M)
    assert not [line for line in text.splitlines() if '<' in line and not line.lstrip().startswith('#')], text
    return text


@pytest.mark.parametrize('template, label, partition, transport', [
    ('computer-slurm-cpu.yaml', 'tpl-cpu', 'cpu', 'core.ssh_async'),
    ('computer-slurm-gpu.yaml', 'tpl-gpu', 'gpu', 'core.ssh_async'),
    ('computer-slurm-cpu.yaml', 'tpl-cpu-paramiko', 'cpu', 'core.ssh')])
def test_templates_give_computers_that_run_jobs(aiida_profile, local_cluster, tmp_path, monkeypatch, template, label,
                                                partition, transport):
    """``verdi computer setup --config`` of the shipped template, ``verdi computer configure`` (``core.ssh_async``
    as the template says, or ``core.ssh`` as its comment offers) and ``verdi computer test``, as
    docs/local-cluster.md says, then a real job through it."""
    from aiida import orm
    from aiida.cmdline.commands.cmd_verdi import verdi
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory
    from click.testing import CliRunner

    # asyncssh reads ~/.ssh/config only: a home of this test's own, whose config includes the cluster's
    home = tmp_path / 'home'
    (home / '.ssh').mkdir(parents=True)
    (home / '.ssh' / 'config').write_text(f'Include {local_cluster.ssh_config}\n')
    monkeypatch.setenv('HOME', str(home))
    text = _template(template, local_cluster, label)
    if transport == 'core.ssh':
        text = text.replace('transport: core.ssh_async', 'transport: core.ssh')
    config = tmp_path / template
    config.write_text(text)
    runner = CliRunner()
    profile = ['-p', aiida_profile.name]
    result = runner.invoke(verdi, [*profile, 'computer', 'setup', '--config', str(config), '-n'])
    assert result.exit_code == 0, result.output
    if transport == 'core.ssh_async':
        options = ['--host', local_cluster.ssh_alias, '--safe-interval', '0']
    else:
        settings = local_cluster.transport_settings()
        options = ['--username', settings['username'], '--port', str(settings['port']), '--key-filename',
                   settings['key_filename'], '--no-look-for-keys', '--key-policy', 'AutoAddPolicy',
                   '--no-load-system-host-keys', '--safe-interval', '0']
    result = runner.invoke(verdi, [*profile, 'computer', 'configure', transport, label, '-n', *options])
    assert result.exit_code == 0, result.output
    result = runner.invoke(verdi, [*profile, 'computer', 'test', label])
    assert result.exit_code == 0 and 'Success' in result.output, result.output

    computer = orm.load_computer(label)
    computer.set_minimum_job_poll_interval(1)
    bash = orm.InstalledCode(label='bash', computer=computer, filepath_executable='/bin/bash').store()
    add = CalculationFactory('core.arithmetic.add')
    _, node = run_get_node(add, code=bash, x=orm.Int(2), y=orm.Int(3),
                           metadata={'options': {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 120}})
    assert node.is_finished_ok and node.outputs.sum.value == 5
    job = local_cluster.scontrol_job(node.get_job_id())
    assert job['Partition'] == partition and job['JobState'] == 'COMPLETED'
    if partition == 'gpu':
        assert 'gpu:1' in job['TresPerNode']


GPUMD_FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'


@pytest.mark.parametrize('job, gres_syntax', [('gpumd', False), ('nep', True)])
def test_gpu_calcjob_scripts_are_scheduled_with_their_gpus(aiida_profile, local_cluster, job, gres_syntax):
    """GPUMD's ``gpumd`` and ``nep`` CalcJobs with ``gpus=2`` (``--gpus-per-node=2``, or ``--gres=gpu:2``) through
    ``sbatch`` over SSH on a computer of the gpu partition without a GPU line of its own (as the GPU template says
    for multi-GPU jobs). There is no GPU here, so the executable is /bin/true: SLURM must accept, allocate two GPUs
    and run the script; the parser then finds no output (an exit code, 300s or 400s, not an exception)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from ase.build import bulk

    from aiida_mlcampaign.calculations.gpumd import GpumdCalculation
    from aiida_mlcampaign.calculations.nep import NepTrainCalculation
    from aiida_mlcampaign.data.nep_potential import NepPotentialData
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.setup.cluster import ensure_cluster_computer

    computer = ensure_cluster_computer(local_cluster, 'gpu-nodes', 'gpu')
    code = orm.InstalledCode(label=f'{job}-stand-in', computer=computer, filepath_executable='/bin/true').store()
    if job == 'gpumd':
        process, inputs = GpumdCalculation, {
            'potential': NepPotentialData(GPUMD_FIXTURES / 'nep' / 'pbte_train_master' / 'nep.txt'),
            'structure': orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True)),
            'stages': orm.List([{'ensemble': 'nve', 'run': 10}])}
    else:
        process, inputs = NepTrainCalculation, {
            'settings': orm.Dict({'generation': 10}),
            'training_set': TrainingSetData.from_extxyz(GPUMD_FIXTURES / 'pbte_train_master' / 'train.xyz',
                                                        species=['Te', 'Pb'])}
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 300,
               'gres_syntax': gres_syntax}
    _, node = run_get_node(process, code=code, gpus=orm.Int(2), metadata={'options': options}, **inputs)
    assert 300 <= node.exit_status < 500, (node.exit_status, node.exit_message)
    script = node.base.repository.get_object_content('_aiidasubmit.sh')
    assert ('#SBATCH --gres=gpu:2' if gres_syntax else '#SBATCH --gpus-per-node=2') in script
    info = local_cluster.scontrol_job(node.get_job_id())
    assert info['JobState'] == 'COMPLETED' and info['Partition'] == 'gpu' and 'gpu:2' in info['TresPerNode'], info
