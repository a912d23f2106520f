"""The distribution as a user gets it: a wheel in a virtual environment, entry points loading, imports declared."""

import ast
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
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
    stray = [name for name in ('calculations', 'setup', 'workchains', 'parsers', 'data', 'cli')
             if importlib.util.find_spec(name) is not None]
    import aiida_mlcampaign
    print(json.dumps({'loaded': loaded, 'stray_top_level': stray, 'location': aiida_mlcampaign.__file__}))
''')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    # Built from a private copy of the tree: xdist may run this module's tests in several workers at once, and
    # setuptools builds in the source folder (build/, *.egg-info), so two builds there race and one fails.
    source = tmp_path_factory.mktemp('source') / 'tree'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns('.git', 'build', 'dist', '*.egg-info', '__pycache__',
                                                                '.pytest_cache', '.venv', 'venv', '.aiida*'))
    outdir = tmp_path_factory.mktemp('dist')
    built = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(outdir), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return next(outdir.glob('aiida_mlcampaign-*.whl'))


def test_wheel_maps_design_folders_into_one_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split('/')[0] for name in names if not name.split('/')[0].endswith('.dist-info')}
    assert top_levels == {'aiida_mlcampaign'}
    for module in ('workchains/dft_label.py', 'calculations/training_set.py', 'setup/pseudos.py',
                   'setup/ld1/P.pbe-n-rrkjus_psl.1.0.0.in', 'setup/ld1/cutoffs_psl_us_n.json',
                   'workchains/protocols/dft_label.yaml', 'setup/templates/computer-slurm-gpu.yaml',
                   'mtp/templates/08.mtp', 'exploration.py', 'workchains/active_learning.py'):
        assert f'aiida_mlcampaign/{module}' in names


def test_wheel_installs_in_a_venv_and_entry_points_load(wheel, tmp_path):
    """The wheel alone (``--no-deps``) in a new venv that sees this site's packages: its files, metadata and
    entry points, without resolving the whole dependency tree again (minutes of pip on 2 cores; that the declared
    dependencies cover every import is checked statically below)."""
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True, timeout=300)
    python = venv / 'bin' / 'python'
    install = subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    result = subprocess.run([str(python), '-c', LOAD_ALL_ENTRY_POINTS], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300, env={**os.environ, 'AIIDA_PATH': str(tmp_path),
                                                            'PYTHONPATH': ''})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['stray_top_level'] == []
    assert report['location'].startswith(str(venv)), report['location']  # the wheel, not the editable checkout
    assert 'aiida.workflows:mlcampaign.dft.label' in report['loaded']
    assert 'aiida.workflows:mlcampaign.dft.aimd' in report['loaded']
    assert 'aiida.data:mlcampaign.training_set' in report['loaded']
    assert 'aiida.workflows:mlcampaign.al.loop' in report['loaded']
    assert 'console_scripts:mlcampaign-explore' in report['loaded']
    assert 'console_scripts:aiida-mlcampaign' in report['loaded']
    cli = subprocess.run([str(venv / 'bin' / 'aiida-mlcampaign'), '--help'], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and 'setup' in cli.stdout


def _imported_top_levels(wheel) -> dict[str, str]:
    """Every top-level module the wheel's Python files import, with one file that imports it."""
    found = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith('.py'):
                for node in ast.walk(ast.parse(archive.read(name), filename=name)):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        found.setdefault(module.split('.')[0], name)
    return found


def test_every_third_party_import_is_a_declared_dependency(wheel):
    """What a clean install resolves comes from the wheel's ``Requires-Dist`` (extras included, for the modules
    that only an extra needs); an import that only works because something else pulled it in is refused."""
    metadata = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                                if n.endswith('.dist-info/METADATA'))).decode()
    declared = {re.split(r'[\s;<>=!~\[(]', line.split(':', 1)[1].strip())[0].lower().replace('_', '-')
                for line in metadata.splitlines() if line.startswith('Requires-Dist:')}
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, where in _imported_top_levels(wheel).items():
        if module in sys.stdlib_module_names or module in ('aiida_mlcampaign', '__future__'):
            continue
        distributions = {d.lower().replace('_', '-') for d in providers.get(module, [])}
        if not distributions & declared:
            undeclared[module] = (where, sorted(distributions))
    assert undeclared == {}, f'imported but not declared in pyproject.toml: {undeclared}'


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
