"""Shared test fixtures.

aiida-core's own fixtures give every test session a throw-away profile (``core.sqlite_dos``, no
broker); tests that need the daemon or the production services build their own profiles in
``tests/daemon/``.
"""

import pathlib

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    return FIXTURES
