"""Drives ``mlcampaign.al.loop`` on a daemon for test_active_learning.py, in its own process and AIIDA_PATH.

Usage:
    python al_script.py PROFILE submit           -> {"pk": ...}   (labels a seed set first, then submits)
    python al_script.py PROFILE state PK         -> where the loop is (iteration children, running pw.x jobs)
    python al_script.py PROFILE wait PK UNTIL S  -> state once UNTIL ('terminated', or a child label with pw.x
                                                    jobs running under the loop) holds, or after S seconds
    python al_script.py PROFILE report PK        -> outputs and the PwCalculation census of the loop
    python al_script.py PROFILE restart PK       -> submits a loop continuing PK for one more iteration
    python al_script.py PROFILE aimd             -> {"pk": ...}   a 3-step dft.aimd in two segments
    python al_script.py PROFILE aimd_report PK   -> its outcome and census
"""

import json
import sys
import time

from aiida import load_profile, orm
from aiida.engine import run_get_node, submit
from ase import Atoms

from tests.daemon.crash import census

TINY_DFT = {'kpoints_distance': 1.0, 'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600}


def cu2s2(rattle, seed):
    atoms = Atoms('Cu2S2', scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                  cell=[4.1, 4.1, 4.1], pbc=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def seed_training_set(code, family):
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    structures = [orm.StructureData(ase=cu2s2(0.05, seed)) for seed in range(4)]
    builder = DftLabelWorkChain.get_builder_from_protocol(
        code, structures, protocol='fast', pseudo_family=family, overrides={'dft': TINY_DFT}, options=OPTIONS)
    builder.max_concurrent = orm.Int(2)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    return results['training_set']


def loop_builder(training_set, family):
    from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
    from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    label = DftLabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), [orm.StructureData(ase=cu2s2(0.0, 0))], protocol='fast',
        pseudo_family=family, overrides={'dft': TINY_DFT}, options=OPTIONS)
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = training_set
    builder.mtp.potential = MtpPotentialData.from_template(6, ['Cu', 'S'], min_dist=1.8, max_dist=4.5)
    builder.mtp.train.code = orm.load_code('motep@localhost')
    builder.mtp.train.settings = orm.Dict({'max_iter': 150, 'seed': 1})
    builder.mtp.explore.code = orm.load_code('mlcampaign-explore@localhost')
    builder.mtp.explore.structures = {'start': orm.StructureData(ase=cu2s2(0.02, 9))}
    builder.mtp.explore.parameters = orm.Dict({'temperatures': [300.0, 900.0], 'seeds': [1], 'steps': 60,
                                               'time_step': 1.0, 'grade_every': 5})
    for key in ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction', 'min_distance'):
        setattr(builder.label, key, label[key])
    builder.label.max_concurrent = orm.Int(2)
    builder.label_budget = orm.Int(2)
    builder.max_iterations = orm.Int(2)
    builder.max_candidate_fraction = orm.Float(0.0)  # never converge early: the test needs iteration 2
    return builder


def aimd_builder(family):
    """3 BOMD steps of Cu2S2 in two pw.x segments (2 + 1), one equilibration step: every step of the work chain
    (segment submissions, joining the thermodynamics, collecting the frames) runs, in seconds."""
    from aiida_mlcampaign.workchains.dft_aimd import DftAimdWorkChain

    return DftAimdWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), orm.StructureData(ase=cu2s2(0.02, 5)), temperature=600.0, steps=3,
        protocol='fast', pseudo_family=family, options=OPTIONS,
        overrides={'dft': TINY_DFT, 'segment_steps': 2, 'thermostat': 'initial',
                   'equilibration_steps': 1, 'every': 1})


def state(pk) -> dict:
    """Where the loop is: its iteration children, the pw.x jobs running under it, whether it terminated."""
    node = orm.load_node(pk)
    labels = sorted(link.link_label for link in node.base.links.get_outgoing().all()
                    if link.link_label.startswith('iteration_'))
    running = [c.pk for c in node.called_descendants
               if c.process_type and c.process_type.endswith('quantumespresso.pw') and not c.is_terminated
               and c.get_job_id() is not None]
    return {'children': labels, 'running_pw_jobs': running, 'terminated': node.is_terminated}


def pw_census(node):
    calcs = [n for n in node.called_descendants if n.process_type and n.process_type.endswith('quantumespresso.pw')]
    structures = [c.inputs.structure.uuid for c in calcs]
    return {'pw_calculations': len(calcs), 'distinct_structures': len(set(structures)),
            'pw_states': sorted({c.process_state.value for c in calcs})}


def main():
    profile, command = sys.argv[1], sys.argv[2]
    load_profile(profile)
    family = 'PSL-US-1.0.0-PBE-mlcampaign'
    if command == 'submit':
        labelled = seed_training_set(orm.load_code('pw@localhost'), family)
        builder = loop_builder(labelled.subset(range(labelled.num_frames - 1)).store(), family)
        builder.test_set = labelled.subset([labelled.num_frames - 1]).store()  # MotepEvaluate beside each exploration
        node = submit(builder)
        print(json.dumps({'pk': node.pk, 'seed_frames': labelled.num_frames}))
    elif command == 'state':
        print(json.dumps(state(int(sys.argv[3]))))
    elif command == 'wait':
        # Polled here, in one process that loads the profile once: a new interpreter every few seconds costs about
        # as much CPU as the loop itself on 2 cores.
        pk, until, timeout = int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
        deadline = time.monotonic() + timeout
        while True:
            now = state(pk)
            reached = now['terminated'] if until == 'terminated' else (
                f'{until}' in now['children'] and bool(now['running_pw_jobs']))
            if reached or time.monotonic() > deadline:
                print(json.dumps({**now, 'reached': reached}))
                break
            time.sleep(2)
    elif command == 'report':
        node = orm.load_node(int(sys.argv[3]))
        report = {'exit_status': node.exit_status, 'finished_ok': node.is_finished_ok, **pw_census(node),
                  'census': census(node)}
        if node.is_finished_ok:
            report.update({'stop_reason': node.outputs.stop_reason.value,
                           'last_iteration': node.outputs.last_iteration.value,
                           'summary': node.outputs.summary.get_list(),
                           'training_frames': node.outputs.training_set.num_frames,
                           'input_frames': node.inputs.training_set.num_frames,
                           'iterations': (sorted(node.outputs.iterations.keys()) if 'iterations' in node.outputs
                                          else [])})
        print(json.dumps(report))
    elif command == 'aimd':
        print(json.dumps({'pk': submit(aimd_builder(family)).pk}))
    elif command == 'aimd_report':
        node = orm.load_node(int(sys.argv[3]))
        report = {'finished_ok': node.is_finished_ok, 'terminated': node.is_terminated, **pw_census(node),
                  'census': census(node),
                  'segments': sorted(link.link_label for link in node.base.links.get_outgoing().all()
                                     if link.link_label.startswith('segment_'))}
        if node.is_finished_ok:
            report['temperatures'] = len(node.outputs.thermo.get_array('temperature'))
        print(json.dumps(report))
    elif command == 'restart':
        from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain

        previous = orm.load_node(int(sys.argv[3]))
        builder = ActiveLearningWorkChain.get_builder_restart_from(previous)
        builder.max_iterations = orm.Int(1)
        node = submit(builder)
        print(json.dumps({'pk': node.pk}))


if __name__ == '__main__':
    main()
