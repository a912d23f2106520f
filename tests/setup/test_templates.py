"""The computer and code YAML templates are accepted by ``verdi computer setup`` / ``verdi code create``."""

import pathlib
import re

import yaml
from click.testing import CliRunner

TEMPLATES = pathlib.Path(__file__).parent.parent.parent / 'setup' / 'templates'

#: What a user would type over each placeholder.
FILLED = {
    '<cpu-cluster>': 'cpu-cluster', '<gpu-cluster>': 'gpu-cluster', '<login.cluster.example.org>': 'login.example.org',
    '<login.gpu-cluster.example.org>': 'gpu.example.org', '<128>': '128', '<1>': '1',
}


def filled(path, tmp_path):
    text = path.read_text()
    for placeholder, value in FILLED.items():
        text = text.replace(placeholder, value)
    text = re.sub(r'<[^<>]+>', 'filled-in', text)
    target = tmp_path / path.name
    target.write_text(text)
    return target


def test_templates_are_valid_yaml_with_placeholders_marked():
    # campaign-*.yaml is the quickstart's campaign config: tests/workchains/test_campaign.py checks it equals
    # examples/quickstart.yaml, which tests/campaign/test_config.py validates against the campaign schema
    for path in [*TEMPLATES.glob('computer-*.yaml'), *TEMPLATES.glob('code-*.yaml')]:
        content = yaml.safe_load(path.read_text())
        assert 'label' in content
        if 'slurm' in path.name:
            assert '<' in path.read_text(), f'{path.name} should mark what the user must fill in'


def test_gpu_template_requests_gpus():
    text = (TEMPLATES / 'computer-slurm-gpu.yaml').read_text()
    assert '#SBATCH --gres=gpu:' in text and 'CUDA_VISIBLE_DEVICES' in text and 'module load' in text


def test_verdi_accepts_every_template(aiida_profile_clean, tmp_path):
    from aiida import orm
    from aiida.cmdline.commands.cmd_verdi import verdi

    runner = CliRunner()
    profile = ['-p', aiida_profile_clean.name]
    computers = sorted(TEMPLATES.glob('computer-*.yaml'))
    for path in computers:
        result = runner.invoke(verdi, [*profile, 'computer', 'setup', '--config', str(filled(path, tmp_path)), '-n'])
        assert result.exit_code == 0, (path.name, result.output)
    assert {c.label for c in orm.Computer.collection.all()} == {'localhost', 'cpu-cluster', 'gpu-cluster'}
    gpu = orm.load_computer('gpu-cluster')
    assert gpu.scheduler_type == 'core.slurm' and '--gres=gpu:1' in gpu.get_prepend_text()

    for path in sorted(TEMPLATES.glob('code-*.yaml')):
        result = runner.invoke(
            verdi, [*profile, 'code', 'create', 'core.code.installed', '--config', str(filled(path, tmp_path)), '-n']
        )
        assert result.exit_code == 0, (path.name, result.output)
    pw = orm.load_code('pw@localhost')
    assert 'MALLOC_MMAP_MAX_=0' in pw.prepend_text and pw.default_calc_job_plugin == 'quantumespresso.pw'
