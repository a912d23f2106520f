"""Crashes for the daemon tests: SIGKILL a profile's whole daemon; what a crash could have left behind in a process
tree (the same call link label twice, a node never finished)."""

from aiida.common.links import LinkType

from aiida_mlcampaign.workchains.crash_safe import NEVER_LAUNCHED

CALLS = (LinkType.CALL_CALC, LinkType.CALL_WORK)
#: Seconds without any change in the profile's processes after which a waiting script wakes the broker.
STALL_SECONDS = 60.0


class Stall:
    """What ``aiida-mlcampaign daemon status`` does for a user who sees nothing move, done by a waiting test script:
    when no process of the profile has changed for :data:`STALL_SECONDS`, wake the ZeroMQ broker
    (``setup.daemon.wake_broker``) so that it requeues tasks it still holds for a killed worker. ``wakes`` counts
    the times it was needed, for the test's report."""

    def __init__(self):
        from aiida.manage import get_manager

        self.profile = get_manager().get_profile()
        self.last_change, self.signature, self.wakes = None, None, 0

    def check(self) -> None:
        import time

        from aiida import orm

        from aiida_mlcampaign.setup.daemon import wake_broker

        query = orm.QueryBuilder().append(orm.ProcessNode, project=['id', 'mtime'])
        signature = (query.count(), max((str(mtime) for _, mtime in query.iterall()), default=''))
        now = time.monotonic()
        if signature != self.signature:
            self.signature, self.last_change = signature, now
        elif now - self.last_change > STALL_SECONDS and wake_broker(self.profile):
            self.wakes += 1
            self.last_change = now


def census(root) -> dict:
    """Walk every process ``root`` called, at any depth: ``processes``, ``duplicated`` (``caller_pk:label`` of a
    CalcJob or work chain called more than once by one caller), ``rerun_functions`` (the same for process
    functions), ``unfinished`` (process nodes not terminated), ``calcjobs`` (count)."""
    seen, duplicated, rerun, unfinished, calcjobs = 0, [], [], [], 0
    stack = [root]
    while stack:
        node = stack.pop()
        seen += 1
        if not node.is_terminated:
            unfinished.append(f'{node.process_label}<{node.pk}> {node.process_state}')
        if node.process_type and node.node_type.startswith('process.calculation.calcjob'):
            calcjobs += 1
        labels = []
        for link in node.base.links.get_outgoing(link_type=CALLS).all():
            labels.append(link.link_label)
            stack.append(link.node)
        for label in sorted(set(labels)):
            if label != 'CALL' and labels.count(label) > 1:
                twins = [link.node for link in node.base.links.get_outgoing(link_type=CALLS, link_label_filter=label)
                         .all() if not (link.node.exception or '').startswith(NEVER_LAUNCHED)]
                if len(twins) < 2:
                    continue  # the other was stored by a submission the kill cut short, never ran, and is sealed
                # Work done twice: a CalcJob or work chain. A process function re-run after a crash inside a
                # caller not written here is tolerated if the interrupted one was sealed (checked by `unfinished`).
                kind = 'rerun' if all(twin.node_type.startswith('process.calculation.calcfunction')
                                      or twin.node_type.startswith('process.workflow.workfunction')
                                      for twin in twins) else 'duplicated'
                (rerun if kind == 'rerun' else duplicated).append(f'{node.pk}:{label}')
    return {'processes': seen, 'duplicated': duplicated, 'rerun_functions': rerun, 'unfinished': unfinished,
            'calcjobs': calcjobs}


def sigkill_daemon(profile: str) -> int:
    """Kill circus, every worker and the broker of ``profile`` at once, as an out-of-memory kill or power cut would;
    return how many processes were killed."""
    from aiida_mlcampaign.setup.daemon import sigkill_daemon_processes

    return sigkill_daemon_processes(profile)
