"""``NepTrainParser`` on recorded real ``nep`` outputs and on small hand-made cases.

The recorded folders (``tests/fixtures/gpumd/nep/<folder>``, provenance in ``tests/fixtures/gpumd/SOURCES.md`` and
``SOURCES-nep.md``) are GPUMD's PbTe examples; their ``train.xyz`` is kept only for the first 2 of 25 frames
(``tests/fixtures/gpumd/pbte_train_master/train.xyz``) and some files are truncated, so each retrieved folder is
built from the rows that belong to those frames (the first 2 rows of per-structure files, the first 500 force rows
= 2 x 250 atoms). ``nep`` writes no stdout file in the recorded examples: a hand-written one in GPUMD's layout
(``src/main_nep/main.cu``) stands in. What cannot be checked that way (rows of the other 23 frames, recorded
restart files, which are truncated) is not.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import ParserFactory

from aiida_mlcampaign.calculations.nep import NepTrainCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame
from tests.calculations.conftest import calcjob_computer, generate_calc_job_node  # noqa: F401  (fixtures)

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'
NEP = FIXTURES / 'nep'
TRAIN_XYZ = FIXTURES / 'pbte_train_master' / 'train.xyz'
Parser = ParserFactory('mlcampaign.nep.train')
EXIT = NepTrainCalculation.exit_codes


def stdout(version='5.6', mode='training', finished=True, rows=()):
    """A stdout in the layout of GPUMD's nep (hand-written; the recorded examples keep none)."""
    lines = ['', '*' * 63, '*                 Welcome to use GPUMD                        *',
             f'*                     version {version:<32}*',
             '*              This is the nep executable                     *',
             '*' * 63, '', 'Started running nep.', 'Number of devices = 1', 'Number of batches = 1',
             'Time used for initialization = 0.512000 s.', f'Started {mode}.']
    if mode == 'training':
        lines.append('Step    Total-Loss L1Reg-Loss L2Reg-Loss RMSE-E-Train RMSE-F-Train RMSE-V-Train RMSE-E-Test  '
                     'RMSE-F-Test  RMSE-V-Test')
        lines.extend(rows)
    if finished:
        lines += [f'Time used for {mode} = 731.250000 s.', 'Finished running nep.']
    return '\n'.join(lines) + '\n'


def head(path: pathlib.Path, rows: int) -> str:
    return ''.join(path.read_text().splitlines(keepends=True)[:rows])


@pytest.fixture(scope='module')
def pbte(aiida_profile):
    return TrainingSetData.from_extxyz(TRAIN_XYZ, species=['Te', 'Pb']).store()


def parse(generate_calc_job_node, inputs, files):
    node = generate_calc_job_node(NepTrainCalculation, inputs, files)
    results, calcfunction = Parser.parse_from_node(node, store_provenance=False)
    return results, calcfunction.exit_status, calcfunction.exit_message


def test_training_master(generate_calc_job_node, pbte):
    folder = NEP / 'pbte_train_master'
    loss_rows = (folder / 'loss.out').read_text().splitlines()
    files = {
        'nep.out': stdout(rows=loss_rows[-3:]),
        'nep.err': '',
        'nep.txt': folder / 'nep.txt',
        'loss.out': folder / 'loss.out',
        'energy_train.out': head(folder / 'energy_train.out', 2),
        'force_train.out': folder / 'force_train.out',  # first 500 rows = frames 0 and 1 (250 atoms each)
        'virial_train.out': head(folder / 'virial_train.out', 2),
        'stress_train.out': head(folder / 'stress_train.out', 2),
    }
    results, status, message = parse(generate_calc_job_node, {
        'training_set': pbte, 'settings': orm.Dict({'generation': 20000})}, files)
    assert status == 0, message

    potential = results['potential']
    assert potential.species == ['Te', 'Pb'] and potential.n_parameters == 3033

    loss = results['loss']
    assert loss.base.attributes.get('kind') == 'potential'
    assert len(loss.get_array('generation')) == 200 and loss.get_array('generation')[-1] == 20000
    assert loss.get_array('rmse_force_train')[-1] == pytest.approx(0.03990)  # eV/Å, last row of loss.out
    assert loss.get_array('rmse_energy_test')[-1] == 0.0  # no test set

    parity = results['parity']
    np.testing.assert_allclose(parity.get_array('energy_train_prediction')[:, 0], [-3.74744, -3.77876])  # eV/atom
    assert parity.get_array('force_train_prediction').shape == (500, 3)
    np.testing.assert_allclose(parity.get_array('force_train_prediction')[0], [0.075966, 0.237666, -0.20433])  # eV/Å
    np.testing.assert_allclose(parity.get_array('stress_train_prediction')[0, :3], [4.71474, 4.46308, 4.81377])  # GPa
    assert np.isnan(parity.get_array('virial_train_target')).all()  # -1e6: train.xyz has no virial
    assert parity.base.attributes.get('units')['stress'] == 'GPa, positive = compressed'

    errors = results['errors'].get_dict()
    energy_rmse = 1000 * np.sqrt(np.mean((np.array([-3.74744, -3.77876]) - [-3.74876, -3.77905]) ** 2))
    assert errors['rmse_energy_train_meV_per_atom'] == pytest.approx(energy_rmse)  # 0.956 meV/atom
    forces = np.loadtxt(folder / 'force_train.out')
    assert errors['rmse_force_train_meV_per_A'] == pytest.approx(
        1000 * np.sqrt(np.mean((forces[:, :3] - forces[:, 3:]) ** 2)), rel=1e-9)
    assert errors['rmse_virial_train_meV_per_atom'] is None and errors['rmse_stress_train_GPa'] is None
    assert errors['final_loss']['rmse_force_train'] == pytest.approx(0.03990)

    params = results['output_parameters'].get_dict()
    assert params['mode'] == 'training' and params['generations_done'] == 20000 and params['loss_rows'] == 200
    assert params['gpumd_version_printed'] == '5.6' and params['time_training_s'] == pytest.approx(731.25)
    assert params['parity_train_order'] == 'train.xyz'
    assert 'restart' not in results  # the recorded nep.restart is truncated, so none was retrieved here


def test_prediction_master(generate_calc_job_node, pbte):
    folder = NEP / 'pbte_predict_master'
    files = {'nep.out': stdout(mode='predicting'), 'energy_train.out': head(folder / 'energy_train.out', 2),
             'virial_train.out': head(folder / 'virial_train.out', 2)}
    potential = NepPotentialData(NEP / 'pbte_train_master' / 'nep.txt')
    results, status, message = parse(generate_calc_job_node, {'training_set': pbte, 'potential': potential}, files)
    assert status == 0, message
    assert 'potential' not in results and 'loss' not in results and 'restart' not in results
    parity = results['parity']
    assert set(parity.get_arraynames()) == {'energy_train_prediction', 'energy_train_target',
                                            'virial_train_prediction', 'virial_train_target'}
    np.testing.assert_allclose(parity.get_array('virial_train_prediction')[1],
                               [0.911464, 0.956833, 0.929164, 0.00841988, -0.002215, -0.0025893])  # eV/atom
    params = results['output_parameters'].get_dict()
    assert params['mode'] == 'prediction' and params['time_predicting_s'] == pytest.approx(731.25)
    assert results['errors']['rmse_energy_train_meV_per_atom'] == pytest.approx(0.956, abs=1e-3)

    results, status, _ = parse(generate_calc_job_node, {'training_set': pbte, 'potential': potential},
                               {'nep.out': stdout(mode='predicting')})
    assert status == EXIT.ERROR_MISSING_OUTPUT_FILE.status


def test_qnep_master(generate_calc_job_node, pbte):
    folder = NEP / 'qnep_pbte_master'
    files = {'nep.out': stdout(), 'nep.txt': folder / 'nep.txt', 'loss.out': folder / 'loss.out',
             'energy_train.out': head(folder / 'energy_train.out', 2),
             'virial_train.out': head(folder / 'virial_train.out', 2),
             'stress_train.out': head(folder / 'stress_train.out', 2)}
    settings = orm.Dict({'cutoff': [8, 4], 'charge_mode': 2, 'generation': 20000})
    results, status, message = parse(generate_calc_job_node, {'training_set': pbte, 'settings': settings}, files)
    assert status == 0, message
    assert results['potential'].model == 'nep4_charge2'
    loss = results['loss']
    assert loss.base.attributes.get('kind') == 'charge' and len(loss.base.attributes.get('columns')) == 14
    assert loss.get_array('rmse_charge_train')[0] == pytest.approx(0.15685)  # e
    np.testing.assert_allclose(results['parity'].get_array('energy_train_prediction')[:, 0], [-3.74726, -3.77866])
    np.testing.assert_allclose(results['parity'].get_array('stress_train_prediction')[0, 0], 0.428495)


def test_v4_stress_sentinel_and_missing_files(generate_calc_job_node, pbte):
    folder = NEP / 'pbte_train_v4.0'
    files = {'nep.out': stdout(version='4.0'), 'virial_train.out': head(folder / 'virial_train.out', 2),
             'stress_train.out': head(folder / 'stress_train.out', 2)}
    results, status, _ = parse(generate_calc_job_node, {
        'training_set': pbte, 'gpumd_version': orm.Str('4.0'), 'settings': orm.Dict({'generation': 20000})}, files)
    assert status == EXIT.ERROR_MISSING_OUTPUT_FILE.status  # no loss.out, no nep.txt in the recorded folder
    parity = results['parity']  # what could be read is still attached
    assert np.isnan(parity.get_array('stress_train_target')).all()  # -4.51884e6 before v4.9.1: missing
    np.testing.assert_allclose(parity.get_array('stress_train_prediction')[0, :3], [2.24109, 1.96251, 2.33256])
    assert results['errors']['rmse_stress_train_GPa'] is None
    assert results['errors']['rows_with_target_stress_train'] == 0


def test_legacy_v395(generate_calc_job_node, pbte):
    folder = NEP / 'pbte_train_legacy_v3.9.5'
    virial = folder.joinpath('virial_train.out').read_text().splitlines()
    legacy_one_frame = '\n'.join(virial[25 * k] for k in range(6)) + '\n'  # pre-v3.7: all xx, then all yy, ...
    files = {'nep.out': stdout(version='3.9.5'), 'nep.txt': folder / 'nep.txt', 'loss.out': folder / 'loss.out',
             'energy_train.out': head(folder / 'energy_train.out', 1),
             'force_train.out': folder / 'force_train.out', 'virial_train.out': legacy_one_frame}
    results, status, message = parse(generate_calc_job_node, {
        'training_set': pbte.subset([0]).store(), 'gpumd_version': orm.Str('3.9.5')}, files)
    assert status == 0, message
    assert results['potential'].get_architecture()['n_max'] == [4, 4]
    assert results['loss'].get_array('generation')[-1] == 10000
    parity = results['parity']
    assert parity.get_array('virial_train_prediction')[0, 0] == pytest.approx(0.526215)
    np.testing.assert_allclose(parity.get_array('energy_train_prediction')[0], [-3.7476])
    np.testing.assert_allclose(parity.get_array('force_train_target'), pbte.get_array('forces')[:250], atol=1e-5)


def test_failures(generate_calc_job_node, pbte):
    folder = NEP / 'pbte_train_master'
    inputs = {'training_set': pbte}
    error = ('Input Error:\n    File:       main_nep/parameters.cu\n    Line:       812\n'
             '    Error text: n_max_radial should <= 12.\n')
    _, status, message = parse(generate_calc_job_node, inputs, {'nep.out': stdout(finished=False), 'nep.err': error})
    assert status == EXIT.ERROR_INPUT_REFUSED.status and 'n_max_radial should <= 12.' in message

    _, status, _ = parse(generate_calc_job_node, inputs, {'nep.err': ''})
    assert status == EXIT.ERROR_MISSING_STDOUT.status

    restart = '  2.5474238e-01   2.7413245e-02\n' * 3033
    results, status, _ = parse(generate_calc_job_node, inputs, {
        'nep.out': stdout(finished=False), 'loss.out': head(folder / 'loss.out', 50), 'nep.txt': folder / 'nep.txt',
        'nep.restart': restart})
    assert status == EXIT.ERROR_NOT_FINISHED.status
    assert results['restart'].get_content() == restart  # resumable from the node
    assert results['output_parameters']['generations_done'] == 5000

    loss = head(folder / 'loss.out', 10) + ('1100    nan        0.02000    0.03000    nan          nan          '
                                            '0.00000      0.00000      0.00000      0.00000\n')
    results, status, message = parse(generate_calc_job_node, inputs, {
        'nep.out': stdout(), 'loss.out': loss, 'nep.txt': folder / 'nep.txt'})
    assert status == EXIT.ERROR_NAN_LOSS.status and 'generation 1100' in message
    assert results['errors']['final_loss']['loss_total'] is None

    _, status, message = parse(generate_calc_job_node, inputs, {
        'nep.out': stdout(), 'loss.out': folder / 'loss.out', 'nep.txt': head(folder / 'nep.txt', 1000)})
    assert status == EXIT.ERROR_UNREADABLE_OUTPUT.status and 'nep.txt' in message

    _, status, message = parse(generate_calc_job_node, inputs, {
        'nep.out': stdout(), 'loss.out': folder / 'loss.out', 'nep.txt': folder / 'nep.txt',
        'energy_train.out': head(folder / 'energy_train.out', 3)})
    assert status == EXIT.ERROR_UNREADABLE_OUTPUT.status and '3 rows but train.xyz has 2 frames' in message


# ------------------------------------------------------------------------------------ hand-made re-sort example
def small_set():
    """Five small frames of 2, 3, 2, 4 and 2 atoms with distinct energies per atom; frames 0 and 2 carry a virial."""
    rng = np.random.default_rng(7)
    energies = [-3.0, -3.5, -2.5, -3.2, -2.8]  # eV/atom
    frames = []
    for i, (n, e) in enumerate(zip([2, 3, 2, 4, 2], energies)):
        stress = rng.normal(scale=0.01, size=(3, 3)) if i in (0, 2) else None
        frames.append(Frame(symbols=(['Pb', 'Te'] * 2)[:n], cell=np.eye(3) * 6.5, positions=rng.uniform(0, 6, (n, 3)),
                            energy=e * n, forces=rng.normal(size=(n, 3)), stress=None if stress is None else
                            (stress + stress.T) / 2))
    return TrainingSetData.from_frames(frames, species=['Te', 'Pb'])


def gpumd_files(training_set, order):
    """Parity files as nep writes them, rows in ``order`` (predictions = target + a row-dependent offset)."""
    natoms = training_set.get_array('natoms')
    offsets = training_set.offsets
    energies = training_set.get_array('energies') / natoms
    forces = training_set.get_array('forces')
    stresses = training_set.get_array('stresses')
    cells = training_set.get_array('cells')
    energy, force, virial = [], [], []
    for row, i in enumerate(order):
        energy.append(f'{energies[i] + 0.001 * (row + 1):g} {energies[i]:g}')
        for f in forces[offsets[i]:offsets[i + 1]]:
            force.append(' '.join(f'{v:g}' for v in (*(f + 0.01), *f)))
        if np.isfinite(stresses[i]).all():
            w = -abs(np.linalg.det(cells[i])) * stresses[i] / natoms[i]
            target = [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[1, 2], w[2, 0]]
        else:
            target = [-1e6] * 6
        virial.append(' '.join(f'{v:g}' for v in ([0.002] * 6 + target)))
    return {'energy_train.out': '\n'.join(energy) + '\n', 'force_train.out': '\n'.join(force) + '\n',
            'virial_train.out': '\n'.join(virial) + '\n'}


@pytest.mark.parametrize('order, how', [
    # batch 2 for 5 frames: 3 batches. Sorted by energy per atom: 1 (-3.5), 3, 0, 4, 2 (-2.5); dealt round-robin
    # with the first 5 % 3 = 2 batches one larger: batch 0 = sorted[0], sorted[3] = 1, 4; batch 1 = sorted[1],
    # sorted[4] = 3, 2; batch 2 = sorted[2] = 0.
    ([1, 4, 3, 2, 0], 'batches'),
    ([2, 0, 4, 1, 3], 'matched'),  # an older nep shuffled at random: recovered from the energy targets
])
def test_rows_back_in_train_xyz_order(generate_calc_job_node, order, how):
    training_set = small_set().store()
    files = {'nep.out': stdout(), 'loss.out': NEP / 'pbte_train_master' / 'loss.out',
             'nep.txt': NEP / 'pbte_train_master' / 'nep.txt', **gpumd_files(training_set, order)}
    results, status, message = parse(generate_calc_job_node, {
        'training_set': training_set, 'settings': orm.Dict({'batch': 2})}, files)
    assert status == 0, message
    assert results['output_parameters']['parity_train_order'] == how
    parity = results['parity']
    natoms = training_set.get_array('natoms')
    np.testing.assert_allclose(parity.get_array('energy_train_target')[:, 0],
                               training_set.get_array('energies') / natoms, rtol=1e-5)
    row_of_frame = np.argsort(order)
    np.testing.assert_allclose(parity.get_array('energy_train_prediction')[:, 0] -
                               parity.get_array('energy_train_target')[:, 0], 0.001 * (row_of_frame + 1), atol=2e-5)
    np.testing.assert_allclose(parity.get_array('force_train_target'), training_set.get_array('forces'), atol=1e-5)
    np.testing.assert_allclose(parity.get_array('force_train_prediction') - parity.get_array('force_train_target'),
                               0.01, atol=2e-5)
    # Sentinel -> NaN, per frame: only frames 0 and 2 have a virial, and only they enter the RMSE.
    assert list(np.isfinite(parity.get_array('virial_train_target')).all(axis=1)) == [True, False, True, False,
                                                                                     False]
    errors = results['errors'].get_dict()
    assert errors['rows_with_target_virial_train'] == 2
    target = parity.get_array('virial_train_target')[[0, 2]]
    assert errors['rmse_virial_train_meV_per_atom'] == pytest.approx(1000 * np.sqrt(np.mean((0.002 - target) ** 2)),
                                                                     rel=1e-4)
