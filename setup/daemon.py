"""Start the daemon so that it comes back from a crash: stale broker state cleared, subscriptions checked.

Why: on the embedded profile (``core.sqlite_dos`` + aiida-core's ZeroMQ broker) a daemon whose processes were all
killed with SIGKILL (an out-of-memory kill, a laptop that slept, a power cut) leaves its broker's files behind,
among them ``broker.sockets``, the path of the broker's socket directory. ``verdi daemon start`` starts the broker
and the workers side by side; aiida-core 2.9's ``ZeromqBroker.get_communicator`` waits for that file only while
it is *missing*, so a worker that reads the stale file before the new broker rewrites it connects to a socket that
no longer exists and never receives a task (seen in 8 of 15 restarts). Nothing says so: work stays Created or
Waiting. :func:`start_daemon` removes the dead broker's files first (the workers then wait for the new broker's),
kills workers that outlived their circus, starts the daemon and waits until the broker reports as many task
subscribers as workers; if they do not appear it stops, cleans and starts once more, and says what it did.

With RabbitMQ the broker is a separate service that keeps no such file: the same command kills orphaned workers
and starts the daemon; subscriptions are RabbitMQ's to keep.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import time

__all__ = ('DaemonStart', 'broker_status', 'queued_process_pks', 'requeue_lost_processes', 'start_daemon',
           'stop_daemon')


@dataclasses.dataclass
class DaemonStart:
    """What :func:`start_daemon` found and did."""

    profile: str
    broker: str
    workers: int
    subscribers: int | None = None
    attempts: int = 0
    seconds: float = 0.0
    cleared: list[str] = dataclasses.field(default_factory=list)
    killed_orphans: int = 0
    requeued: list[int] = dataclasses.field(default_factory=list)
    ok: bool = False

    def lines(self) -> list[str]:
        out = [f'profile {self.profile}: broker {self.broker}, {self.workers} worker(s)']
        if self.killed_orphans:
            out.append(f'killed {self.killed_orphans} daemon process(es) left over from a crash')
        if self.cleared:
            out.append(f'cleared the dead broker\'s files: {", ".join(self.cleared)}')
        if self.subscribers is not None:
            out.append(f'{self.subscribers} worker(s) subscribed to the broker after {self.seconds:.1f} s '
                       f'({self.attempts} start(s))')
        if self.requeued:
            out.append(f'queued again {len(self.requeued)} process(es) whose task the crash lost: '
                       + ' '.join(map(str, self.requeued)))
        out.append('daemon ready' if self.ok else 'daemon NOT ready: see verdi daemon logshow')
        return out


def _is_zeromq(profile) -> bool:
    return 'zeromq' in (profile.process_control_backend or '')


def _broker_dir(profile) -> pathlib.Path:
    from aiida.manage.configuration import get_config

    return pathlib.Path(get_config().filepaths(profile)['broker_service']['dir'])


def _alive(pid: int | None, needle: str) -> bool:
    import psutil

    try:
        return bool(pid) and needle in ' '.join(psutil.Process(int(pid)).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, TypeError, ValueError):
        return False


def _read_pid(path: pathlib.Path) -> int | None:
    """The pid in a pid file: ``aiida-zeromq-broker <pid>`` (aiida-core 2.9) or a bare pid."""
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def broker_status(profile) -> dict | None:
    """The ZeroMQ broker's own status file (``task_subscribers``, ``pending_tasks``, ``timestamp``, ``pid``), or
    None when there is none or its broker is dead."""
    if not _is_zeromq(profile):
        return None
    directory = _broker_dir(profile)
    try:
        status = json.loads((directory / 'broker.status').read_text())
    except (OSError, ValueError):
        return None
    return status if _alive(status.get('pid'), 'broker') else None


def clear_dead_broker(profile) -> list[str]:
    """Remove the files of a ZeroMQ broker that is no longer running; return their names."""
    if not _is_zeromq(profile):
        return []
    directory = _broker_dir(profile)
    if _alive(_read_pid(directory / 'broker.pid'), 'broker'):
        return []
    cleared = []
    sockets = directory / 'broker.sockets'
    if sockets.exists():
        try:
            stale = pathlib.Path(sockets.read_text().strip())
            if stale.is_dir() and stale.name.startswith('aiida_zeromq_'):
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    for name in ('broker.sockets', 'broker.pid', 'broker.status'):
        path = directory / name
        if path.exists():
            path.unlink(missing_ok=True)
            cleared.append(name)
    return cleared


def queued_process_pks(profile) -> set[int] | None:
    """The pks of the processes that the ZeroMQ broker holds a task for (waiting or handed to a worker), read from
    its persistent queue on disk; None for RabbitMQ, whose queues ``verdi process repair`` inspects.

    Why: aiida-core's ZeroMQ client sends ``continue`` tasks without waiting for the broker to store them
    (``Runner.submit`` passes ``no_reply=True``), so a worker killed within milliseconds of a submission leaves a
    checkpointed process that no task will ever continue, and aiida-core 2.9 has no ``process repair`` for this
    broker. Read only: the broker's own ``PersistentQueue`` moves files when it is opened.
    """
    if not _is_zeromq(profile):
        return None
    tasks = _broker_dir(profile) / 'storage' / 'tasks'
    pks = set()
    for state in ('pending', 'processing'):  # pending first: a task moving meanwhile is then seen in processing
        for path in sorted((tasks / state).glob('*.json')):
            try:
                body = json.loads(path.read_text()).get('body') or {}
                if body.get('task') == 'continue':
                    pks.add(int(body['args']['pid']))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
    return pks


def lost_processes(profile, pks=None) -> list[int]:
    """Unfinished, checkpointed processes (``pks``, or all of the profile) with no task in the ZeroMQ broker."""
    from aiida import orm

    queued = queued_process_pks(profile)
    if queued is None:
        return []
    query = orm.QueryBuilder().append(
        orm.ProcessNode, project=['id', 'node_type'],
        filters={'attributes.process_state': {'in': ['created', 'waiting', 'running']},
                 'attributes': {'has_key': 'checkpoints'},
                 **({'id': {'in': list(pks)}} if pks is not None else {})})
    # A process function run inside a step keeps no checkpoint (crash_safe seals the ones a crash cut); one that
    # was submitted has one and is continued like any process.
    return sorted(pk for pk, _ in query.iterall() if pk not in queued)


def wake_broker(profile) -> bool:
    """Connect to the ZeroMQ broker and hang up, so that it probes its workers and requeues the tasks of dead ones.

    Why: the broker hands a killed worker's tasks back to the queue when it sees the worker's connection drop, and it
    looks for dead workers only when some connection drops. Seen here: a worker SIGKILLed right after it took
    tasks, and the broker missed it; its tasks stayed "processing" for a worker that no longer existed, and the
    processes waited forever (no ``continue`` task is lost, so :func:`lost_processes` cannot see them). Any
    disconnect makes the broker probe every worker holding tasks and requeue those of the dead (aiida-core 2.9's
    ``ZmqBrokerServer._probe_workers``); this is such a disconnect. Harmless when every worker is alive. Returns
    whether the profile has a ZeroMQ broker to wake.
    """
    from aiida.plugins import BrokerFactory

    if not _is_zeromq(profile):
        return False
    # A broker object of its own: the caller's communicator (a daemon worker's!) must stay open.
    broker = BrokerFactory(profile.process_control_backend)(profile)
    try:
        broker.get_communicator()
        time.sleep(0.5)
    finally:
        broker.close()  # the disconnect
    time.sleep(0.5)
    return True


def requeue_lost_processes(profile, pks=None, *, settle: float = 1.0) -> list[int]:
    """Send a ``continue`` task for each process of :func:`lost_processes` (the ZeroMQ ``verdi process repair``)
    and return their pks. A process still missing after ``settle`` seconds is lost: a task in flight from a live
    client reaches the broker within milliseconds."""
    from aiida.manage import get_manager

    lost = lost_processes(profile, pks)
    if lost and settle:
        time.sleep(settle)
        lost = lost_processes(profile, lost)
    if lost:
        controller = get_manager().get_process_controller()
        for pk in lost:
            # With a reply the ZeroMQ broker answers once the task is on disk: nothing is lost if we exit next.
            controller.continue_process(pk, nowait=False, no_reply=False).result(timeout=30)
    return lost


#: What follows ``verdi -p PROFILE daemon`` in the command lines of circus, a worker and the ZeroMQ broker (circus's
#: statistics process is recognised by its log file).
DAEMON_ROLES = ('start-circus', 'worker', 'broker')


def is_daemon_process(words: list[str], profile_name: str) -> bool:
    """Whether a command line is one of ``profile_name``'s daemon processes (not, say, a shell or ``timeout``
    whose arguments happen to hold the same words)."""
    if any(word.startswith('from circus import stats') for word in words[:3]):
        # circus's statistics process: it outlives a SIGKILLed circus; its log file names the profile.
        return any(word.endswith(f'circus-{profile_name}.log') for word in words)
    if len(words) < 2 or not any(word.endswith('verdi') for word in words[:3]):
        return False
    try:
        role = words[words.index('daemon') + 1]
    except (ValueError, IndexError):
        return False
    named = any(words[k] in ('-p', '--profile') and words[k + 1] == profile_name for k in range(len(words) - 1))
    return role in DAEMON_ROLES and (named or f'--profile={profile_name}' in words)


def sigkill_daemon_processes(profile_name: str) -> int:
    """SIGKILL every process of ``profile_name``'s daemon (circus, its statistics process, workers, the broker),
    wait for them to end, and return how many there were."""
    import psutil

    victims = [process for process in psutil.process_iter(['cmdline', 'pid'])
               if process.info['pid'] != os.getpid() and is_daemon_process(process.info['cmdline'] or [], profile_name)]
    for process in victims:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)
    return len(victims)


def circus_running(client) -> bool:
    """Whether this profile's circus is alive; a pid file left by a SIGKILLed circus is removed (aiida-core's
    ``is_daemon_running`` only looks at the file)."""
    if _alive(client.get_daemon_pid(), 'circus'):
        return True
    pathlib.Path(client.circus_pid_file).unlink(missing_ok=True)
    return False


def _kill_orphans(profile, client) -> int:
    """Workers and brokers still running although their circus is gone (it was SIGKILLed): they hold tasks and
    old sockets, and a new daemon would run beside them."""
    return 0 if circus_running(client) else sigkill_daemon_processes(profile.name)


def _wait_subscribed(profile, workers: int, since: float, timeout: float) -> int | None:
    """The broker's task subscribers once they reach ``workers`` in a status written after ``since``; else the
    last count seen (None if the broker wrote none)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        status = broker_status(profile)
        if status is not None and status.get('timestamp', 0) >= since:
            seen = int(status.get('task_subscribers', 0))
            if seen >= workers:
                return seen
        time.sleep(0.5)
    return seen


def stop_daemon(profile, client=None, *, wait: bool = True) -> None:
    from aiida.engine.daemon.client import DaemonNotRunningException, get_daemon_client

    client = client or get_daemon_client(profile.name)
    try:
        client.stop_daemon(wait=wait)
    except DaemonNotRunningException:
        pass


def start_daemon(profile, workers: int = 1, *, timeout: float = 60.0, restart: bool = False) -> DaemonStart:
    """Start (or with ``restart`` stop, then start) the daemon of ``profile`` so that its workers receive tasks."""
    from aiida.engine.daemon.client import get_daemon_client

    if workers < 1:
        raise ValueError(f'workers: must be >= 1, got {workers}')
    client = get_daemon_client(profile.name)
    result = DaemonStart(profile=profile.name, broker='zeromq' if _is_zeromq(profile) else 'rabbitmq',
                         workers=workers)
    started = time.monotonic()
    if restart and circus_running(client):
        stop_daemon(profile, client)
    for _ in range(2):
        result.killed_orphans += _kill_orphans(profile, client)
        result.cleared += [name for name in clear_dead_broker(profile) if name not in result.cleared]
        since = time.time()
        running = circus_running(client)
        if not running:
            client.start_daemon(number_workers=workers)
            result.attempts += 1
        if result.broker != 'zeromq':
            result.ok = circus_running(client)
            break
        # A daemon already running has written its status within the last STATUS_INTERVAL (5 s).
        result.subscribers = _wait_subscribed(profile, workers, since - 6.0 if running else since, timeout)
        if result.subscribers is not None and result.subscribers >= workers:
            result.ok = True
            wake_broker(profile)  # tasks still held for a worker killed before the restart go back to the queue
            result.requeued = requeue_lost_processes(profile)
            break
        stop_daemon(profile, client)  # a worker missed the broker: once more from a clean state
    result.seconds = time.monotonic() - started
    return result
