"""A daemon killed with SIGKILL (every process: circus, workers, the broker) comes back with one command.

``aiida-mlcampaign daemon start`` after each of 3 kills in a row, on the embedded profile (sqlite + aiida-core's
ZeroMQ broker) and on the production profile (PostgreSQL + RabbitMQ): a work chain queued before each kill must
finish, and a ``dft.label`` running through the first kills must finish with one pw.x per structure and nothing
left unfinished. Figures are printed for the README (pytest -s).
"""

import json
import subprocess
import sys
import uuid

import pytest

from tests.daemon.test_daemon import HERE, check_report, drop_database, run
from tests.helpers import require_service

pytestmark = [pytest.mark.daemon, pytest.mark.pw, pytest.mark.timeout(1500)]
SCRIPT = str(HERE / 'restart_script.py')
KILLS = 3


def check(env, profile, zeromq):
    result = json.loads(run([sys.executable, SCRIPT, profile, str(KILLS)], env=env).strip().splitlines()[-1])
    cycles = result['cycles']
    print(f'{profile}: resumed {result["resumed"]}/{KILLS} ({result["running_at_kill"]} running at the kill), new '
          f'work ran {result["new_work_ran"]}/{KILLS}; {result["kills_mid_label"]} kills during dft.label; start '
          f'{min(c["start_seconds"] for c in cycles):.1f}-{max(c["start_seconds"] for c in cycles):.1f} s; both work '
          f'chains done {max(c["finished_after_start"] for c in cycles):.1f} s after it at most')
    assert [c for c in cycles if c['start_rc'] != 0] == []
    assert all(c['killed'] >= 3 for c in cycles), cycles  # circus, worker and broker (or worker) were killed
    assert result['resumed'] == KILLS and result['new_work_ran'] == KILLS, cycles
    assert result['kills_mid_label'] >= 1
    assert result['label_ok'], result
    assert result['pw_calculations'] == result['pw_structures'] == 3 and result['unfinished'] == [], result
    if zeromq:  # a checkpointed work chain whose task never reached the broker: queued again, finished
        assert result['lost_task_requeued'] and result['requeue_reported'], cycles[0]
    return result


def test_embedded_daemon_survives_3_sigkills(isolated_env):
    profile = 'mlcampaign-restart'
    try:
        run(['aiida-mlcampaign', 'setup', '--profile', profile, '--mpiprocs', '1', '--elements', 'Cu,S'],
            env=isolated_env)
        check(isolated_env, profile, zeromq=True)
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=isolated_env, capture_output=True, check=False)


def test_production_daemon_survives_3_sigkills(isolated_env, tmp_path):
    """Also the production layout itself: storage and broker as `setup` reports them and `verdi status` shows
    them, and the dft.label that ran through the kills queried back from its TrainingSetData to each pw.x."""
    require_service('PostgreSQL', '127.0.0.1', 5432)
    require_service('RabbitMQ', '127.0.0.1', 5672)
    profile = 'mlcampaign-restart-psql'
    database = f'aiida_mlc_restart_{uuid.uuid4().hex[:8]}'
    try:
        output = run(['aiida-mlcampaign', 'setup', '--profile', profile, '--storage', 'psql', '--broker', 'rabbitmq',
                      '--db-name', database, '--mpiprocs', '1', '--elements', 'Cu,S'], env=isolated_env)
        assert 'core.psql_dos' in output and 'core.rabbitmq' in output, output
        status = subprocess.run(['verdi', '-p', profile, 'status'], env=isolated_env, capture_output=True, text=True,
                                check=False).stdout
        assert 'postgresql' in status and 'RabbitMQ' in status, status
        result = check(isolated_env, profile, zeromq=False)
        report = json.loads(run([sys.executable, str(HERE / 'submit_and_check.py'), profile, str(tmp_path),
                                 '--quickstart-pk', str(result['label_training_set'])],
                                env=isolated_env).strip().splitlines()[-1])
        check_report(report)
        assert report['storage'] == 'PsqlDosBackend'
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=isolated_env, capture_output=True, check=False)
        drop_database(database)
