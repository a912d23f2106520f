"""What every daemon test shares: an environment of its own (AIIDA_PATH in the test's folder, the checkout on
PYTHONPATH), as a user's shell would be."""

import os
import pathlib

import pytest

from tests.helpers import require_executable


@pytest.fixture
def isolated_env(tmp_path):
    require_executable('pw.x')
    env = dict(os.environ)
    env['AIIDA_PATH'] = str(tmp_path / 'aiida')
    env['PYTHONPATH'] = str(pathlib.Path(__file__).parent.parent.parent) + os.pathsep + env.get('PYTHONPATH', '')
    return env
