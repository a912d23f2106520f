"""Kill the whole daemon of a profile with SIGKILL again and again, bring it back with the documented command, and
count what resumed. Used by ``test_daemon_restart.py``; prints one JSON line.

    python restart_script.py PROFILE KILLS

Before the first kill a ``mlcampaign.dft.label`` of 3 tiny structures is submitted (one pw.x at a time), so that
kills land while it runs ("mid-dft.label"). In every cycle a small work chain (aiida-core's
``core.arithmetic.add_multiply``, two calcfunctions) is submitted and handed to a worker, then every daemon
process of the profile (circus, workers, the ZeroMQ broker) is killed with SIGKILL, ``aiida-mlcampaign daemon
start`` is run, a second work chain is submitted, and both must finish: the first was queued or running at the
crash, the second needs the restarted workers to be subscribed. On the embedded profile one more work chain is
stored and checkpointed before the first kill but its task is never sent (a client killed right after a
ZeroMQ ``submit``): the start command must queue it again, and it must finish.
"""

import json
import subprocess
import sys
import time

from aiida import load_profile, orm
from aiida.engine import ProcessState, submit
from aiida.manage import get_manager
from aiida.plugins import WorkflowFactory
from ase import Atoms

from tests.daemon.crash import sigkill_daemon

TINY_DFT = {'kpoints_distance': 1.0, 'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600}


def start(profile) -> dict:
    began = time.monotonic()
    result = subprocess.run(['aiida-mlcampaign', 'daemon', 'start', '1', '-p', profile], capture_output=True,
                            text=True, check=False, timeout=300)
    return {'rc': result.returncode, 'seconds': time.monotonic() - began, 'output': result.stdout + result.stderr}


def wait(pk, timeout, picked=False):
    """The node once terminated (with ``picked``: once a worker has started it), or as it is after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = orm.load_node(pk)
        if node.is_terminated or (picked and node.process_state not in (None, ProcessState.CREATED)):
            return node
        time.sleep(0.2)
    return orm.load_node(pk)


def label_builder():
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    structures = []
    for seed in range(3):
        atoms = Atoms('Cu2S2', scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                      cell=[4.1, 4.1, 4.1], pbc=True)
        atoms.rattle(0.05, seed=seed)
        structures.append(orm.StructureData(ase=atoms))
    builder = DftLabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), structures, protocol='fast', pseudo_family='PSL-US-1.0.0-PBE-mlcampaign',
        overrides={'dft': TINY_DFT}, options=OPTIONS)
    builder.max_concurrent = orm.Int(1)
    return builder


def main():
    profile, kills = sys.argv[1], int(sys.argv[2])
    load_profile(profile)
    add_multiply = WorkflowFactory('core.arithmetic.add_multiply')
    first = start(profile)
    assert first['rc'] == 0, first
    label = submit(label_builder())
    cycles = []
    zeromq = 'zeromq' in (get_manager().get_profile().process_control_backend or '')
    lost = None
    for cycle in range(kills):
        if cycle == 0 and zeromq:
            runner = get_manager().get_runner()
            process = runner.instantiate_process(add_multiply, x=orm.Int(1), y=orm.Int(1), z=orm.Int(1))
            runner.persister.save_checkpoint(process)  # what Runner.submit does before it sends the task
            process.close()
            lost = process.node.pk
        # Queued before the kill: wait until the broker has handed it to the worker (or it already finished), since
        # a ZeroMQ submit() returns before the broker has stored the task.
        before = submit(add_multiply, x=orm.Int(cycle), y=orm.Int(2), z=orm.Int(3)).pk
        picked = wait(before, 10, picked=True)
        label_running = not orm.load_node(label.pk).is_terminated
        killed = sigkill_daemon(profile)
        restarted = start(profile)
        # A client that outlives the broker keeps the old broker's address: take a fresh one, as a new
        # `verdi` or script would.
        get_manager().reset_broker()
        get_manager().reset_runner()  # its runner holds the closed communicator
        ready = time.monotonic()
        after = submit(add_multiply, x=orm.Int(cycle), y=orm.Int(3), z=orm.Int(4)).pk  # the workers subscribed?
        first, second = wait(before, 60), wait(after, 60)
        cycles.append({'killed': killed, 'start_rc': restarted['rc'], 'start_seconds': round(restarted['seconds'], 2),
                       'running_at_kill': not picked.is_terminated, 'resumed': first.is_finished_ok,
                       'new_work_ran': second.is_finished_ok,
                       'finished_after_start': round(time.monotonic() - ready, 2),
                       'mid_label': label_running, 'output': restarted['output'] if restarted['rc'] else '',
                       'start_output': restarted['output'] if cycle == 0 else ''})
    requeued = wait(lost, 60).is_finished_ok if lost is not None else None
    label_node = wait(label.pk, 600)
    pw = [n for n in label_node.called_descendants if n.process_type and n.process_type.endswith('quantumespresso.pw')]
    print(json.dumps({
        'lost_task_requeued': requeued, 'requeue_reported': any('queued again 1' in c['start_output'] for c in cycles),
        'cycles': cycles, 'resumed': sum(c['resumed'] for c in cycles), 'label_ok': label_node.is_finished_ok,
        'new_work_ran': sum(c['new_work_ran'] for c in cycles),
        'running_at_kill': sum(c['running_at_kill'] for c in cycles),
        'label_state': str(label_node.process_state), 'kills_mid_label': sum(c['mid_label'] for c in cycles),
        'pw_calculations': len(pw), 'pw_structures': len({c.inputs.structure.uuid for c in pw}),
        'unfinished': [n.pk for n in label_node.called_descendants if not n.is_terminated],
        'label_training_set': label_node.outputs.training_set.pk if label_node.is_finished_ok else None,
    }))
    sigkill_daemon(profile)


if __name__ == '__main__':
    main()
