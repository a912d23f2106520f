"""``setup.daemon``: a dead ZeroMQ broker's files are removed before a start, a live broker's never.

(The start itself, 3 SIGKILLs in a row on both profiles, is ``tests/daemon/test_daemon_restart.py``.)
"""

import json
import subprocess
import sys
import time

import pytest

from aiida_mlcampaign.setup import daemon


@pytest.fixture
def broker_dir(tmp_path, monkeypatch):
    directory = tmp_path / 'broker'
    directory.mkdir()
    monkeypatch.setattr(daemon, '_broker_dir', lambda profile: directory)
    monkeypatch.setattr(daemon, '_is_zeromq', lambda profile: True)
    return directory


def _files(directory, pid, sockets):
    (directory / 'broker.pid').write_text(f'aiida-zeromq-broker {pid}')  # as aiida-core 2.9.4 writes it
    (directory / 'broker.sockets').write_text(str(sockets))
    (directory / 'broker.status').write_text(json.dumps({'pid': pid, 'task_subscribers': 2, 'timestamp': time.time()}))


def test_a_dead_brokers_files_are_cleared(broker_dir, tmp_path):
    sockets = tmp_path / 'aiida_zeromq_stale'
    sockets.mkdir()
    (sockets / 'router.sock').write_text('')
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True,
                          check=True).stdout.strip()
    dead = int(dead)
    _files(broker_dir, dead, sockets)
    assert daemon.broker_status(None) is None  # its status file names a dead process
    assert sorted(daemon.clear_dead_broker(None)) == ['broker.pid', 'broker.sockets', 'broker.status']
    assert not sockets.exists() and list(broker_dir.iterdir()) == []


def test_a_live_brokers_files_are_kept(broker_dir, tmp_path):
    sockets = tmp_path / 'aiida_zeromq_live'
    sockets.mkdir()
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'broker'])
    try:
        _files(broker_dir, live.pid, sockets)
        assert daemon.clear_dead_broker(None) == []
        assert daemon.broker_status(None)['task_subscribers'] == 2
        assert sockets.exists() and len(list(broker_dir.iterdir())) == 3
    finally:
        live.kill()


@pytest.mark.parametrize(('words', 'expected'), [
    (['/usr/bin/python', '/usr/bin/verdi', '-p', 'smoke', 'daemon', 'worker'], True),
    (['/usr/bin/python', '/usr/bin/verdi', '-p', 'smoke', 'daemon', 'start-circus', '2'], True),
    (['/usr/bin/python', '/usr/bin/verdi', '-p', 'smoke', 'daemon', 'broker', '--service-dir', '/x'], True),
    (['/usr/bin/python', '/usr/bin/verdi', '-p', 'smoke2', 'daemon', 'worker'], False),
    (['timeout', '120', 'aiida-mlcampaign', 'daemon', 'start', '1', '-p', 'smoke'], False),  # the caller's parent
    (['/usr/bin/python', '/usr/bin/verdi', '-p', 'smoke', 'daemon', 'status'], False),
    (['/usr/bin/python', '-c', 'from circus import stats; stats.main()', '--log-output', '/a/circus-smoke.log'], True),
    (['/usr/bin/python', '-c', 'from circus import stats; stats.main()', '--log-output', '/a/circus-other.log'], False),
])
def test_only_the_profiles_daemon_processes_are_recognised(words, expected):
    assert daemon.is_daemon_process(words, 'smoke') is expected


def test_the_brokers_queue_is_read_without_moving_a_file(broker_dir):
    """Tasks written by aiida-core's own ``PersistentQueue``, one waiting and one handed to a worker."""
    from aiida.brokers.zeromq.queue import PersistentQueue
    from plumpy.process_comms import create_continue_body

    queue = PersistentQueue(broker_dir / 'storage' / 'tasks')
    for task_id, pid in (('a', 11), ('b', 12)):
        queue.push(task_id, {'id': task_id, 'body': create_continue_body(pid=pid, nowait=False)})
    queue.pop()  # 11 is now "processing"
    (broker_dir / 'storage' / 'tasks' / 'pending' / '1_junk.json').write_text('{not json')
    before = sorted(p.relative_to(broker_dir).as_posix() for p in broker_dir.rglob('*.json'))
    assert daemon.queued_process_pks(None) == {11, 12}
    assert sorted(p.relative_to(broker_dir).as_posix() for p in broker_dir.rglob('*.json')) == before


def test_a_checkpointed_process_without_a_task_is_found_lost(broker_dir, aiida_profile):
    """What a worker killed right after ``submit`` leaves on ZeroMQ: a checkpoint, no task."""
    from aiida import orm
    from aiida.engine import ProcessState

    def process(state, checkpoint=True, node_class=orm.WorkflowNode):
        node = node_class()
        node.set_process_state(state)
        if checkpoint:
            node.set_checkpoint('checkpoint')
        return node.store().pk

    lost = process(ProcessState.CREATED)
    queued = process(ProcessState.WAITING)
    never_checkpointed = process(ProcessState.CREATED, checkpoint=False)
    function = process(ProcessState.RUNNING, checkpoint=False, node_class=orm.CalcFunctionNode)  # run in a step
    finished = process(ProcessState.FINISHED)
    from aiida.brokers.zeromq.queue import PersistentQueue
    from plumpy.process_comms import create_continue_body

    PersistentQueue(broker_dir / 'storage' / 'tasks').push('q', {'body': create_continue_body(pid=queued)})
    pks = [lost, queued, never_checkpointed, function, finished]
    assert daemon.lost_processes(aiida_profile, pks) == [lost]
