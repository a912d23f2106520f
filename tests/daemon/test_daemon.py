"""The daemon path, for real: pw.x labels submitted to a running daemon on both profile layouts.

(a) the embedded layout (core.sqlite_dos + aiida-core's ZeroMQ broker), exercised here through the README
quickstart command itself, and (b) the production layout (core.psql_dos on PostgreSQL + RabbitMQ on
127.0.0.1), in ``test_daemon_restart.py``, whose ``dft.label`` runs through 3 kills of the daemon. Each runs
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


def _kill_and_restart(profile, env) -> int:
    """SIGKILL every process of the profile's daemon (circus, workers, the ZeroMQ broker), then start it again."""
    killed = int(run([sys.executable, '-c', 'import sys; from aiida_mlcampaign.setup.daemon import '
                      'sigkill_daemon_processes as k; print(k(sys.argv[1]))', profile], env=env).strip())
    run(['aiida-mlcampaign', 'daemon', 'start', '-p', profile], env=env)
    return killed


#: The quickstart's campaign, slimmed for the suite (fewer labels, steps and generations; every stage kept).
SLIM = (('max_steps: 4', 'max_steps: 2'), ('count: 4', 'count: 3'), ('      steps: 10\n', '      steps: 5\n'),
        ('generations: 200', 'generations: 60'), ('steps: 400', 'steps: 200'),
        ('temperatures: [600, 900]   # K', 'temperatures: [600]   # K'))


def slim_quickstart(tmp_path) -> pathlib.Path:
    from aiida_mlcampaign.cli.quickstart import quickstart_config_path

    text = quickstart_config_path().read_text()
    for old, new in SLIM:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / 'campaign.yaml'
    path.write_text(text)
    return path


#: Lines of the quickstart's progress after which the daemon is killed: while the seed labels and the AIMD run,
#: and while the NEP's active learning runs (the MTP's loop finished: its labels are in the pool).
KILL_AT = ('stage seed:', 'stage active_learning: nep')


def test_quickstart_campaign_survives_daemon_kills(tmp_path):
    """The README quickstart is the campaign (sqlite + ZeroMQ, daemon, real pw.x, motep and neppo). The daemon is
    SIGKILLed twice mid-campaign and started again; the campaign finishes with no DFT label computed twice and
    none lost, both potentials trained, the report written; status, query and cost work on it running and
    finished."""
    from tests.daemon.conftest import daemon_env

    env = daemon_env(tmp_path, 'pw.x', 'motep', 'neppo')
    profile = 'mlcampaign-quickstart'
    report_dir = tmp_path / 'report'
    process = subprocess.Popen(['aiida-mlcampaign', 'quickstart', '-o', str(report_dir), '--config',
                                str(slim_quickstart(tmp_path))], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    lines, kills, pk, running_status = [], [], None, None
    try:
        for line in process.stdout:
            lines.append(line)
            match = re.search(r'CampaignWorkChain<(\d+)>', line)
            if match and pk is None:
                pk = int(match.group(1))
            if len(kills) < len(KILL_AT) and KILL_AT[len(kills)] in line:
                if running_status is None:
                    running_status = run(['aiida-mlcampaign', 'campaign', 'status', '-p', profile, str(pk)], env=env)
                    for command in ('cost', 'query'):
                        run(['aiida-mlcampaign', 'campaign', command, '-p', profile, str(pk)], env=env)
                kills.append(_kill_and_restart(profile, env))
        assert process.wait(timeout=1500) == 0, ''.join(lines)
        output = ''.join(lines)
        print(output)
        assert len(kills) == 2 and all(killed >= 2 for killed in kills), (kills, output)
        assert '[>] seed' in running_status and re.search(r'<\d+>: (running|waiting)', running_status), running_status
        for word in ('stage done', 'report:', 'campaign status', 'daemon stop', f'campaign query  -p {profile} {pk}'):
            assert word in output, word
        check = json.loads(run([sys.executable, str(HERE / 'campaign_check.py'), profile, str(pk)],
                               env=env).strip().splitlines()[-1])
        print(check)
        assert check['finished_ok'], check
        assert check['labelled_twice'] == [] and check['scf_labels'] == check['distinct_scf_structures'], check
        assert check['unfinished_or_failed_scf'] == [], check
        # none lost: every seed frame and every label a loop added is in the training or the test set
        assert check['frames'] == check['seed_frames'] + check['labels_added'], check
        assert check['labels_added'] >= 1 and check['pw_behind_training_set'] >= check['scf_labels'] - 1, check
        assert check['potentials'] == {'mtp': 'MtpPotentialData', 'nep': 'NepPotentialData'}, check
        assert all(check['trained'].values()), check
        for figure in ('parity', 'speed'):
            assert figure in check['figures'], check
        assert (report_dir / 'report.html').is_file() and (report_dir / 'report.md').is_file()
        assert len(list((report_dir / 'figures').glob('*.png'))) == len(check['figures'])
        for command in ('status', 'cost', 'query'):
            text = run(['aiida-mlcampaign', 'campaign', command, '-p', profile, str(pk)], env=env)
            assert str(pk) in text or 'pw' in text, (command, text)
        again = run(['aiida-mlcampaign', 'setup', '--profile', profile], env=env)
        assert '(reused)' in again
    finally:
        if process.poll() is None:
            process.kill()
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=env, capture_output=True, check=False)


def drop_database(name):
    try:
        import psycopg

        with psycopg.connect(host='127.0.0.1', user='postgres', dbname='postgres', autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - cleanup must never mask the test result
        pass
