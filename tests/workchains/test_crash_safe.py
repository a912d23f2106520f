"""``CrashSafeSteps``: a step run again after a crash finds what its first run submitted or computed.

The daemon tests (``tests/daemon/test_nep_loop.py``, ``test_active_learning.py``) kill the worker for real at
every labelled submission and calcfunction of the loops; here each rule is checked in-process, by running the
same step body twice as the restarted worker would.
"""

from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ProcessState, ToContext, WorkChain, calcfunction, run_get_node

from aiida_mlcampaign.workchains.crash_safe import NEVER_LAUNCHED, CrashSafeSteps


@calcfunction
def double(value: orm.Int) -> orm.Int:
    return orm.Int(2 * value.value)


@calcfunction
def split(value: orm.Int) -> dict:
    return {'half': orm.Float(value.value / 2), 'twice': orm.Int(2 * value.value)}


class Replayed(CrashSafeSteps, WorkChain):
    """Each step does its work twice, as a step re-run from the previous checkpoint would."""

    reports = []  # what the mixin said (the log database may not keep REPORT records under every test setting)

    def report(self, msg, *args, **kwargs):
        Replayed.reports.append(msg)
        return super().report(msg, *args, **kwargs)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('value', valid_type=orm.Int)
        spec.outline(cls.leftover, cls.compute, cls.submit_children, cls.finish)
        spec.output('result', valid_type=orm.Int)
        spec.output('twice', valid_type=orm.Int)

    def leftover(self):
        # What a worker killed inside a calcfunction leaves: a node called under the label, still "Running".
        node = orm.CalcFunctionNode()
        node.set_process_state(ProcessState.RUNNING)
        node.base.links.add_incoming(self.node, link_type=LinkType.CALL_CALC, link_label='interrupted')
        node.store()
        self.ctx.interrupted = node.pk
        # What a worker killed inside Runner.submit leaves: the child stored, never checkpointed nor launched.
        unlaunched = orm.WorkChainNode()
        unlaunched.base.links.add_incoming(self.node, link_type=LinkType.CALL_WORK, link_label='child')
        unlaunched.store()

    def compute(self):
        first = self.run_once(double, self.inputs.value, metadata={'call_link_label': 'double'})
        again = self.run_once(double, self.inputs.value, metadata={'call_link_label': 'double'})
        assert first.uuid == again.uuid
        outputs = [self.run_once(split, self.inputs.value, metadata={'call_link_label': 'split'}) for _ in range(2)]
        assert {key: node.uuid for key, node in outputs[0].items()} == {k: n.uuid for k, n in outputs[1].items()}
        self.run_once(double, self.inputs.value, metadata={'call_link_label': 'interrupted'})
        self.ctx.result = first
        self.ctx.twice = outputs[0]['twice']

    def submit_children(self):
        first = self.submit(Child, value=self.inputs.value, metadata={'call_link_label': 'child'})
        again = self.submit(Child, value=self.inputs.value, metadata={'call_link_label': 'child'})
        assert first.pk == again.pk
        return ToContext(child=again)

    def finish(self):
        assert self.ctx.child.is_finished_ok
        self.out('result', self.ctx.result)
        self.out('twice', self.ctx.twice)


class Child(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('value', valid_type=orm.Int)
        spec.outline(cls.go)

    def go(self):
        pass


def test_a_replayed_step_submits_and_computes_nothing_twice(aiida_profile):
    results, node = run_get_node(Replayed, value=orm.Int(3))
    assert node.is_finished_ok, node.exit_status
    assert results['result'].value == 6 and results['twice'].value == 6
    called = [(link.link_label, link.node) for link in node.base.links.get_outgoing().all()
              if link.link_type in (LinkType.CALL_CALC, LinkType.CALL_WORK)]
    labels = sorted(label for label, _ in called)
    assert labels == ['child', 'child', 'double', 'interrupted', 'interrupted', 'split']  # one each + leftovers
    unlaunched, child = sorted((c for label, c in called if label == 'child'), key=lambda c: c.pk)
    assert unlaunched.exception.startswith(NEVER_LAUNCHED) and unlaunched.is_sealed and child.is_finished_ok
    states = {child.pk: child.process_state for _, child in called}
    assert all(state in (ProcessState.FINISHED, ProcessState.EXCEPTED) for state in states.values())
    leftover = min((child for label, child in called if label == 'interrupted'), key=lambda child: child.pk)
    assert leftover.process_state == ProcessState.EXCEPTED and leftover.is_sealed
    assert 'daemon worker running it died' in leftover.exception
    reports = Replayed.reports
    assert any('finished before a restart; reusing its outputs' in message for message in reports)
    assert any('was submitted before a restart' in message for message in reports)
    assert any('interrupted by a restart; sealed as excepted' in message for message in reports)
    assert any('never launched before a restart; sealed as excepted and submitted again' in m for m in reports)


def test_process_functions_cut_inside_a_finished_caller_are_sealed(aiida_profile):
    """As in PwBaseWorkChain: its create_kpoints_from_distance cut by a kill, re-run by the caller, which finished."""

    class Steps(CrashSafeSteps):
        messages = []

        def report(self, message):
            self.messages.append(message)

    caller = orm.WorkChainNode()
    caller.set_process_state(ProcessState.FINISHED)
    caller.set_exit_status(0)
    cut, rerun = orm.CalcFunctionNode(), orm.CalcFunctionNode()
    cut.set_process_state(ProcessState.CREATED)
    rerun.set_process_state(ProcessState.FINISHED)
    for node in (cut, rerun):
        node.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label='create_kpoints_from_distance')
    running = orm.WorkChainNode()
    running.set_process_state(ProcessState.RUNNING)
    waiting = orm.CalcFunctionNode()
    waiting.set_process_state(ProcessState.RUNNING)
    waiting.base.links.add_incoming(running, link_type=LinkType.CALL_CALC, link_label='busy')
    for node in (caller, cut, rerun, running, waiting):
        node.store()

    steps = Steps()
    assert steps.seal_interrupted_below(caller, running) == 1
    assert cut.process_state == ProcessState.EXCEPTED and cut.is_sealed
    assert rerun.process_state == ProcessState.FINISHED
    assert waiting.process_state == ProcessState.RUNNING  # its caller still runs: it may still be working
    assert 'create_kpoints_from_distance' in steps.messages[0] or 'sealed as excepted' in steps.messages[0]
