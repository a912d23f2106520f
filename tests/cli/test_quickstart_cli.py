"""``aiida-mlcampaign quickstart`` refuses options and campaign files that could only fail later, before a profile
is made or any DFT runs.

(The quickstart itself runs end to end in ``tests/daemon/test_daemon.py``.)
"""

import pathlib

import pytest
from click.testing import CliRunner

from aiida_mlcampaign.cli import cli


@pytest.mark.parametrize(('options', 'message', 'code'), [
    (['--mpiprocs', '0'], '--mpiprocs: must be an integer >= 1, got 0', 2),
    (['--timeout', '0'], '--timeout: must be positive, got 0.0', 2),
    (['--config', 'BROKEN'], 'stages.active_learning.mtp.level: must be an even number', 1),
])
def test_bad_options_are_refused_before_anything_is_made(options, message, code, tmp_path, monkeypatch):
    from aiida_mlcampaign.cli.quickstart import quickstart_config_path

    monkeypatch.setenv('AIIDA_PATH', str(tmp_path))  # a profile made by mistake would land here
    broken = tmp_path / 'broken.yaml'
    broken.write_text(quickstart_config_path().read_text().replace('level: 6', 'level: 7'))
    options = [str(broken) if option == 'BROKEN' else option for option in options]
    result = CliRunner().invoke(cli, ['quickstart', '--profile', 'never-made', *options])
    assert result.exit_code == code and message in result.output, result.output
    assert not any(tmp_path.rglob('*never-made*')) and not any(tmp_path.rglob('config.json'))


def test_the_quickstart_file_validates():
    example = pathlib.Path(__file__).parents[2] / 'examples' / 'quickstart.yaml'
    result = CliRunner().invoke(cli, ['campaign', 'validate', str(example)])
    assert result.exit_code == 0 and 'config OK' in result.output
