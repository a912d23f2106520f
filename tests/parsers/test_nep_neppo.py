"""``NepTrainParser`` on recorded real neppo runs (``tests/fixtures/neppo``, provenance in its ``SOURCES.md``).

The same parser reads both engines: the code of the job (an executable called ``neppo``) selects neppo's log
reader and ``train.xyz`` row order; everything else (potential, loss, parity, errors) is the GPUMD contract.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import ParserFactory

from aiida_mlcampaign.calculations.nep import NepTrainCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.extxyz import read_extxyz
from aiida_mlcampaign.formats.nep import read_parity
from aiida_mlcampaign.nep import cpu
from tests.calculations.conftest import calcjob_computer, generate_calc_job_node  # noqa: F401  (fixtures)

RUNS = pathlib.Path(__file__).parent.parent / 'fixtures' / 'neppo'
STAGES = RUNS / 'train_stages'
Parser = ParserFactory('mlcampaign.nep.train')
EXIT = NepTrainCalculation.exit_codes
SETTINGS = {'cutoff': [5.0, 4.0], 'n_max': [4, 4], 'basis_size': [4, 4], 'neuron': 8}


@pytest.fixture(scope='module')
def neppo_code(calcjob_computer):  # noqa: F811
    return orm.InstalledCode(label='neppo', computer=calcjob_computer, filepath_executable='/opt/python/bin/neppo',
                             default_calc_job_plugin='mlcampaign.nep.train').store()


@pytest.fixture(scope='module')
def frames(aiida_profile):
    return {split: TrainingSetData.from_extxyz(STAGES / f'{split}.xyz', species=['Cu', 'Au']).store()
            for split in ('train', 'test')}


def _files(folder: pathlib.Path) -> dict:
    return {path.name: path for path in folder.iterdir() if path.suffix in ('.out', '.txt', '.err')}


def parse(generate_calc_job_node, inputs, folder):  # noqa: F811
    node = generate_calc_job_node(NepTrainCalculation, inputs, _files(folder))
    results, calcfunction = Parser.parse_from_node(node, store_provenance=False)
    return results, calcfunction.exit_status, calcfunction.exit_message


def test_finished_training_in_two_stages(generate_calc_job_node, neppo_code, frames):  # noqa: F811
    settings = {**SETTINGS, 'generation': [20, 10], 'lambda_e': [1.0, 5.0], 'batch': 4, 'output_interval': 10,
                'seed': 7}
    results, status, message = parse(generate_calc_job_node, {
        'code': neppo_code, 'training_set': frames['train'], 'test_set': frames['test'],
        'settings': orm.Dict(settings)}, STAGES)
    assert status == 0, message
    assert results['potential'].species == ['Cu', 'Au'] and 'restart' not in results

    params = results['output_parameters'].get_dict()
    assert params['engine'] == 'neppo' and params['engine_version'] == '1.0' and params['finished']
    assert params['torch_version'] == '2.13.0+cpu' and params['device'] == 'cpu'
    assert params['generations_done'] == 30 and params['num_batches'] == 3 and params['mode'] == 'training'
    assert params['parity_train_order'] == 'train.xyz'  # 12 frames in batches of 4, rows still in file order
    assert params['settings']['seed'] == 7 and params['settings']['generation'] == [20, 10]
    assert params['settings']['learning_rate'] == [1e-2, 1e-4] and 'population' not in params['settings']
    assert 'gpumd_version_printed' not in params

    loss = results['loss']
    np.testing.assert_array_equal(loss.get_array('generation'), [10, 20, 30])
    assert loss.get_array('rmse_force_test')[-1] == pytest.approx(0.87259)

    parity = results['parity']
    natoms = frames['train'].get_array('natoms')
    np.testing.assert_allclose(parity.get_array('energy_train_target')[:, 0],
                               frames['train'].get_array('energies') / natoms, rtol=1e-5)
    np.testing.assert_allclose(parity.get_array('force_train_target'), frames['train'].get_array('forces'),
                               atol=1e-5)
    errors = results['errors'].get_dict()
    assert errors['rmse_force_test_meV_per_A'] == pytest.approx(872.6, abs=0.1)  # neppo's own log
    assert errors['rmse_energy_train_meV_per_atom'] == pytest.approx(28.2, abs=0.1)
    assert errors['final_loss']['generation'] == 30


def test_cpunep_reproduces_neppo_predictions():
    """The model neppo wrote, evaluated by calorine's CPUNEP, gives neppo's own train predictions (1e-4 relative)."""
    frames = list(read_extxyz(STAGES / 'train.xyz'))
    result = cpu.evaluate(STAGES / 'nep.txt', frames)
    energy = read_parity(STAGES / 'energy_train.out', 'energy')
    force = read_parity(STAGES / 'force_train.out', 'force')
    natoms = np.array([len(frame.symbols) for frame in frames])
    np.testing.assert_allclose(result['energies'] / natoms, energy['prediction'][:, 0], rtol=1e-4)
    scale = np.abs(force['prediction']).max()
    np.testing.assert_allclose(result['forces'], force['prediction'], rtol=1e-4, atol=1e-4 * scale)


def test_prediction(generate_calc_job_node, neppo_code, frames):  # noqa: F811
    potential = NepPotentialData(RUNS / 'predict' / 'nep.txt').store()
    results, status, message = parse(generate_calc_job_node, {
        'code': neppo_code, 'training_set': frames['train'], 'potential': potential}, RUNS / 'predict')
    assert status == 0, message
    params = results['output_parameters'].get_dict()
    assert params['mode'] == 'prediction' and params['finished'] and 'potential' not in results
    # the same model on the same frames: the prediction run repeats the training run's last predictions
    np.testing.assert_allclose(results['parity'].get_array('energy_train_prediction')[:, 0],
                               read_parity(STAGES / 'energy_train.out', 'energy')['prediction'][:, 0], atol=2e-6)


def test_killed_training_keeps_the_last_model(generate_calc_job_node, neppo_code, frames):  # noqa: F811
    settings = {**SETTINGS, 'generation': 1000000, 'batch': 4, 'output_interval': 20, 'seed': 7}
    results, status, _ = parse(generate_calc_job_node, {
        'code': neppo_code, 'training_set': frames['train'], 'settings': orm.Dict(settings)}, RUNS / 'killed')
    assert status == EXIT.ERROR_NOT_FINISHED.status
    assert results['potential'].species == ['Cu', 'Au'] and 'restart' not in results and 'parity' not in results
    params = results['output_parameters'].get_dict()
    assert params['finished'] is False and params['generations_done'] == results['loss'].get_array('generation')[-1]


def test_refusal_by_neppo_is_reported(generate_calc_job_node, neppo_code, frames):  # noqa: F811
    _, status, message = parse(generate_calc_job_node, {
        'code': neppo_code, 'training_set': frames['train'], 'settings': orm.Dict({'generation': 10})},
        RUNS / 'refused')
    assert status == EXIT.ERROR_INPUT_REFUSED.status
    assert 'NotImplementedError: neppo does not support the keyword fine_tune' in message


def test_collapsed_model_is_a_scientific_failure(generate_calc_job_node, neppo_code, frames):  # noqa: F811
    """A real neppo run at 100x its default learning rate ends normally with a model whose forces are all zero."""
    settings = {**SETTINGS, 'generation': 100, 'batch': 4, 'output_interval': 50, 'seed': 7,
                'learning_rate': [1.0, 1.0]}
    results, status, message = parse(generate_calc_job_node, {
        'code': neppo_code, 'training_set': frames['train'], 'settings': orm.Dict(settings)}, RUNS / 'collapsed')
    assert status == EXIT.ERROR_COLLAPSED_MODEL.status, message
    assert 'learning' in message  # the message says what to change
    # the model and its curve are kept for inspection; its forces are zero where the labels are not
    assert results['potential'].species == ['Cu', 'Au'] and results['output_parameters']['finished']
    parity = results['parity']
    assert np.abs(parity.get_array('force_train_prediction')).max() == 0.0
    assert np.abs(parity.get_array('force_train_target')).max() > 7.0
