"""Drives the NEP family of ``mlcampaign.al.loop`` on a daemon for test_nep_loop.py, in its own process.

Usage:
    python nep_script.py PROFILE submit   -> {"pk": ...}  (labels a PbTe seed set with pw.x first)
    python nep_script.py PROFILE state PK -> {"terminated": ...}
    python nep_script.py PROFILE wait PK S -> {"terminated": ...} once it has terminated, or after S seconds
    python nep_script.py PROFILE report PK -> outputs, committee, selection, PwCalculation census

Nothing is a stand-in: the committee members are trained by the real neppo (the code ``neppo@localhost`` that
``aiida-mlcampaign setup`` made), each with its own seed; the labels are real pw.x runs, the exploration MD and
the committee deviations run the trained NEPs with calorine.
"""

import json
import pathlib
import sys
import time

from aiida import load_profile, orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node, submit
from ase.build import bulk

from tests.daemon.crash import Stall, census

HERE = pathlib.Path(__file__).parent
# Pb's 5d needs about 40 Ry; 35/280 Ry keeps pw.x to seconds and the forces qualitatively right.
TINY_DFT = {'kpoints_distance': 1.0, 'pw': {'parameters': {'SYSTEM': {'ecutwfc': 35.0, 'ecutrho': 280.0}}}}
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600}
#: One thread per neppo job (OMP_NUM_THREADS=1): the two members train side by side on the two cores.
NEPPO_OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1, 'num_cores_per_mpiproc': 1},
                 'max_wallclock_seconds': 600}
#: A small NEP (a few hundred AdamW steps on a handful of 2-atom frames: seconds per member). neppo's default
#: learning rate (1e-2) saturates the neurons of so small a model on three frames (zero forces, exit 501).
NEPPO_SETTINGS = {'cutoff': [6.0, 4.0], 'n_max': [4, 4], 'basis_size': [4, 4], 'neuron': 10, 'batch': 3,
                  'generation': 300, 'output_interval': 100, 'seed': 1, 'learning_rate': [1e-3, 1e-4]}
FAMILY = 'PSL-US-1.0.0-PBE-mlcampaign'


def pbte(rattle, seed, cubic=False):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=cubic)
    atoms.rattle(rattle, seed=seed)
    return atoms


def label(structures):
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    builder = DftLabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), structures, protocol='fast', pseudo_family=FAMILY,
        overrides={'dft': TINY_DFT}, options=OPTIONS)
    builder.max_concurrent = orm.Int(2)
    return builder


def loop_builder(training_set):
    from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain

    template = label([orm.StructureData(ase=pbte(0.0, 0))])
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = training_set
    builder.nep.committee_size = orm.Int(2)
    builder.nep.train.code = orm.load_code('neppo@localhost')
    builder.nep.train.settings = orm.Dict(NEPPO_SETTINGS)
    builder.nep.train.metadata = {'options': NEPPO_OPTIONS}
    builder.nep.explore.code = orm.load_code('mlcampaign-explore@localhost')
    builder.nep.explore.structures = {'start': orm.StructureData(ase=pbte(0.02, 9, cubic=True))}
    builder.nep.explore.parameters = orm.Dict({
        'temperatures': [300.0, 900.0], 'seeds': [1], 'steps': 60, 'time_step': 2.0, 'grade_every': 5,
        'select_threshold': 0.01, 'break_threshold': 0.5,
    })
    for key in ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction', 'min_distance'):
        setattr(builder.label, key, template[key])
    builder.label.max_concurrent = orm.Int(2)
    builder.label_budget = orm.Int(2)
    builder.max_iterations = orm.Int(2)  # the second one retrains on the new labels
    return builder


def main():
    profile, command = sys.argv[1], sys.argv[2]
    load_profile(profile)
    if command == 'submit':
        results, node = run_get_node(label([orm.StructureData(ase=pbte(0.08, seed)) for seed in range(4)]))
        assert node.is_finished_ok, node.exit_status
        labelled = results['training_set']
        builder = loop_builder(labelled.subset(range(labelled.num_frames - 1)).store())
        builder.test_set = labelled.subset([labelled.num_frames - 1]).store()  # member 0 scored on it every iteration
        loop = submit(builder)
        print(json.dumps({'pk': loop.pk, 'seed_frames': labelled.num_frames}))
    elif command == 'state':
        print(json.dumps({'terminated': orm.load_node(int(sys.argv[3])).is_terminated}))
    elif command == 'wait':
        # Polled here, in one process that loads the profile once: a new interpreter every few seconds costs about
        # as much CPU as the loop itself on 2 cores.
        pk, deadline = int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
        watch = Stall()
        while not orm.load_node(pk).is_terminated and time.monotonic() < deadline:
            watch.check()
            time.sleep(2)
        print(json.dumps({'terminated': orm.load_node(pk).is_terminated, 'broker_wakes': watch.wakes}))
    elif command == 'report':
        node = orm.load_node(int(sys.argv[3]))
        report = {'exit_status': node.exit_status, 'finished_ok': node.is_finished_ok,
                  # the loop's children and those of its family iterations (iteration_NN_nep)
                  'children': sorted(link.link_label for caller in (node, *node.called)
                                     for link in caller.base.links.get_outgoing(link_type=(LinkType.CALL_CALC,
                                                                                           LinkType.CALL_WORK)).all()
                                     if link.link_label.startswith('iteration_')),
                  'census': census(node)}
        if node.is_finished_ok:
            iteration = node.outputs.iterations.iteration_01
            members = node.outputs.committee
            selection = [n for n in node.called_descendants if n.process_label == 'select_by_committee']
            statistics = selection[0].outputs.statistics.get_dict() if selection else {}
            deviations = selection[0].outputs.deviations if selection else None
            report.update({
                'stop_reason': node.outputs.stop_reason.value,
                'summary': node.outputs.summary.get_list(),
                'training_frames': node.outputs.training_set.num_frames,
                'input_frames': node.inputs.training_set.num_frames,
                'members': {key: members[key].species for key in members},
                'member_checksums': sorted({members[key].checksum for key in members}),
                'potential_is_member_0': node.outputs.potential.uuid == members['member_0'].uuid,
                'iteration_outputs': sorted(iteration.keys()) if hasattr(iteration, 'keys') else [],
                'selection': statistics,
                'deviation_arrays': deviations.get_arraynames() if deviations is not None else [],
                'train_codes': sorted({n.inputs.code.label for n in node.called_descendants
                                       if n.process_type and n.process_type.endswith('mlcampaign.nep.train')}),
                'train_engines': sorted({(n.outputs.output_parameters['engine'], n.inputs.settings['seed'])
                                         for n in node.called_descendants if n.process_type
                                         and n.process_type.endswith('mlcampaign.nep.train')}),
            })
        print(json.dumps(report, default=str))


if __name__ == '__main__':
    main()
