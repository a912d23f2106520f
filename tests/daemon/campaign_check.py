"""Run by test_daemon.py on a finished campaign, in the test's AIIDA_PATH: prints one JSON line with what the test
asserts about its DFT labels (none computed twice, none lost) and its potentials.

Usage: python campaign_check.py PROFILE PK
"""

import collections
import json
import sys

from aiida import load_profile, orm

PW = 'aiida.calculations:quantumespresso.pw'


def main(profile: str, pk: int) -> dict:
    load_profile(profile)
    from aiida_mlcampaign.workchains.provenance import dft_calculations_behind

    node = orm.load_node(pk)
    calculations = [child for child in node.called_descendants if child.process_type == PW]
    by_kind = collections.Counter(calc.inputs.parameters['CONTROL']['calculation'] for calc in calculations)
    scf = [calc for calc in calculations if calc.inputs.parameters['CONTROL']['calculation'] == 'scf']
    hashes = collections.Counter(calc.inputs.structure.base.caching.get_hash() for calc in scf)
    outputs = node.outputs
    frames = outputs.training_set.num_frames + (outputs.test_set.num_frames if 'test_set' in outputs else 0)
    labels_added = sum(row['labels_added'] for family in outputs.learning
                       for row in outputs.learning[family].summary.get_list())
    behind = dft_calculations_behind(outputs.training_set)
    return {
        'finished_ok': node.is_finished_ok,
        'exit_status': node.exit_status,
        'pw_by_kind': dict(by_kind),
        'scf_labels': len(scf),
        'distinct_scf_structures': len(hashes),
        'labelled_twice': sorted(h[:8] for h, n in hashes.items() if n > 1),
        'unfinished_or_failed_scf': [calc.pk for calc in scf if not calc.is_finished_ok],
        'frames': frames,
        'seed_frames': outputs.seed_set.num_frames,
        'labels_added': labels_added,
        'pw_behind_training_set': len(behind),
        'potentials': {family: type(potential).__name__ for family, potential in outputs.potentials.items()},
        'trained': {family: bool(potential.base.links.get_incoming().all()) for family, potential
                    in outputs.potentials.items()},
        'figures': sorted(outputs.figures),
        'report_keys': sorted(outputs.report.get_dict()),
        'warnings': outputs.report['warnings'],
    }


if __name__ == '__main__':
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
