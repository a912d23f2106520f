"""Shared test fixtures.

aiida-core's own fixtures give every test session a throw-away profile (``core.sqlite_dos``, no
broker); tests that need the daemon or the production services build their own profiles in
``tests/daemon/``.
"""

import pathlib
import sys

import pytest

#: Test-only plugins, registered as an installed distribution would be (a ``*.dist-info`` with entry points on
#: ``sys.path``): ``mlcampaign.al.emt``, a third active-learning family (tests/families/emt.py). Before anything
#: reads the entry points, so that the loop's inputs have its namespace in every test process.
sys.path.insert(0, str(pathlib.Path(__file__).parent / 'plugins'))

pytest_plugins = ['aiida.tools.pytest_fixtures']

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


@pytest.fixture(autouse=True)
def _aiida_logging_as_before():
    """A ``verdi`` command run in this process (click's CliRunner) sets aiida's CLI logging globals and reconfigures
    logging without the database handler, so the process reports of every later test on this worker would go
    unstored (``orm.Log`` empty). Put both back after such a test."""
    yield
    from aiida.common import log

    if log.CLI_ACTIVE is None and log.CLI_LOG_LEVEL is None:
        return
    log.CLI_ACTIVE, log.CLI_LOG_LEVEL = None, None
    from aiida.manage import get_manager

    log.configure_logging(with_orm=get_manager().get_profile() is not None)


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


#: The longest tests (minutes each on 2 cores: real daemons, pw.x, neppo), longest first. pytest-xdist (``-n 4
#: --dist load --maxschedchunk 1`` in pyproject.toml) gives each worker two consecutive tests to start with, then
#: one test at a time to whichever worker is free: each of these is followed by a short test, so that the first
#: four start at once on four workers and the rest go to the first worker that is free.
LONGEST_FIRST = (
    'tests/daemon/test_nep_loop.py::',
    'tests/daemon/test_daemon.py::test_quickstart',
    'tests/daemon/test_active_learning.py::',
    'tests/daemon/test_daemon_restart.py::test_embedded',
    'tests/daemon/test_daemon_restart.py::test_production',
    'tests/daemon/',
)


def _rank(item) -> int:
    for rank, prefix in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    ordered = sorted(items, key=_rank)  # stable: the rest keeps the collection order
    longest = [item for item in ordered if _rank(item) < len(LONGEST_FIRST)]
    rest = ordered[len(longest):]
    interleaved = []
    for item in longest:
        interleaved.append(item)
        if rest:
            interleaved.append(rest.pop(0))
    items[:] = interleaved + rest
