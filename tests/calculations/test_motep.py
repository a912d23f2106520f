"""motep CalcJobs with the real ``motep`` executable: train an MTP, evaluate it, refuse bad input."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.calculations.motep import MotepEvaluateCalculation, MotepTrainCalculation
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from aiida_mlcampaign.formats.mtp import check_mlip2_layout
from tests.helpers import local_codes

TRAIN_CFG = 'mtp/cu_emt_train_40cfg_made-here.cfg'


@pytest.fixture(scope='module')
def motep_code(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'motep')['motep']


@pytest.fixture(scope='module')
def copper_frames(aiida_profile, fixtures_dir):
    frames = list(read_cfg(fixtures_dir / TRAIN_CFG, ['Cu']))
    return TrainingSetData.from_frames(frames[:12], species=['Cu']).store(), \
        TrainingSetData.from_frames(frames[30:36], species=['Cu']).store()


def train(motep_code, training_set, max_iter, level=6):
    builder = MotepTrainCalculation.get_builder()
    builder.code = motep_code
    builder.potential = MtpPotentialData.from_template(level, ['Cu'], min_dist=2.0, max_dist=5.0)
    builder.training_set = training_set
    builder.settings = orm.Dict({'max_iter': max_iter, 'seed': 3})
    return run_get_node(builder)


def test_train_then_evaluate(motep_code, copper_frames):
    training_set, test_set = copper_frames
    results, node = train(motep_code, training_set, max_iter=400)
    assert node.exit_status in (0, MotepTrainCalculation.exit_codes.ERROR_NOT_CONVERGED.status)
    potential = results['potential']
    assert potential.is_trained and potential.species == ['Cu'] and potential.level == 6
    assert check_mlip2_layout(potential.get_content()) == []  # motep 0.2.0's own layout was repaired
    assert potential.base.attributes.get('layout_fixed') is True
    errors = results['training_errors'].get_dict()
    assert errors['forces_rmse'] < 0.2 and errors['energy_per_atom_rmse'] < 0.02

    builder = MotepEvaluateCalculation.get_builder()
    builder.code = motep_code
    builder.potential = potential
    builder.frames = test_set
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    predictions = results['predictions']
    assert predictions.num_frames == test_set.num_frames
    np.testing.assert_allclose(predictions.get_array('positions'), test_set.get_array('positions'), atol=1e-6)
    force_rmse = np.sqrt(np.mean((predictions.get_array('forces') - test_set.get_array('forces')) ** 2))
    assert force_rmse == pytest.approx(results['errors']['forces_rmse'], rel=1e-3)


def test_too_few_iterations_is_reported_not_hidden(motep_code, copper_frames):
    results, node = train(motep_code, copper_frames[0], max_iter=3)
    assert node.exit_status == MotepTrainCalculation.exit_codes.ERROR_NOT_CONVERGED.status
    assert results['potential'].is_trained  # the partial fit is kept, not recomputed


def test_bad_inputs_are_refused(motep_code, copper_frames):
    builder = MotepTrainCalculation.get_builder()
    builder.code = motep_code
    builder.potential = MtpPotentialData.from_template(6, ['Ag'], min_dist=2.0, max_dist=5.0)
    builder.training_set = copper_frames[0]
    with pytest.raises(ValueError, match=r"training_set: species \['Cu'\] are not in the potential's species"):
        run_get_node(builder)
    with pytest.raises(ValueError, match='settings.forces_weight: must be a number >= 0'):
        builder.settings = orm.Dict({'forces_weight': -1.0})
    with pytest.raises(ValueError, match='settings: unknown key'):
        builder.settings = orm.Dict({'maxiter': 10})


def test_predictions_keep_each_atom_species_whatever_the_atom_order(motep_code):
    """motep numbers the types of the predictions it writes by first appearance in the frames (Cu before Au here),
    not by the potential's species order (Au, Cu): read back in the potential's order, every Cu became Au (found on
    NaCl, where Na comes first)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from aiida_mlcampaign.formats.mlip_cfg import Frame

    frames = []
    for i in range(6):
        atoms = bulk('Cu', 'fcc', a=3.7, cubic=True)
        atoms.symbols[2:] = 'Au'  # Cu first, then Au
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        frames.append(Frame(symbols=list(atoms.get_chemical_symbols()), positions=atoms.positions, cell=atoms.cell[:],
                            pbc=(True, True, True), energy=atoms.get_potential_energy(), forces=atoms.get_forces()))
    data = TrainingSetData.from_frames(frames, species=['Au', 'Cu']).store()
    builder = MotepTrainCalculation.get_builder()
    builder.code = motep_code
    builder.potential = MtpPotentialData.from_template(2, ['Au', 'Cu'], min_dist=2.0, max_dist=5.0)
    builder.training_set = data
    builder.settings = orm.Dict({'max_iter': 20, 'seed': 3})
    results, _ = run_get_node(builder)
    evaluate = MotepEvaluateCalculation.get_builder()
    evaluate.code, evaluate.potential, evaluate.frames = motep_code, results['potential'], data
    results, node = run_get_node(evaluate)
    assert node.is_finished_ok, node.exit_status
    predicted = [list(frame.symbols) for frame in results['predictions'].iter_frames()]
    assert predicted == [list(frame.symbols) for frame in data.iter_frames()]
