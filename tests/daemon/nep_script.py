"""Drives the NEP family of ``mlcampaign.al.loop`` on a daemon for test_nep_loop.py, in its own process.

Usage:
    python nep_script.py PROFILE REPLAY_DIR submit   -> {"pk": ...}  (labels a PbTe seed set with pw.x first)
    python nep_script.py PROFILE REPLAY_DIR state PK -> {"terminated": ...}
    python nep_script.py PROFILE REPLAY_DIR report PK -> outputs, committee, selection, PwCalculation census

The only stand-in is GPUMD's ``nep`` (no GPU here): ``tests/standins/nep_replay.py``, which REPLAYS two
RECORDED REAL PbTe models (GPUMD master and v3.9.5 examples) as the two committee members and computes
their parity files with calorine. Everything else is real: pw.x labels, the CPU exploration MD with the
NEPs (calorine), the committee deviations, the selection and the merge.
"""

import json
import pathlib
import sys

from aiida import load_profile, orm
from aiida.engine import run_get_node, submit
from ase.build import bulk

HERE = pathlib.Path(__file__).parent
STANDIN = HERE.parent / 'standins' / 'nep_replay.py'
# Pb's 5d needs about 40 Ry; 35/280 Ry keeps pw.x to seconds and the forces qualitatively right.
TINY_DFT = {'kpoints_distance': 1.0, 'pw': {'parameters': {'SYSTEM': {'ecutwfc': 35.0, 'ecutrho': 280.0}}}}
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600}
FAMILY = 'PSL-US-1.0.0-PBE-mlcampaign'


def pbte(rattle, seed, cubic=False):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=cubic)
    atoms.rattle(rattle, seed=seed)
    return atoms


def replay_code(replay_dir):
    """The stand-in ``nep``, labelled so that nobody mistakes its models for trained ones."""
    code = orm.InstalledCode(computer=orm.load_computer('localhost'), filepath_executable=str(STANDIN),
                             label='nep-STANDIN-replays-recorded-models', default_calc_job_plugin='mlcampaign.nep.train')
    code.prepend_text = f'export MLCAMPAIGN_NEP_REPLAY_DIR={replay_dir}'
    code.description = 'Test stand-in for GPUMD nep: replays recorded real models (no GPU on this machine).'
    return code.store()


def label(structures):
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    builder = DftLabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), structures, protocol='fast', pseudo_family=FAMILY,
        overrides={'dft': TINY_DFT}, options=OPTIONS)
    builder.max_concurrent = orm.Int(2)
    return builder


def loop_builder(training_set, replay_dir):
    from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain

    template = label([orm.StructureData(ase=pbte(0.0, 0))])
    builder = ActiveLearningWorkChain.get_builder()
    builder.family = orm.Str('nep')
    builder.training_set = training_set
    builder.committee_size = orm.Int(2)
    builder.nep_train.code = replay_code(replay_dir)
    builder.nep_train.species = orm.List(['Te', 'Pb'])  # the recorded models' type order
    builder.nep_train.settings = orm.Dict({'generation': 1000, 'batch': 100})
    builder.nep_train.metadata = {'options': OPTIONS}
    builder.nep_explore.code = orm.load_code('mlcampaign-explore@localhost')
    builder.nep_explore.structures = {'start': orm.StructureData(ase=pbte(0.02, 9, cubic=True))}
    builder.nep_explore.parameters = orm.Dict({
        'temperatures': [300.0, 900.0], 'seeds': [1], 'steps': 60, 'time_step': 2.0, 'grade_every': 5,
        'select_threshold': 0.01, 'break_threshold': 0.5,
    })
    for key in ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction', 'min_distance'):
        setattr(builder.label, key, template[key])
    builder.label.max_concurrent = orm.Int(2)
    builder.label_budget = orm.Int(2)
    builder.max_iterations = orm.Int(1)
    return builder


def main():
    profile, replay_dir, command = sys.argv[1], sys.argv[2], sys.argv[3]
    load_profile(profile)
    if command == 'submit':
        results, node = run_get_node(label([orm.StructureData(ase=pbte(0.08, seed)) for seed in range(3)]))
        assert node.is_finished_ok, node.exit_status
        loop = submit(loop_builder(results['training_set'], replay_dir))
        print(json.dumps({'pk': loop.pk, 'seed_frames': results['training_set'].num_frames}))
    elif command == 'state':
        print(json.dumps({'terminated': orm.load_node(int(sys.argv[4])).is_terminated}))
    elif command == 'report':
        node = orm.load_node(int(sys.argv[4]))
        report = {'exit_status': node.exit_status, 'finished_ok': node.is_finished_ok,
                  'children': sorted(link.link_label for link in node.base.links.get_outgoing().all()
                                     if link.link_label.startswith('iteration_'))}
        if node.is_finished_ok:
            iteration = node.outputs.iterations.iteration_01
            members = node.outputs.committee
            selection = [n for n in node.called if n.base.links.get_incoming().all()
                         and n.process_label == 'select_by_committee']
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
                'train_codes': sorted({n.inputs.code.label for n in node.called
                                       if n.process_type and n.process_type.endswith('mlcampaign.nep.train')}),
            })
        print(json.dumps(report, default=str))


if __name__ == '__main__':
    main()
