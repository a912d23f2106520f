"""The NEP family of ``mlcampaign.al.loop`` on a running daemon (embedded profile: sqlite + ZeroMQ).

One iteration on PbTe: a committee of two NEPs (the stand-in ``nep`` replays two recorded real GPUMD
models, see ``tests/standins/nep_replay.py``; no GPU here), CPU exploration MD with them, selection by
the committee's force spread inside the trust window, pw.x labels of the selected frames, merge.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.daemon.test_daemon import HERE, run, verdi
from tests.helpers import require_executable

pytestmark = [pytest.mark.daemon, pytest.mark.pw, pytest.mark.timeout(1500)]
SCRIPT = str(HERE / 'nep_script.py')
RECORDED = HERE.parent / 'fixtures' / 'gpumd' / 'nep'


def script(env, profile, replay, *args):
    output = run([sys.executable, SCRIPT, profile, str(replay), *map(str, args)], env=env)
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def nep_env(tmp_path):
    for executable in ('pw.x', 'mlcampaign-explore'):
        require_executable(executable)
    env = dict(os.environ)
    env['AIIDA_PATH'] = str(tmp_path / 'aiida')
    env['PYTHONPATH'] = str(HERE.parent.parent) + os.pathsep + env.get('PYTHONPATH', '')
    return env


@pytest.fixture
def replay_dir(tmp_path):
    """Two recorded real PbTe runs of GPUMD's nep, one per committee member."""
    folder = tmp_path / 'recorded-nep-runs'
    for member, run_name in enumerate(('pbte_train_master', 'pbte_train_legacy_v3.9.5')):
        target = folder / f'member_{member}'
        target.mkdir(parents=True)
        for name in ('nep.txt', 'loss.out'):
            shutil.copy(RECORDED / run_name / name, target / name)
    return folder


def test_nep_committee_loop_on_the_daemon(nep_env, replay_dir):
    profile = 'mlcampaign-nep'
    try:
        run(['aiida-mlcampaign', 'setup', '--profile', profile, '--mpiprocs', '1'], env=nep_env)
        verdi(profile, 'daemon', 'start', '2', env=nep_env)
        pk = script(nep_env, profile, replay_dir, 'submit')['pk']
        deadline = time.monotonic() + 1200
        while not script(nep_env, profile, replay_dir, 'state', pk)['terminated']:
            assert time.monotonic() < deadline, 'the NEP loop did not finish in 20 min'
            time.sleep(3)
        report = script(nep_env, profile, replay_dir, 'report', pk)
        print('NEP loop report:', json.dumps(report, indent=1))  # figures for the issue notes (pytest -s)
        assert report['finished_ok'], report
        assert report['train_codes'] == ['nep-STANDIN-replays-recorded-models']
        # Two members with different (recorded) models, both PbTe in the recorded type order.
        assert report['members'] == {'member_0': ['Te', 'Pb'], 'member_1': ['Te', 'Pb']}
        assert len(report['member_checksums']) == 2 and report['potential_is_member_0']
        row = report['summary'][0]
        assert row['explored_frames'] > 0 and 0.0 <= row['candidate_fraction'] <= 1.0
        assert row['train_force_rmse'] is not None
        assert 1 <= row['labels_added'] <= 2
        assert report['training_frames'] == report['input_frames'] + row['labels_added']
        assert row['new_frames_force_rmse'] is not None
        assert {'iteration_01_train_member_0', 'iteration_01_train_member_1', 'iteration_01_explore',
                'iteration_01_select', 'iteration_01_label', 'iteration_01_evaluate',
                'iteration_01_merge'} <= set(report['children'])
    finally:
        subprocess.run(['verdi', '-p', profile, 'daemon', 'stop'], env=nep_env, capture_output=True, check=False)
