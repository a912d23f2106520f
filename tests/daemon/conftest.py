"""What every daemon test shares: an environment of its own (AIIDA_PATH in the test's folder, the checkout on
PYTHONPATH), as a user's shell would be."""

import os
import pathlib

import pytest

from tests.helpers import require_executable


def daemon_env(tmp_path, *executables: str) -> dict:
    """The environment of a daemon test that runs ``executables`` (each required): its own AIIDA_PATH, the checkout
    on PYTHONPATH."""
    for executable in executables:
        require_executable(executable)
    env = dict(os.environ)
    env['AIIDA_PATH'] = str(tmp_path / 'aiida')
    env['PYTHONPATH'] = str(pathlib.Path(__file__).parent.parent.parent) + os.pathsep + env.get('PYTHONPATH', '')
    return env


@pytest.fixture
def isolated_env(tmp_path):
    return daemon_env(tmp_path, 'pw.x')
