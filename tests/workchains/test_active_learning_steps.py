"""Fast tier: the loop's own steps on generated nodes, no executable run (as aiida-quantumespresso's
``generate_workchain`` tests do): ``decide``, the failure mapping of ``inspect_iteration`` and ``screen``.

The loop is instantiated, not run: its context is set by hand and one step is called, so every branch of a
decision is covered in milliseconds instead of one pw.x campaign each.
"""

import pytest
from aiida import orm
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from ase.build import bulk

from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
from tests.workchains.test_active_learning_family import emt_builder
from tests.workchains.test_active_learning_inputs import label_inputs  # noqa: F401 (fixture)


def seed():
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.formats.frames import Frame

    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True)
    return TrainingSetData.from_frames([Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                                              positions=atoms.positions, energy=-10.0, forces=[[0.0] * 3] * 4)])


@pytest.fixture
def generate_loop(label_inputs):  # noqa: F811
    """A loop (test family ``emt``) set up to its first iteration, with ``ctx`` entries replaced by ``ctx``."""

    def generate(max_iterations=3, retrain_final=True, **ctx):
        builder = emt_builder(seed(), label_inputs, max_iterations=orm.Int(max_iterations),
                              retrain_final=orm.Bool(retrain_final),
                              max_candidate_fraction=orm.Float(0.05), target_force_rmse=orm.Float(0.1))
        process = instantiate_process(get_manager().get_runner(), builder)
        process.setup()
        process.ctx.row = {'iteration': 1, 'training_frames': 1, 'labels_added': 0, 'candidate_fraction': 0.0,
                           'new_frames_force_rmse': None}
        for key, value in ctx.items():
            if key == 'row':
                process.ctx.row.update(value)
            else:
                process.ctx[key] = value
        return process

    return generate


@pytest.mark.parametrize(('row', 'iteration', 'stop'), [
    ({'labels_added': 0, 'candidate_fraction': 0.0}, 1, 'converged: 0.000 of explored frames extrapolative'),
    ({'labels_added': 2, 'candidate_fraction': 0.01, 'new_frames_force_rmse': 0.05}, 1,
     'converged: candidate fraction 0.010 < 0.05 and force RMSE on new frames 0.050 < 0.1 eV/Å'),
    ({'labels_added': 2, 'candidate_fraction': 0.01, 'new_frames_force_rmse': 0.5}, 1, None),  # model still poor
    ({'labels_added': 2, 'candidate_fraction': 0.5, 'new_frames_force_rmse': 0.05}, 1, None),  # still uncertain
    ({'labels_added': 0, 'candidate_fraction': 0.5}, 1, None),  # uncertain but nothing labelled: go on
    ({'labels_added': 2, 'candidate_fraction': 0.5, 'new_frames_force_rmse': 0.5}, 3, 'max_iterations: 3'),
])
def test_decide(generate_loop, row, iteration, stop):
    process = generate_loop(row=row, iteration=iteration)
    process.decide()
    if stop is None:
        assert process.ctx.stop_reason is None and process.ctx.iteration == iteration + 1
    else:
        assert process.ctx.stop_reason.startswith(stop) and process.ctx.iteration == iteration
    assert process.ctx.summary[-1]['training_frames_after'] == 1


@pytest.mark.parametrize(('status', 'label'), [(410, 'ERROR_TRAINING_FAILED'), (420, 'ERROR_EXPLORATION_FAILED'),
                                               (440, 'ERROR_EVALUATION_FAILED'), (1, 'ERROR_EXPLORATION_FAILED')])
def test_a_failed_family_iteration_maps_to_the_loop_codes(generate_loop, status, label):
    failed = orm.WorkflowNode()
    failed.set_process_state('finished')
    failed.set_exit_status(status)
    failed.store()
    process = generate_loop(iterated=failed)
    code = process.inspect_iteration()
    assert code.status == ActiveLearningWorkChain.exit_codes[label].status
    assert 'iteration 1' in code.message


def test_screen_keeps_safe_structures_and_reports_refused_ones(generate_loop):
    safe = orm.StructureData(ase=bulk('Cu', 'fcc', a=3.61, cubic=True))
    squeezed = bulk('Cu', 'fcc', a=3.61, cubic=True)
    squeezed.positions[1] = squeezed.positions[0] + [0.3, 0.0, 0.0]
    process = generate_loop(selected={'structure_000': safe, 'structure_001': orm.StructureData(ase=squeezed)})
    process.screen()
    assert sorted(process.ctx.selected) == ['structure_000']
    screen = process.ctx.selected['structure_000'].creator  # a copy made by the screen, not the input node
    assert screen.process_label == 'screen_structures'
    record = screen.outputs.screening.get_dict()
    assert record['refused'] == ['structure_001'] and record['shortest_distances']['structure_001'] < 0.31


@pytest.mark.parametrize(('before', 'now', 'warned'), [(0.1, 0.5, True), (0.1, 0.3, False), (None, 0.5, False)])
def test_a_test_error_that_quadruples_is_a_warning(generate_loop, before, now, warned):
    process = generate_loop(row={'labels_added': 2, 'candidate_fraction': 0.5, 'test_force_rmse': now})
    process.ctx.summary = [{'iteration': 0, 'test_force_rmse': before, 'labels_added': 1}]
    process.decide()
    warnings = process.ctx.summary[-1]['warnings']
    assert bool(warnings) is warned
    if warned:
        assert 'more than 4x' in warnings[0] and '0.1000 to 0.5000' in warnings[0]


@pytest.mark.parametrize(('labels_added', 'retrain', 'expected'),
                         [(2, True, True), (0, True, False), (2, False, False)])
def test_the_final_fit_runs_when_the_last_iteration_added_labels(generate_loop, labels_added, retrain, expected):
    process = generate_loop(retrain_final=retrain, summary=[{'iteration': 1, 'labels_added': labels_added}])
    assert process.should_retrain() is expected
