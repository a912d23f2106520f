"""``mlcampaign.nep.train`` with neppo: the refusals before submission, the files written, and real neppo runs.

The code is the one ``aiida-mlcampaign setup`` makes for ``neppo`` (found next to this interpreter or on PATH).
Frames: 12 + 4 EMT-labelled Cu6Au2 cells (``tests/fixtures/neppo/train_stages``, ``SOURCES.md`` there).
"""

import io
import pathlib
import stat

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.calculations.nep import NEP_ENGINE_EXTRA, NepTrainCalculation, nep_engine
from aiida_mlcampaign.calculations.nep_cpu import evaluate_nep
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.nep import read_nep_in
from tests.helpers import local_codes

RUNS = pathlib.Path(__file__).parent.parent / 'fixtures' / 'neppo'
SMALL = {'cutoff': [5.0, 4.0], 'n_max': [4, 4], 'basis_size': [4, 4], 'neuron': 8, 'batch': 4}
OPTIONS = {'max_wallclock_seconds': 600, 'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}


@pytest.fixture(scope='module')
def neppo_code(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'neppo')['neppo']


@pytest.fixture(scope='module')
def frames(aiida_profile):
    folder = RUNS / 'train_stages'
    return {split: TrainingSetData.from_extxyz(folder / f'{split}.xyz', species=['Cu', 'Au']).store()
            for split in ('train', 'test')}


def _inputs(code, training_set, settings=None, **extra):
    inputs = {'code': code, 'training_set': training_set, 'metadata': {'options': dict(OPTIONS)}}
    if settings is not None:
        inputs['settings'] = orm.Dict(settings)
    inputs.update(extra)
    return inputs


def test_engine_is_chosen_by_the_code(neppo_code, fake_code):
    assert nep_engine(neppo_code) == 'neppo' and nep_engine(fake_code('nep')) == 'gpumd'
    wrapper = orm.InstalledCode(label='my-trainer', computer=neppo_code.computer, filepath_executable='/bin/true')
    wrapper.base.extras.set(NEP_ENGINE_EXTRA, 'neppo')
    assert nep_engine(wrapper) == 'neppo'
    wrapper.base.extras.set(NEP_ENGINE_EXTRA, 'lammps')
    with pytest.raises(ValueError, match='code: extra mlcampaign_nep_engine=.lammps. is not one of'):
        nep_engine(wrapper)


def test_files_for_neppo(generate_calc_job, neppo_code, frames):
    settings = {**SMALL, 'generation': [30, 10], 'seed': 5, 'learning_rate': [0.02, 0.001]}
    calcinfo, folder, _ = generate_calc_job(NepTrainCalculation, _inputs(
        neppo_code, frames['train'], settings, test_set=frames['test']))
    assert calcinfo.codes_info[0].cmdline_params == ['train', '.', '--device', 'cpu']
    written = read_nep_in((folder / 'nep.in').read_text(), engine='neppo')
    assert written['generation'] == [30, 10] and written['seed'] == 5 and written['type'] == ['Cu', 'Au']
    assert (folder / 'train.xyz').is_file() and (folder / 'test.xyz').is_file()


@pytest.mark.parametrize(('settings', 'extra', 'message'), [
    ({'population': 60}, {}, r"settings.population: a setting of GPUMD's evolution strategy \(SNES\)"),
    ({'generation': 0}, {}, 'settings.generation: neppo takes a positive number of AdamW steps'),
    ({'save_potential': [10, 0, 1]}, {}, 'settings.save_potential: neppo would ignore it'),
    ({'seed': 'x'}, {}, 'settings.seed: expected an integer'),
    ({}, {'species': ['Cu', 'Au', 'Ag']}, r"species: \['Ag'\] have no atom in training_set"),
    ({}, {'gpumd_version': '4.0'}, "gpumd_version: '4.0' selects the nep.in of an older GPUMD, but the code is neppo"),
])
def test_what_neppo_cannot_honour_is_refused_before_submission(generate_calc_job, neppo_code, frames, settings,
                                                                extra, message):
    extra = {key: orm.List(value) if isinstance(value, list) else orm.Str(value) for key, value in extra.items()}
    with pytest.raises(ValueError, match=message):
        generate_calc_job(NepTrainCalculation, _inputs(neppo_code, frames['train'], settings, **extra))


def test_resume_and_fine_tune_are_refused_for_neppo(generate_calc_job, neppo_code, frames):
    restart = orm.SinglefileData(io.BytesIO(b'0.1 0.01\n'), filename='nep.restart')
    with pytest.raises(ValueError, match='restart: neppo saves no optimiser state'):
        generate_calc_job(NepTrainCalculation, _inputs(neppo_code, frames['train'], restart=restart))
    foundation = NepPotentialData(RUNS / 'train_stages' / 'nep.txt')
    with pytest.raises(ValueError, match='foundation: neppo 1.0 cannot fine-tune'):
        generate_calc_job(NepTrainCalculation, _inputs(neppo_code, frames['train'], foundation=foundation,
                                                       foundation_restart=restart))


def test_zero_steps_are_refused_for_gpumd_too(generate_calc_job, fake_code, frames):
    with pytest.raises(ValueError, match='settings.generation: 0 trains nothing'):
        generate_calc_job(NepTrainCalculation, _inputs(fake_code('nep'), frames['train'], {'generation': 0}))


def test_neppo_trains_and_cpunep_reproduces_its_predictions(neppo_code, frames):
    settings = {**SMALL, 'generation': 40, 'output_interval': 20, 'seed': 11}
    results, node = run_get_node(NepTrainCalculation, **_inputs(neppo_code, frames['train'], settings,
                                                                test_set=frames['test']))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    params = results['output_parameters'].get_dict()
    assert params['engine'] == 'neppo' and params['engine_version'] and params['generations_done'] == 40
    assert params['settings']['seed'] == 11 and params['parity_train_order'] == 'train.xyz'
    potential = results['potential']
    assert potential.species == ['Cu', 'Au'] and potential.model == 'nep4'
    assert np.isfinite(results['loss'].get_array('rmse_force_test')).all()

    # The model neppo wrote, run by calorine's CPUNEP, gives what neppo itself predicted: 1e-4 relative.
    evaluated = evaluate_nep(potential, frames['train'])['predictions']
    parity = results['parity']
    natoms = frames['train'].get_array('natoms')
    np.testing.assert_allclose(evaluated.get_array('energies') / natoms,
                               parity.get_array('energy_train_prediction')[:, 0], rtol=1e-4)
    forces = parity.get_array('force_train_prediction')
    np.testing.assert_allclose(evaluated.get_array('forces'), forces, rtol=1e-4, atol=1e-4 * np.abs(forces).max())


def test_walltime_stop_keeps_the_last_model(neppo_code, frames, tmp_path):
    """A scheduler's walltime kill is SIGTERM: here the wrapper sends it to the real neppo once neppo has saved a
    model (not after a fixed time, which a loaded machine may spend importing torch)."""
    wrapper = tmp_path / 'neppo-walltime'
    wrapper.write_text(
        '#!/bin/sh\n'
        f'"{neppo_code.filepath_executable}" "$@" & pid=$!\n'
        'while [ ! -s nep.txt ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done\n'
        'sleep 2\nkill -TERM $pid\nwait $pid\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    code = orm.InstalledCode(label='neppo-walltime', computer=neppo_code.computer, filepath_executable=str(wrapper))
    settings = {**SMALL, 'generation': 10 ** 7, 'output_interval': 10}
    results, node = run_get_node(NepTrainCalculation, **_inputs(code.store(), frames['train'], settings))
    assert node.exit_status == NepTrainCalculation.exit_codes.ERROR_NOT_FINISHED.status, node.exit_message
    assert 'neppo cannot resume' in node.exit_message
    assert results['potential'].species == ['Cu', 'Au'] and 'restart' not in results
    assert results['output_parameters']['finished'] is False
    assert results['output_parameters']['generations_done'] == results['loss'].get_array('generation')[-1] >= 10
    assert results['output_parameters']['engine'] == 'neppo'
