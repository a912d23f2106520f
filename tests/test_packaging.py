"""The distribution as a user gets it: a wheel in a clean virtual environment, every entry point loading."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).parent.parent

LOAD_ALL_ENTRY_POINTS = textwrap.dedent('''
    import importlib.metadata, importlib.util, json
    dist = importlib.metadata.distribution('aiida-mlcampaign')
    loaded = {}
    for entry_point in dist.entry_points:
        loaded[f'{entry_point.group}:{entry_point.name}'] = repr(entry_point.load())
    stray = [name for name in ('calculations', 'setup', 'workchains', 'parsers')
             if importlib.util.find_spec(name) is not None]
    print(json.dumps({'loaded': loaded, 'stray_top_level': stray}))
''')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    outdir = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(outdir), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=600)
    return next(outdir.glob('aiida_mlcampaign-*.whl'))


def test_wheel_maps_design_folders_into_one_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split('/')[0] for name in names if not name.split('/')[0].endswith('.dist-info')}
    assert top_levels == {'aiida_mlcampaign'}
    for module in ('workchains/dft_label.py', 'calculations/training_set.py', 'setup/pseudos.py',
                   'setup/ld1/P.pbe-n-rrkjus_psl.1.0.0.in', 'setup/ld1/cutoffs_psl_us_n.json',
                   'workchains/protocols/dft_label.yaml', 'setup/templates/computer-slurm-gpu.yaml',
                   'data/mtp_templates/08.mtp', 'mtp/explore.py', 'workchains/active_learning.py'):
        assert f'aiida_mlcampaign/{module}' in names


def test_wheel_installs_in_clean_venv_and_entry_points_load(wheel, tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=300)
    python = venv / 'bin' / 'python'
    install = subprocess.run([str(python), '-m', 'pip', 'install', '-q', str(wheel)], capture_output=True, text=True,
                             timeout=1200)
    assert install.returncode == 0, install.stderr
    result = subprocess.run([str(python), '-c', LOAD_ALL_ENTRY_POINTS], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300, env={**os.environ, 'AIIDA_PATH': str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['stray_top_level'] == []
    assert 'aiida.workflows:mlcampaign.dft.label' in report['loaded']
    assert 'aiida.workflows:mlcampaign.dft.aimd' in report['loaded']
    assert 'aiida.data:mlcampaign.training_set' in report['loaded']
    assert 'aiida.workflows:mlcampaign.al.loop' in report['loaded']
    assert 'console_scripts:mlcampaign-explore' in report['loaded']
    assert 'console_scripts:aiida-mlcampaign' in report['loaded']
    cli = subprocess.run([str(venv / 'bin' / 'aiida-mlcampaign'), '--help'], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and 'setup' in cli.stdout


def test_verdi_lists_the_plugins():
    workflows = subprocess.run(['verdi', 'plugin', 'list', 'aiida.workflows'], capture_output=True, text=True,
                               timeout=120).stdout
    assert 'mlcampaign.dft.label' in workflows and 'mlcampaign.dft.aimd' in workflows
    assert 'mlcampaign.al.loop' in workflows
    calculations = subprocess.run(['verdi', 'plugin', 'list', 'aiida.calculations'], capture_output=True, text=True,
                                  timeout=120).stdout
    for name in ('mlcampaign.motep.train', 'mlcampaign.motep.evaluate', 'mlcampaign.mtp.explore',
                 'mlcampaign.mlp.train', 'mlcampaign.mlp.calc_efs', 'mlcampaign.mlp.calc_errors',
                 'mlcampaign.mlp.calc_grade', 'mlcampaign.mlp.select_add', 'mlcampaign.lammps.mlip_explore'):
        assert name in calculations, name
    data = subprocess.run(['verdi', 'plugin', 'list', 'aiida.data'], capture_output=True, text=True,
                          timeout=120).stdout
    assert 'mlcampaign.training_set' in data and 'mlcampaign.potential.mtp' in data
