"""The family contract of ``mlcampaign.al.loop``: a third family plugs in by its entry point alone.

``mlcampaign.al.emt`` (tests/families/emt.py, registered by tests/plugins/*.dist-info) is not known to the loop's
module; the loop finds it among the installed ``mlcampaign.al.<family>`` entry points, exposes its inputs under
``emt``, runs it, screens, labels its choice with the real pw.x, scores it with the family's own evaluation and
merges. The loop's class has no family branch, which a static check below keeps true.
"""

import inspect
import re

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlcampaign.workchains import active_learning
from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
from aiida_mlcampaign.workchains.al_family import STATISTICS_KEYS, available_families
from tests.helpers import outputs_without_creator
from tests.workchains.test_active_learning_inputs import label_inputs  # noqa: F401 (fixture)

pytestmark = pytest.mark.pw


def seed_set(pw_code, pseudo_family):
    """One pw.x-labelled, lightly rattled Cu fcc cell (4 atoms): EMT knows Cu, and so does the test family."""
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain
    from tests.workchains.conftest import TEST_OPTIONS, TEST_OVERRIDES

    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True)
    atoms.rattle(0.05, seed=1)
    builder = DftLabelWorkChain.get_builder_from_protocol(
        pw_code, [orm.StructureData(ase=atoms)], protocol='fast', pseudo_family=pseudo_family.label,
        overrides=TEST_OVERRIDES, options=TEST_OPTIONS)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    return results['training_set']


def emt_builder(training_set, label_inputs, **overrides):  # noqa: F811
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = training_set
    builder.emt.structures = {'fcc': orm.StructureData(ase=bulk('Cu', 'fcc', a=3.61, cubic=True))}
    builder.emt.threshold = orm.Float(0.3)
    for key, value in label_inputs.items():
        setattr(builder.label, key, value)
    builder.label_budget = orm.Int(1)
    builder.max_iterations = orm.Int(1)
    for key, value in overrides.items():
        setattr(builder, key, value)
    return builder


def test_the_loop_has_no_family_branch():
    assert set(available_families()) >= {'mtp', 'nep', 'emt'}
    assert {'mtp', 'nep', 'emt'} <= set(ActiveLearningWorkChain.spec().inputs)
    source = inspect.getsource(ActiveLearningWorkChain) + inspect.getsource(active_learning.validate_inputs)
    assert not re.search(r'mtp|nep|emt|committee_size|gpumd|motep', source, re.IGNORECASE), \
        re.findall(r'.*(?:mtp|nep|emt|gpumd|motep).*', source, re.IGNORECASE)


def test_a_third_family_plugs_in_by_its_entry_point(pw_code, pseudo_family, label_inputs):  # noqa: F811
    builder = emt_builder(seed_set(pw_code, pseudo_family), label_inputs)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert outputs_without_creator(node) == []
    row = results['summary'].get_list()[0]
    assert row['labels_added'] == 1 and row['training_frames_after'] == row['training_frames'] + 1
    assert row['new_frames_force_rmse'] is not None and row['new_frames_force_rmse'] > 0  # EMT is not pw.x
    assert row['explored_frames'] == 4 and 0.0 < row['candidate_fraction'] <= 1.0
    iteration = results['iterations']['iteration_01']
    assert set(iteration['statistics'].get_dict()) == set(STATISTICS_KEYS)
    assert iteration['screening'].get_dict()['kept'] == ['structure_000']
    assert results['potential']['model'] == 'EMT'
    labels = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert {'iteration_01_emt', 'iteration_01_screen', 'iteration_01_label', 'iteration_01_evaluate',
            'iteration_01_merge', 'record_summary'} <= labels
    evaluate = node.base.links.get_outgoing(link_label_filter='iteration_01_evaluate').one().node
    assert evaluate.process_label == 'emt_errors'  # the family's own scoring, chosen by the family
    # the last iteration added a label: the output potential is fitted once more, on every label
    final = node.base.links.get_outgoing(link_label_filter='final_emt').one().node
    assert final.is_finished_ok and final.inputs.train_only.value
    assert final.inputs.training_set.uuid == results['training_set'].uuid
    assert results['potential'].uuid == final.outputs.potential.uuid
    assert 'candidates' not in final.outputs and 'selected' not in final.outputs
    assert 'final_statistics' in results


def test_min_distance_screens_every_family(label_inputs):  # noqa: F811
    """The test family ignores min_distance on purpose: the loop's screen refuses its choice, no pw.x runs."""
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.formats.frames import Frame

    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True)
    seed = TrainingSetData.from_frames([Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                                              positions=atoms.positions, energy=-10.0, forces=[[0.0] * 3] * 4)])
    builder = emt_builder(seed, label_inputs, min_distance=orm.Float(3.0))  # Cu-Cu is 2.55 Å
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    screening = results['iterations']['iteration_01']['screening'].get_dict()
    assert screening['kept'] == [] and screening['refused'] == ['structure_000']
    assert all(distance < 3.0 for distance in screening['shortest_distances'].values())
    row = results['summary'].get_list()[0]
    assert row['labels_added'] == 0 and row['selected'] == 1
    assert not [n for n in node.called_descendants if n.process_label == 'DftLabelWorkChain']
