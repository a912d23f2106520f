"""Submitted to a real daemon by test_daemon.py, in its own process and AIIDA_PATH.

Labels small structures with real pw.x through ``mlcampaign.dft.label`` on the daemon of PROFILE,
then checks the provenance and the export, and prints one JSON line with what the test asserts.
Usage: python submit_and_check.py PROFILE OUTDIR [--quickstart-pk PK]
"""

import json
import sys
import time

import numpy as np
from aiida import load_profile, orm
from aiida.engine import submit
from ase import Atoms


def tiny_structures():
    """Three 4-atom Cu2S2 cells, distinct by rattling; small enough for seconds of pw.x each."""
    base = Atoms('Cu2S2', scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=[4.1, 4.1, 4.1], pbc=True)
    structures = {}
    for i in range(3):
        atoms = base.copy()
        atoms.rattle(0.04, seed=i)
        structures[f'rattled_{i}'] = orm.StructureData(ase=atoms)
    return structures


def label_on_daemon(code):
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    builder = DftLabelWorkChain.get_builder_from_protocol(
        code, tiny_structures(), protocol='fast',
        overrides={'dft': {'kpoints_distance': 1.0,
                           'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}},
        options={'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600},
    )
    builder.max_concurrent = orm.Int(2)
    node = submit(builder)
    deadline = time.monotonic() + 900
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(2)
    return node


def provenance_report(training_set):
    """From the TrainingSetData back to the PwCalculations that made its frames, in one query."""
    from aiida.plugins import CalculationFactory

    PwCalculation = CalculationFactory('quantumespresso.pw')
    query = orm.QueryBuilder()
    query.append(orm.Node, filters={'id': training_set.pk}, tag='set')
    query.append(orm.CalcFunctionNode, with_outgoing='set', tag='collect')
    query.append(orm.TrajectoryData, with_outgoing='collect', tag='trajectory')
    query.append(PwCalculation, with_outgoing='trajectory', project=['uuid', 'attributes.exit_status'], tag='pw')
    rows = query.all()
    by_uuid = {uuid: status for uuid, status in rows}
    return by_uuid


def export_matches_dft(training_set, outdir):
    """The exported extxyz holds exactly the forces pw.x computed (read back with ASE)."""
    import ase.io

    path = f'{outdir}/export.xyz'
    training_set.export_extxyz(path)
    images = ase.io.read(path, index=':')
    worst = 0.0
    for atoms, uuid in zip(images, training_set.get_array('source_uuids'), strict=True):
        calc = orm.load_node(str(uuid))
        dft_forces = calc.outputs.output_trajectory.get_array('forces')[-1]
        worst = max(worst, float(np.abs(atoms.arrays['force'] - dft_forces).max()))
    return worst


def main():
    profile_name, outdir = sys.argv[1], sys.argv[2]
    load_profile(profile_name)
    if len(sys.argv) > 3 and sys.argv[3] == '--quickstart-pk':
        training_set = orm.load_node(int(sys.argv[4]))
        node = training_set.creator.caller
    else:
        node = label_on_daemon(orm.load_code('pw@localhost'))
        if not node.is_finished_ok:
            print(json.dumps({'finished_ok': False, 'exit_status': node.exit_status, 'pk': node.pk}))
            return
        training_set = node.outputs.training_set
    calcs = provenance_report(training_set)
    frames_uuids = [str(u) for u in training_set.get_array('source_uuids')]
    print(json.dumps({
        'finished_ok': node.is_finished_ok,
        'pk': node.pk,
        'frames': training_set.num_frames,
        'frame_calcs': frames_uuids,
        'query_calcs': calcs,
        'max_force_error': export_matches_dft(training_set, outdir),
        'storage': orm.load_node(node.pk).backend.__class__.__name__,
    }))


if __name__ == '__main__':
    main()
