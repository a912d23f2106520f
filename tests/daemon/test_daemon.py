"""The daemon path, for real: pw.x labels submitted to a running daemon on both profile layouts.

(a) the embedded layout (core.sqlite_dos + aiida-core's ZeroMQ broker), exercised here through the README
quickstart command itself, and (b) the production layout (core.psql_dos on PostgreSQL + RabbitMQ on
127.0.0.1), in ``test_daemon_restart.py``, whose ``dft.label`` runs through 20 kills of the daemon. Each runs
in its own AIIDA_PATH and process, as a user would. Under CI=true a missing service fails the test instead of
skipping it.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest


HERE = pathlib.Path(__file__).parent
pytestmark = [pytest.mark.daemon, pytest.mark.pw, pytest.mark.timeout(1500)]


def run(command, env, timeout=1200):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f'{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    return result.stdout


def verdi(profile, *args, env):
    return run(['verdi', '-p', profile, *args], env=env)


def check_report(report):
    assert report['finished_ok'], report
    frame_calcs = report['frame_calcs']
    assert len(frame_calcs) == report['frames'] >= 2
    # One finished-ok PwCalculation per frame, found by a QueryBuilder walk from the TrainingSetData.
    assert sorted(report['query_calcs']) == sorted(frame_calcs)
    assert all(status == 0 for status in report['query_calcs'].values())
    assert report['max_force_error'] < 1e-8


def test_quickstart_on_embedded_profile(isolated_env, tmp_path):
    """The README quickstart: sqlite + ZeroMQ, daemon, real pw.x; then the acceptance queries."""
    profile = 'mlcampaign-quickstart'
    try:
        output = run(['aiida-mlcampaign', 'quickstart', '--iterations', '1'], env=isolated_env)
        assert 'stop reason: max_iterations' in output and 'force RMSE test' in output
        assert 'TrainingSetData PK' in output
        pk = int(re.search(r'TrainingSetData PK\s+(\d+)', output).group(1))
        status = verdi(profile, 'status', env=isolated_env)
        assert 'sqlite' in status.lower()
        processes = verdi(profile, 'process', 'list', '-a', '-p', '1', env=isolated_env)
        assert 'DftLabelWorkChain' in processes and 'Finished [0]' in processes
        report = json.loads(run([sys.executable, str(HERE / 'submit_and_check.py'), profile, str(tmp_path),
                                 '--quickstart-pk', str(pk)], env=isolated_env).strip().splitlines()[-1])
        check_report(report)
        # A second setup reuses everything instantly.
        again = run(['aiida-mlcampaign', 'setup', '--profile', profile], env=isolated_env)
        assert '(reused)' in again
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=isolated_env, capture_output=True, check=False)


def drop_database(name):
    try:
        import psycopg

        with psycopg.connect(host='127.0.0.1', user='postgres', dbname='postgres', autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - cleanup must never mask the test result
        pass
