"""Work-chain steps that survive a crash of the daemon worker running them: nothing is submitted or computed twice.

Why: AiiDA saves a work chain's checkpoint when it starts waiting, not inside a step. A worker killed after a
step submitted a child (or ran a calcfunction) but before the next checkpoint resumes from the previous one and
runs the step again: a second CalcJob with the same link label, or a second calcfunction, and the first
calcfunction left "Running" forever if the kill came while it ran. The mixin closes that hole by looking, before
it submits or computes, at what this work chain already called under the same call link label:

* :meth:`CrashSafeSteps.submit`: a child already called under the label is returned instead of a new one (its
  task is in the broker: ``Runner.submit`` waits for the continue message before it returns); one the kill caught
  inside ``Runner.submit`` (stored, never checkpointed) is sealed as excepted and submitted again;
* :meth:`CrashSafeSteps.run_once`: a calcfunction that finished under the label gives its outputs again; one left
  unfinished by the crash is sealed as excepted (so nothing stays "Running") and the function runs again;
* :meth:`CrashSafeSteps.seal_interrupted_below`: the same for process functions inside children written elsewhere
  (``PwBaseWorkChain``), once those children have finished.

Every call of a step that submits or computes must therefore carry a ``metadata.call_link_label`` unique within the
work chain (the loops put the iteration in it). Steps submit nothing else and compute nothing else, so the window
between a child and the checkpoint holds only children that are found again.

The environment variable :data:`CRASH_ENV` is a test hook: a directory; after each labelled submission or
calcfunction whose label matches the regular expression in :data:`CRASH_LABELS_ENV` (if set) and has no marker
file there yet (one per work-chain class and label: ``<class>.<label>``), the worker writes the marker and kills
itself with SIGKILL, exactly where a real crash would hurt most.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal

from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ProcessState

__all__ = ('CRASH_ENV', 'CRASH_LABELS_ENV', 'NEVER_LAUNCHED', 'CrashSafeSteps', 'never_launched')

#: Test hook: a directory of marker files; see the module docstring. Never set it in production.
CRASH_ENV = 'MLCAMPAIGN_TEST_CRASH_AFTER'
#: Test hook: only labels this regular expression finds (``re.search``) crash.
CRASH_LABELS_ENV = 'MLCAMPAIGN_TEST_CRASH_LABELS'

_CALLS = (LinkType.CALL_CALC, LinkType.CALL_WORK)
#: The exception set on a process a crash cut short, which its caller then ran again.
INTERRUPTED = 'interrupted: the daemon worker running it died; the calling step ran it again'
#: The exception set on a child stored by a submission that a crash cut short, which its caller submitted again.
NEVER_LAUNCHED = 'never launched: the daemon worker died while submitting it; the calling step submitted it again'


def _call_link_label(inputs, kwargs) -> str | None:
    metadata = (inputs if inputs is not None else kwargs).get('metadata', {}) or {}
    label = metadata.get('call_link_label')
    return None if label in (None, 'CALL') else label


def _maybe_crash(label: str | None, owner: str) -> None:
    directory = os.environ.get(CRASH_ENV)
    if not directory or label is None:
        return
    pattern = os.environ.get(CRASH_LABELS_ENV)
    if pattern and not re.search(pattern, label):
        return
    marker = pathlib.Path(directory) / f'{owner}.{label}'  # once per work-chain class and label
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f'{os.getpid()}\n')
    os.kill(os.getpid(), signal.SIGKILL)


class CrashSafeSteps:
    """Mixin for a ``WorkChain`` (before it in the bases): idempotent ``submit`` and ``run_once``."""

    def _children_labelled(self, label: str) -> list[orm.ProcessNode]:
        """The processes this work chain called under ``label``, oldest first."""
        links = self.node.base.links.get_outgoing(link_type=_CALLS, link_label_filter=label).all()
        return sorted((link.node for link in links), key=lambda node: node.pk)

    def submit(self, process, inputs=None, **kwargs):
        label = _call_link_label(inputs, kwargs)
        if label is not None:
            launched = []
            for node in self._children_labelled(label):
                if never_launched(node):
                    # Killed inside Runner.submit: stored, but neither checkpointed nor handed to the broker, so
                    # no worker will ever run it. Sealed, and submitted afresh below.
                    _seal_interrupted(node, NEVER_LAUNCHED)
                    self.report(f'{label}: {node.process_label}<{node.pk}> was stored but never launched before a '
                                'restart; sealed as excepted and submitted again')
                elif not (node.is_excepted and (node.exception or '').startswith(NEVER_LAUNCHED)):
                    launched.append(node)
            if launched:
                node = launched[0]
                self.report(f'{label}: {node.process_label}<{node.pk}> was submitted before a restart; '
                            'continuing with it instead of submitting again')
                if not node.is_terminated and self._requeue_if_lost(node):
                    self.report(f'{label}: the broker had lost the task of {node.process_label}<{node.pk}> '
                                '(the worker died before sending it); queued it again')
                return node
        node = super().submit(process, inputs, **kwargs)
        _maybe_crash(label, type(self).__name__)
        return node

    def _requeue_if_lost(self, node: orm.ProcessNode) -> bool:
        """Queue ``node`` again if the broker holds no task for it (ZeroMQ only: its client sends a submission's
        task without waiting for the broker, so a kill right after ``submit`` can lose it)."""
        from aiida.manage import get_manager

        from aiida_mlcampaign.setup.daemon import requeue_lost_processes

        return bool(requeue_lost_processes(get_manager().get_profile(), [node.pk]))

    def run_once(self, function, *args, **kwargs):
        """``function(*args, **kwargs)`` (a calcfunction), unless it already finished under the same label."""
        label = _call_link_label(None, kwargs)
        if label is None:
            raise ValueError(f'{function.__name__}: run_once needs metadata.call_link_label')
        for node in self._children_labelled(label):
            if node.is_finished_ok:
                self.report(f'{label}: {node.process_label}<{node.pk}> finished before a restart; reusing its outputs')
                return _outputs(node)
            if not node.is_terminated:
                _seal_interrupted(node)
                self.report(f'{label}: {node.process_label}<{node.pk}> was interrupted by a restart; sealed as '
                            'excepted and run again')
        outputs = function(*args, **kwargs)
        _maybe_crash(label, type(self).__name__)
        return outputs


    def seal_interrupted_below(self, *nodes: orm.ProcessNode) -> int:
        """Seal as excepted the process functions below ``nodes`` that a crash left unfinished inside a finished
        caller, and return how many.

        A worker hosts many processes: a kill aimed at one step also cuts a calcfunction of another work chain, one
        not written here (``PwBaseWorkChain``'s ``create_kpoints_from_distance``). That caller re-runs its step and
        finishes; the interrupted function node can never run again (process functions are not resumable) and
        would stay "Created" or "Running" for ever. A process function whose caller has terminated is such an
        orphan for certain; so is a child that a kill caught inside ``Runner.submit`` (never launched), which the
        caller then submitted again.
        """
        sealed = 0
        stack = list(nodes)
        while stack:
            caller = stack.pop()
            for link in caller.base.links.get_outgoing(link_type=_CALLS).all():
                child = link.node
                stack.append(child)
                if caller.is_terminated and not child.is_terminated and (
                        isinstance(child, (orm.CalcFunctionNode, orm.WorkFunctionNode)) or never_launched(child)):
                    _seal_interrupted(child, NEVER_LAUNCHED if never_launched(child) else INTERRUPTED)
                    sealed += 1
                    self.report(f'{child.process_label}<{child.pk}> under {caller.process_label}<{caller.pk}> was '
                                'interrupted by a restart and its caller ran it again: sealed as excepted')
        return sealed


def _outputs(node: orm.ProcessNode):
    """What the calcfunction returned: its single ``result`` node, or the dict of its outputs."""
    links = node.base.links.get_outgoing(link_type=LinkType.CREATE).all()
    created = {link.link_label: link.node for link in links}
    if set(created) == {'result'}:
        return created['result']
    return created


def never_launched(node: orm.ProcessNode) -> bool:
    """Stored by ``submit`` but with no checkpoint and not terminated: the worker died before the process could be
    continued by anyone (what a kill between storing the node and saving its checkpoint leaves)."""
    return not node.is_terminated and node.checkpoint is None and node.process_state in (None, ProcessState.CREATED)


def _seal_interrupted(node: orm.ProcessNode, why: str = INTERRUPTED) -> None:
    node.set_process_state(ProcessState.EXCEPTED)
    node.set_exception(why)
    node.seal()
