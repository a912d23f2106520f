"""``aiida-mlcampaign quickstart`` refuses options that could only fail later, before a profile or any DFT.

(The quickstart itself runs end to end in ``tests/daemon/test_daemon.py``.)
"""

import pytest
from click.testing import CliRunner

from aiida_mlcampaign.cli import cli


@pytest.mark.parametrize(('options', 'message'), [
    (['--count', '1'], '--count: active learning (--iterations 2) holds one labelled frame out'),
    (['--count', '0'], '--count: must be an integer >= 1, got 0'),
    (['--iterations', '-1'], '--iterations: must be an integer >= 0, got -1'),
    (['--mpiprocs', '0'], '--mpiprocs: must be an integer >= 1, got 0'),
])
def test_bad_options_are_refused_before_anything_is_made(options, message, tmp_path, monkeypatch):
    monkeypatch.setenv('AIIDA_PATH', str(tmp_path))  # a profile made by mistake would land here
    result = CliRunner().invoke(cli, ['quickstart', '--profile', 'never-made', *options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not any(tmp_path.rglob('*never-made*')) and not any(tmp_path.rglob('config.json'))


def test_one_structure_without_active_learning_is_fine():
    from aiida_mlcampaign.cli.quickstart import check_options

    check_options(count=1, mpiprocs=1, iterations=0)
