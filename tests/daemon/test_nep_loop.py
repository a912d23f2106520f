"""The NEP family of ``mlcampaign.al.loop`` on a running daemon (embedded profile: sqlite + ZeroMQ), all real.

Two iterations on PbTe: a committee of two NEPs trained by neppo (different seeds) on pw.x labels, member 0 scored
on a held-out labelled frame, CPU exploration MD with the committee (calorine), selection by the committee's force
spread inside the trust window, pw.x labels of the selected frames, merge, then a retrain on the grown set. The
daemon worker is killed with SIGKILL after every step of iteration 1 that submits or computes; nothing may run
twice or stay unfinished. No stand-in anywhere.
"""

import json
import subprocess
import sys

import pytest

from aiida_mlcampaign.workchains.crash_safe import CRASH_ENV, CRASH_LABELS_ENV
from tests.daemon.conftest import daemon_env
from tests.daemon.test_daemon import HERE, run, verdi

pytestmark = [pytest.mark.daemon, pytest.mark.pw, pytest.mark.timeout(2400)]
SCRIPT = str(HERE / 'nep_script.py')


def script(env, profile, *args, timeout=1200):
    output = run([sys.executable, SCRIPT, profile, *map(str, args)], env=env, timeout=timeout)
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def nep_env(tmp_path):
    return daemon_env(tmp_path, 'pw.x', 'mlcampaign-explore', 'neppo')


def test_nep_committee_loop_with_neppo_on_the_daemon(nep_env, tmp_path):
    profile = 'mlcampaign-nep'
    try:
        run(['aiida-mlcampaign', 'setup', '--profile', profile, '--mpiprocs', '1'], env=nep_env)
        # Every labelled submission and calcfunction of iteration 1 (and of its dft.label) kills the daemon worker
        # right after it, once: circus starts a new worker, the broker hands it the loop again, and the loop resumes
        # from its last checkpoint, before the step that was cut short (workchains/crash_safe.py).
        crashes = tmp_path / 'crashes'
        verdi(profile, 'daemon', 'start', '2', env={**nep_env, CRASH_ENV: str(crashes),
                                                    CRASH_LABELS_ENV: r'^iteration_01_|^label_|^collect_frames$'})
        pk = script(nep_env, profile, 'submit')['pk']
        waited = script(nep_env, profile, 'wait', pk, 1800, timeout=1900)
        print(f'broker woken {waited["broker_wakes"]} time(s) while waiting')  # setup.daemon.wake_broker
        finished = waited['terminated']
        assert finished, 'the NEP loop did not finish in 30 min'
        report = script(nep_env, profile, 'report', pk)
        print('NEP loop report:', json.dumps(report, indent=1))  # figures for the issue notes (pytest -s)
        assert report['finished_ok'], report
        # Two members trained by the real neppo, seeds 1 and 2: two different models of the same species.
        assert report['train_codes'] == ['neppo']
        assert report['train_engines'] == [['neppo', 1], ['neppo', 2]]
        assert report['members'] == {'member_0': ['Pb', 'Te'], 'member_1': ['Pb', 'Te']}
        assert len(report['member_checksums']) == 2 and report['potential_is_member_0']
        row = report['summary'][0]
        assert row['explored_frames'] > 0 and 0.0 <= row['candidate_fraction'] <= 1.0
        assert row['train_force_rmse'] is not None
        assert 1 <= row['labels_added'] <= 2
        assert row['training_frames_after'] == report['input_frames'] + row['labels_added']
        assert row['new_frames_force_rmse'] is not None
        assert {'iteration_01_nep', 'iteration_01_train_member_0', 'iteration_01_train_member_1',
                'iteration_01_explore', 'iteration_01_select', 'iteration_01_screen', 'iteration_01_label',
                'iteration_01_evaluate', 'iteration_01_merge'} <= set(report['children'])
        # Retrain: the second committee is trained on the seed frames plus the pw.x labels of the first iteration.
        second = report['summary'][1]
        assert second['iteration'] == 2 and second['training_frames'] == row['training_frames_after']
        assert {'iteration_02_train_member_0', 'iteration_02_train_member_1'} <= set(report['children'])
        # The crashes: one after each step's work, none of it done twice, nothing left running.
        killed = sorted(path.name for path in crashes.iterdir())
        print(f'worker killed {len(killed)} times: {killed}; census {report["census"]}')
        family_steps = {'iteration_01_train_member_0', 'iteration_01_train_member_1', 'iteration_01_test',
                        'iteration_01_explore', 'iteration_01_select', 'iteration_01_statistics'}
        loop_steps = {'iteration_01_nep', 'iteration_01_screen', 'iteration_01_label', 'iteration_01_evaluate',
                      'iteration_01_merge'}
        assert {f'NepIterationWorkChain.{step}' for step in family_steps} <= set(killed)
        assert {f'ActiveLearningWorkChain.{step}' for step in loop_steps} <= set(killed)
        assert 'DftLabelWorkChain.collect_frames' in killed
        assert any(name.startswith('DftLabelWorkChain.label_') for name in killed)
        assert report['census']['duplicated'] == [] and report['census']['unfinished'] == [], report['census']
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=nep_env, capture_output=True, check=False)
