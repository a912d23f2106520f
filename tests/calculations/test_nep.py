"""``mlcampaign.nep.train``: the files ``prepare_for_submission`` writes, the refusals, and real runs of the CalcJob
through the engine with the replay stand-in of ``nep`` (``tests/standins/nep_replay.py``) as the code.

Fixtures (provenance in ``tests/fixtures/gpumd/SOURCES.md`` and ``SOURCES-nep.md``): the first two PbTe frames of
GPUMD's ``examples/nep_train/train.xyz`` and the recorded model trained on them (``nep4 2 Te Pb``).
"""

import pathlib
import shutil

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.calculations.nep import NepTrainCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.nep import nep_in, read_nep_in, read_nep_restart
from tests.helpers import python_program

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'
MASTER = FIXTURES / 'nep' / 'pbte_train_master'
TRAIN_XYZ = FIXTURES / 'pbte_train_master' / 'train.xyz'
STANDIN = pathlib.Path(__file__).parent.parent / 'standins' / 'nep_replay.py'


@pytest.fixture(scope='module')
def pbte(aiida_profile):
    """The two recorded PbTe frames in the model's type order (Te, Pb), stored."""
    return TrainingSetData.from_extxyz(TRAIN_XYZ, species=['Te', 'Pb']).store()


@pytest.fixture(scope='module')
def master_model(aiida_profile):
    return NepPotentialData(MASTER / 'nep.txt').store()


def _restart(lines: int) -> orm.SinglefileData:
    import io

    return orm.SinglefileData(io.BytesIO(b'  1.0000000e-01   1.0000000e-02\n' * lines), filename='nep.restart')


def _inputs(code, training_set, **extra):
    inputs = {'code': code, 'training_set': training_set, 'metadata': {'options': {'max_wallclock_seconds': 600}}}
    inputs.update(extra)
    return inputs


def test_training_files(generate_calc_job, fake_code, pbte, tmp_path):
    settings = {'generation': 1000, 'batch': 1, 'neuron': 20, 'lambda_v': 0.0}
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(
        fake_code(), pbte, test_set=pbte.subset([1]), settings=orm.Dict(settings)))
    text = (folder / 'nep.in').read_text()
    assert text == nep_in({'type': ['Te', 'Pb'], **settings}, '5.6')
    assert text.splitlines()[0].split() == ['type', '2', 'Te', 'Pb']  # type first, the training set's order
    written = read_nep_in(text)
    for key in ('version', 'model_type', 'cutoff', 'n_max', 'basis_size', 'l_max', 'neuron'):
        assert key in written  # every architecture keyword explicit
    assert written['n_max'] == [6, 6] and written['basis_size'] == [6, 6]  # v5.2+ defaults

    reread = TrainingSetData.from_extxyz(folder / 'train.xyz', species=['Te', 'Pb'])
    for name in ('natoms', 'cells', 'positions', 'forces', 'energies', 'weights', 'species_index'):
        np.testing.assert_array_equal(reread.get_array(name), pbte.get_array(name))
    assert TrainingSetData.from_extxyz(folder / 'test.xyz').num_frames == 1

    assert calcinfo.local_copy_list == []
    assert set(calcinfo.provenance_exclude_list) == {'train.xyz', 'test.xyz'}
    assert {'nep.txt', 'nep.restart', 'loss.out', '*_train.out', '*_test.out', 'nep.out', 'nep.err'} <= \
        set(calcinfo.retrieve_list)
    (codeinfo,) = calcinfo.codes_info
    assert codeinfo.cmdline_params == [] and codeinfo.stdout_name == 'nep.out' and codeinfo.stderr_name == 'nep.err'


def test_version_defaults_and_species_order(generate_calc_job, fake_code, pbte):
    _, folder, process = generate_calc_job(NepTrainCalculation, _inputs(
        fake_code(), pbte, gpumd_version=orm.Str('4.0'), species=orm.List(['Pb', 'Te'])))
    written = read_nep_in((folder / 'nep.in').read_text())
    assert written['type'] == ['Pb', 'Te']  # the order given, not the frames' (Te, Pb)
    assert written['n_max'] == [4, 4] and written['basis_size'] == [8, 8]  # defaults before v5.2
    assert process.inputs.metadata.options.withmpi is False
    assert process.inputs.metadata.options.resources == {'num_machines': 1, 'num_mpiprocs_per_machine': 1}


def test_prediction_files(generate_calc_job, fake_code, pbte, master_model):
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(
        fake_code(), pbte, potential=master_model, settings=orm.Dict({'batch': 1000})))
    written = read_nep_in((folder / 'nep.in').read_text())
    assert written['prediction'] == 1
    assert written['type'] == ['Te', 'Pb']
    for key, value in master_model.get_architecture().items():
        if key != 'charge_mode':
            assert written[key] == value, key
    assert calcinfo.local_copy_list == [(master_model.uuid, master_model.filename, 'nep.txt')]
    assert 'nep.txt' not in calcinfo.retrieve_list  # the input copy, not a result


def test_restart_files(generate_calc_job, fake_code, pbte):
    restart = _restart(3033).store()
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(fake_code(), pbte, restart=restart))
    assert calcinfo.local_copy_list == [(restart.uuid, restart.filename, 'nep.restart')]
    assert 'fine_tune' not in read_nep_in((folder / 'nep.in').read_text())


def test_fine_tune_files(generate_calc_job, fake_code, pbte, master_model):
    # The recorded PbTe model stands in for a foundation model (NEP89 is not redistributed here).
    foundation_restart = _restart(master_model.n_parameters).store()
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(
        fake_code(), pbte, species=orm.List(['Pb', 'Te']), foundation=master_model,
        foundation_restart=foundation_restart, settings=orm.Dict({'generation': 500, 'lambda_1': 0})))
    text = (folder / 'nep.in').read_text()
    written = read_nep_in(text)
    assert written['fine_tune'] == ['foundation.txt', 'foundation.restart']
    assert written['type'] == ['Pb', 'Te']  # nep maps the foundation's parameters by element
    assert written['n_max'] == [6, 6] and written['neuron'] == 30 and written['cutoff'] == [8.0, 4.0]
    assert {entry[2] for entry in calcinfo.local_copy_list} == {'foundation.txt', 'foundation.restart'}


def _refused(generate_calc_job, inputs, match):
    with pytest.raises(ValueError, match=match):
        generate_calc_job(NepTrainCalculation, inputs)


def test_refusals_name_the_field(generate_calc_job, fake_code, pbte, master_model):
    code = fake_code()
    cases = [
        ({'settings': orm.Dict({'type': ['Te', 'Pb']})}, r'settings.type: set by the CalcJob.*species'),
        ({'settings': orm.Dict({'prediction': 1})}, r'settings.prediction: .*potential'),
        ({'settings': orm.Dict({'fine_tune': ['a', 'b']})}, r'settings.fine_tune: .*foundation'),
        ({'settings': orm.Dict({'n_max': [13, 4]})}, r'settings.n_max \(radial\): must be <= 12'),
        ({'settings': orm.Dict({'nonsense': 1})}, r'settings.nonsense: unknown nep.in keyword'),
        ({'settings': orm.Dict({'model_type': 1})}, r'settings.model_type: dipole/polarizability'),
        ({'species': orm.List(['Te'])}, r"training_set: species \['Pb'\] occur in the frames but not in species"),
        ({'species': orm.List(['Te', 'Xx'])}, r"species: 'Xx' is not an element"),
        ({'test_set': TrainingSetData.from_extxyz(TRAIN_XYZ).store(), 'species': orm.List(['Pb', 'Te']),
          'training_set': pbte.subset([0]).store()}, None),  # accepted: the frames re-ordered to species
        # A species without atoms would leave its part of the model as initialised: refused, for nep as for neppo.
        ({'species': orm.List(['Te', 'Pb', 'S'])}, r"species: \['S'\] have no atom in training_set"),
        ({'gpumd_version': orm.Str('3.1')}, r'gpumd_version: .*not supported'),
        ({'restart': _restart(20)}, r'restart: holds 20 parameters but the architecture of settings has 3033'),
        ({'foundation': master_model}, r'foundation_restart: fine-tuning needs both'),
        ({'foundation': master_model, 'foundation_restart': _restart(3033),
          'settings': orm.Dict({'n_max': [4, 4]})}, r"settings.n_max: \[4, 4\] does not match the foundation"),
        ({'foundation': master_model, 'foundation_restart': _restart(3033), 'species': orm.List(['Te', 'Pb', 'S'])},
         r"species: species \['S'\] are not in the foundation model"),
        ({'foundation': master_model, 'foundation_restart': _restart(100)},
         r'foundation_restart: holds 100 parameters but the foundation'),
        ({'foundation': master_model, 'foundation_restart': _restart(3033), 'restart': _restart(3033)},
         r'restart: with fine_tune, nep starts from the foundation'),
        ({'potential': master_model, 'restart': _restart(3033)}, r'restart: not allowed with potential'),
        ({'potential': master_model, 'test_set': pbte}, r'test_set: not allowed with potential'),
        ({'potential': master_model, 'species': orm.List(['Pb', 'Te'])}, r"species: \['Pb', 'Te'\] differs from the "
                                                                          r"potential's type order"),
        ({'potential': master_model, 'settings': orm.Dict({'basis_size': [8, 8]})},
         r"settings.basis_size: \[8, 8\] does not match the potential's \[6, 6\]"),
        ({'potential': NepPotentialData(FIXTURES / 'nep' / 'models' / 'nep4_dipole_water.txt')},
         r'potential: a dipole model'),
    ]
    for extra, match in cases:
        inputs = _inputs(code, pbte)
        inputs.update(extra)
        if match is None:
            generate_calc_job(NepTrainCalculation, inputs)
        else:
            _refused(generate_calc_job, inputs, match)

    unlabelled = TrainingSetData.from_arrays(['Te', 'Pb'], **{
        name: pbte.get_array(name) for name in pbte.get_arraynames()} | {'energies': np.array([np.nan, -937.0])})
    _refused(generate_calc_job, _inputs(code, unlabelled), r'training_set: 1 frame\(s\) without an energy or '
                                                          r'forces \(first: frame 0\)')
    forces = pbte.get_array('forces').copy()
    forces[300] = np.nan  # an atom of frame 1
    no_forces = TrainingSetData.from_arrays(['Te', 'Pb'], **{
        name: pbte.get_array(name) for name in pbte.get_arraynames()} | {'forces': forces})
    _refused(generate_calc_job, _inputs(code, pbte, test_set=no_forces), r'test_set: 1 frame\(s\) .*first: frame 1')


# ---------------------------------------------------------------------------------------------------- real runs
@pytest.fixture
def replay_code(aiida_code_installed, tmp_path):
    """GPUMD's nep replayed (its restart file and batch order are the point of these tests; no GPU here)."""
    return aiida_code_installed(label='nep-replay', filepath_executable=str(python_program(tmp_path, 'nep', STANDIN)),
                                default_calc_job_plugin='mlcampaign.nep.train')


@pytest.fixture
def replay_dir(tmp_path):
    """A recorded real run (GPUMD master, PbTe) in a writable folder (the stand-in keeps a counter there)."""
    folder = tmp_path / 'recorded'
    folder.mkdir()
    for name in ('nep.txt', 'loss.out'):
        shutil.copyfile(MASTER / name, folder / name)
    return folder


def _run(code, training_set, replay_dir, stop=None, **extra):
    environment = {'MLCAMPAIGN_NEP_REPLAY_DIR': str(replay_dir)}
    if stop:
        environment['MLCAMPAIGN_NEP_REPLAY_STOP'] = stop
    inputs = _inputs(code, training_set, **extra)
    inputs['metadata']['options']['environment_variables'] = environment
    return run_get_node(NepTrainCalculation, **inputs)


def test_run_with_replay_standin(replay_code, replay_dir, pbte):
    results, node = _run(replay_code, pbte, replay_dir, test_set=pbte.subset([1]),
                         settings=orm.Dict({'batch': 1, 'generation': 20000}))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    potential = results['potential']
    assert potential.species == ['Te', 'Pb'] and potential.model == 'nep4'
    assert potential.checksum == NepPotentialData(MASTER / 'nep.txt').checksum
    assert read_nep_restart(results['restart'].get_content())['n_parameters'] == potential.n_parameters

    loss = results['loss']
    assert loss.get_array('generation')[-1] == 20000 and len(loss.get_array('generation')) == 200
    assert loss.get_array('rmse_force_train')[-1] == pytest.approx(0.0399)

    # batch 1 < 2 frames: nep wrote the train rows energy-sorted; they come back in train.xyz order.
    params = results['output_parameters'].get_dict()
    assert params['parity_train_order'] == 'batches' and params['parity_test_order'] == 'test.xyz'
    assert params['finished'] and params['mode'] == 'training' and params['generations_done'] == 20000
    assert params['num_batches'] == 2 and params['gpumd_version_printed'] == '5.6'
    parity = results['parity']
    natoms = pbte.get_array('natoms')
    np.testing.assert_allclose(parity.get_array('energy_train_target')[:, 0], pbte.get_array('energies') / natoms,
                               atol=1e-5)  # %g keeps 6 significant digits
    np.testing.assert_allclose(parity.get_array('force_train_target'), pbte.get_array('forces'), atol=1e-5)
    # The recorded GPUMD run printed -3.74744 and -3.77876 eV/atom for these frames (energy_train.out).
    np.testing.assert_allclose(parity.get_array('energy_train_prediction')[:, 0], [-3.74744, -3.77876], atol=2e-5)
    assert np.isnan(parity.get_array('virial_train_target')).all()  # train.xyz has no virials: sentinel -> NaN
    assert parity.get_array('stress_test_prediction').shape == (1, 6)

    errors = results['errors'].get_dict()
    assert errors['rmse_energy_train_meV_per_atom'] == pytest.approx(
        1000 * np.sqrt(np.mean((np.array([-3.74744, -3.77876]) - [-3.74876, -3.77905]) ** 2)), abs=0.02)
    assert errors['rmse_virial_train_meV_per_atom'] is None and errors['rows_with_target_virial_train'] == 0
    assert 10 < errors['rmse_force_train_meV_per_A'] < 200
    assert errors['final_loss']['generation'] == 20000


def test_walltime_then_resume(replay_code, replay_dir, pbte, generate_calc_job):
    results, node = _run(replay_code, pbte, replay_dir, stop='walltime')
    assert node.exit_status == NepTrainCalculation.exit_codes.ERROR_NOT_FINISHED.status
    restart = results['restart']
    assert read_nep_restart(restart.get_content())['n_parameters'] == 3033
    assert len(results['loss'].get_array('generation')) == 100
    assert 'parity' not in results
    assert results['output_parameters']['finished'] is False

    # Resuming from the node: its creator's potential fixes the type order and architecture.
    with pytest.raises(ValueError, match=r"species: \['Pb', 'Te'\] differs from the type order \['Te', 'Pb'\] of the "
                                         'run that wrote restart'):
        _run(replay_code, pbte, replay_dir, restart=restart, species=orm.List(['Pb', 'Te']))
    with pytest.raises(ValueError, match=r"settings.basis_size: \[8, 4\] does not match the run that wrote restart's "
                                         r"\[6, 6\]"):  # the same 3033 parameters, another architecture
        generate_calc_job(NepTrainCalculation, _inputs(replay_code, pbte, restart=restart,
                                                       settings=orm.Dict({'basis_size': [8, 4]})))
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(replay_code, pbte, restart=restart))
    assert calcinfo.local_copy_list == [(restart.uuid, restart.filename, 'nep.restart')]
