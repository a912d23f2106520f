"""``mlcampaign.al.loop`` for real: pw.x, motep and the daemon on PostgreSQL + RabbitMQ.

Two MTP iterations on 4-atom Cu2S2 cells. During iteration 2, while pw.x jobs of the DFT labelling run, the whole
daemon is killed with SIGKILL and started again: the loop must finish with no PwCalculation run twice. Beside it a
``dft.aimd`` runs under the same injected crashes. Then a second loop started from the first one's outputs continues
with iteration 3 without recomputing anything.
"""

import json
import subprocess
import sys
import time
import uuid

import pytest

from aiida_mlcampaign.workchains.crash_safe import CRASH_ENV, CRASH_LABELS_ENV
from tests.daemon.crash import sigkill_daemon
from tests.daemon.conftest import daemon_env
from tests.daemon.test_daemon import HERE, drop_database, run, verdi
from tests.helpers import require_service

pytestmark = [pytest.mark.daemon, pytest.mark.pw, pytest.mark.timeout(2400)]
SCRIPT = str(HERE / 'al_script.py')


def script(env, profile, *args, timeout=1200):
    output = run([sys.executable, SCRIPT, profile, *map(str, args)], env=env, timeout=timeout)
    return json.loads(output.strip().splitlines()[-1])


def wait_for(env, profile, pk, until, timeout):
    """The loop's state once ``until`` holds: 'terminated', or the iteration child ``until`` has pw.x jobs running."""
    state = script(env, profile, 'wait', pk, until, timeout, timeout=timeout + 120)
    assert state['reached'], f'timeout after {timeout} s; last state {state}'
    return state


@pytest.fixture
def al_env(tmp_path):
    require_service('PostgreSQL', '127.0.0.1', 5432)
    require_service('RabbitMQ', '127.0.0.1', 5672)
    return daemon_env(tmp_path, 'pw.x', 'motep', 'mlcampaign-explore')


def test_loop_survives_sigkill_and_continues_from_its_outputs(al_env, tmp_path):
    profile = 'mlcampaign-al'
    database = f'aiida_mlc_al_{uuid.uuid4().hex[:8]}'
    try:
        run(['aiida-mlcampaign', 'setup', '--profile', profile, '--storage', 'psql', '--broker', 'rabbitmq',
             '--db-name', database, '--mpiprocs', '1'], env=al_env)
        # As in test_nep_loop: the worker is also killed after every step of iteration 1 that submits or computes.
        crashes = tmp_path / 'crashes'
        # A dft.aimd runs beside the loop under the same crashes: after each segment's submission, after joining
        # the thermodynamics and after collecting the frames.
        daemon_env = {**al_env, CRASH_ENV: str(crashes),
                      CRASH_LABELS_ENV: r'^iteration_01_|^label_|^collect_frames$|^segment_|^join_thermo$'}
        verdi(profile, 'daemon', 'start', '2', env=daemon_env)
        aimd = script(al_env, profile, 'aimd')['pk']
        pk = script(al_env, profile, 'submit')['pk']

        wait_for(al_env, profile, pk, 'iteration_02_label', 1500)
        assert sigkill_daemon(profile) >= 2
        time.sleep(2)
        verdi(profile, 'daemon', 'start', '2', env=daemon_env)
        wait_for(al_env, profile, pk, 'terminated', 1500)

        report = script(al_env, profile, 'report', pk)
        assert report['finished_ok'], report
        assert report['pw_calculations'] == report['distinct_structures'], report  # nothing ran twice
        killed = sorted(path.name for path in crashes.iterdir())
        print(f'worker killed {len(killed)} times: {killed}; census {report["census"]}')
        family_steps = {'iteration_01_train', 'iteration_01_explore', 'iteration_01_test', 'iteration_01_select',
                        'iteration_01_statistics'}
        loop_steps = {'iteration_01_mtp', 'iteration_01_screen', 'iteration_01_label', 'iteration_01_evaluate',
                      'iteration_01_merge'}
        assert {f'MtpIterationWorkChain.{step}' for step in family_steps} <= set(killed)
        assert {f'ActiveLearningWorkChain.{step}' for step in loop_steps} <= set(killed)
        assert {'DftLabelWorkChain.collect_frames', 'DftAimdWorkChain.segment_000', 'DftAimdWorkChain.segment_001',
                'DftAimdWorkChain.join_thermo', 'DftAimdWorkChain.collect_frames'} <= set(killed)
        aimd_report = script(al_env, profile, 'aimd_report', aimd)
        print(f'dft.aimd under crashes: {aimd_report}')
        assert aimd_report['finished_ok'], aimd_report
        assert aimd_report['segments'] == ['segment_000', 'segment_001'] and aimd_report['temperatures'] == 3
        assert aimd_report['pw_calculations'] == 2, aimd_report  # one pw.x per segment, none run twice
        assert aimd_report['census']['duplicated'] == [] and aimd_report['census']['unfinished'] == [], aimd_report
        assert report['census']['duplicated'] == [] and report['census']['unfinished'] == [], report['census']
        assert report['last_iteration'] == 2 and [row['iteration'] for row in report['summary']] == [1, 2]
        assert report['stop_reason'].startswith('max_iterations')
        added = sum(row['labels_added'] for row in report['summary'])
        assert report['training_frames'] == report['input_frames'] + added and added >= 1
        for row in report['summary']:
            assert row['train_force_rmse'] is not None and 0.0 <= row['candidate_fraction'] <= 1.0

        again = script(al_env, profile, 'restart', pk)['pk']
        wait_for(al_env, profile, again, 'terminated', 1500)
        continued = script(al_env, profile, 'report', again)
        assert continued['finished_ok'], continued
        assert [row['iteration'] for row in continued['summary']] == [3]
        assert continued['input_frames'] == report['training_frames']
        # Only the new iteration's labels were computed by the continued loop.
        assert continued['pw_calculations'] == continued['summary'][0]['labels_added']
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=al_env, capture_output=True, check=False)
        drop_database(database)
