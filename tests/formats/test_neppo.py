"""``nep.in`` for neppo (``formats.nep`` with ``engine='neppo'``) and neppo's log (``formats.neppo``).

The recorded runs are real ``neppo train`` runs (``tests/fixtures/neppo``, provenance in its ``SOURCES.md``).
"""

import pathlib
import warnings

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import fill_nep_defaults, nep_in, read_loss, read_nep_in
from aiida_mlcampaign.formats.neppo import REFUSED, read_neppo_stdout

RUNS = pathlib.Path(__file__).parent.parent / 'fixtures' / 'neppo'


def _neppo_reads(text: str, tmp_path) -> dict:
    """neppo's own reader of nep.in, when neppo is installed (it refuses what it cannot run)."""
    nep_in_module = pytest.importorskip('neppo.nep_in')
    path = tmp_path / 'nep.in'
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # an ignored keyword is a warning in neppo: make it fail here
        settings = nep_in_module.read_nep_in(path)
        nep_in_module.get_stages(settings)
        nep_in_module.get_model(settings, tmp_path)
    return settings


def test_neppo_keywords_and_stages_are_written_and_read_back(tmp_path):
    settings = {'type': ['Cu', 'Au'], 'generation': [300, 100], 'lambda_e': [1.0, 5.0], 'lambda_f': 2.0,
                'seed': 3, 'learning_rate': [1e-2, 1e-3], 'weight_decay': [0.0, 1e-4], 'loss_form': 'rmse',
                'optimizer': 'adamw', 'batch': 8, 'neuron': [16, 8], 'zbl': 2.0, 'use_typewise_cutoff_zbl': 0.65}
    text = nep_in(settings, engine='neppo')
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()}
    assert lines['generation'] == ['300', '100'] and lines['lambda_e'] == ['1', '5']
    assert lines['seed'] == ['3'] and lines['learning_rate'] == ['0.01', '0.001'] and lines['loss_form'] == ['rmse']
    assert list(lines)[0] == 'type' and 'population' not in lines
    assert read_nep_in(text, engine='neppo') == read_nep_in(nep_in(read_nep_in(text, engine='neppo'), engine='neppo'),
                                                            engine='neppo')
    # neppo's own reader takes every line, and builds the model and the stages from them
    read = _neppo_reads(text, tmp_path)
    assert read['generation'] == ['300', '100'] and read['type'] == ['2', 'Cu', 'Au']


def test_defaults_say_what_neppo_runs():
    full = fill_nep_defaults({'type': ['Cu']}, engine='neppo')
    assert full['batch'] == 32 and full['seed'] == 42 and full['learning_rate'] == [1e-2, 1e-4]
    assert full['loss_form'] == 'mse' and full['optimizer'] == 'adamw'
    assert not set(REFUSED) & set(full)  # no SNES keyword in a neppo run's settings
    assert fill_nep_defaults({'type': ['Cu']})['batch'] == 1000  # GPUMD's default is unchanged


@pytest.mark.parametrize(('settings', 'message'), [
    ({'population': 50}, r'population: a setting of GPUMD\'s evolution strategy'),
    ({'sigma0': 0.1}, 'sigma0: '),
    ({'initial_para': 1.0}, 'initial_para: '),
    ({'save_potential': [1000, 0, 0]}, 'save_potential: neppo would ignore it'),
    ({'import_q_scaler': 1}, 'import_q_scaler: '),
    ({'force_delta': 1.0}, 'force_delta: not supported by neppo'),
    ({'generation': 0}, r'generation: neppo takes a positive number of AdamW steps per stage, got \[0\]'),
    ({'generation': [10, 0]}, 'generation: '),
    ({'batch': [10, 1]}, 'batch: neppo has no full-batch mode'),
    ({'optimizer': 'snes'}, "optimizer: neppo supports only adamw, got 'snes'"),
    ({'loss_form': 'mae'}, "loss_form: expected mse or rmse, got 'mae'"),
    ({'seed': 1.5}, 'seed: expected an integer'),
    ({'learning_rate': [1e-2]}, r'learning_rate: expected 2 value\(s\), got 1'),
    ({'learning_rate': [1e-2, 0.0]}, 'learning_rate: must be positive'),
    ({'generation': [10, 20], 'lambda_f': [1, 2, 3]}, r'lambda_f: expected 1 \(all stages\) or 2 \(one per stage\)'),
    ({'lambda_e': -1}, 'lambda_e: must be >= 0'),
    ({'charge_vdw': 1}, 'charge_vdw: neppo supports only charge_vdw 0'),
    ({'charge_mode': [1, 1]}, 'charge_mode: neppo does not support flip_charge'),
    ({'version': 3}, 'version: NEP version 3 is not accepted'),
    ({'colour': 1}, 'colour: unknown nep.in keyword'),
])
def test_what_neppo_cannot_honour_is_refused_naming_the_keyword(settings, message):
    with pytest.raises(FormatError, match=message):
        nep_in({'type': ['Cu'], **settings}, engine='neppo')


def test_neppo_keywords_are_refused_for_gpumd():
    with pytest.raises(FormatError, match="seed: a keyword of neppo .* GPUMD's nep does not read"):
        nep_in({'type': ['Cu'], 'seed': 1})
    with pytest.raises(FormatError, match=r'generation: expected 1 value\(s\), got 2'):
        nep_in({'type': ['Cu'], 'generation': [10, 20]})


def test_read_nep_in_names_the_line():
    text = 'type 1 Cu\ngeneration 100\nlearning_rate 0.01\n'
    with pytest.raises(FormatError, match=r'nep.in line 3: learning_rate: expected 2 value\(s\), got 1'):
        read_nep_in(text, engine='neppo')
    with pytest.raises(FormatError, match='nep.in line 3: generation: given twice'):
        read_nep_in('type 1 Cu\ngeneration 100\ngeneration 200\n', engine='neppo')
    with pytest.raises(FormatError, match='nep.in line 2: seed: unknown keyword'):
        read_nep_in('type 1 Cu\nseed 1\n')  # GPUMD's grammar


@pytest.mark.parametrize('run', ['train_stages', 'predict', 'killed', 'ignored_keyword'])
def test_recorded_inputs_are_read(run):
    """The nep.in neppo ran (written by nep_in) reads back; the population line neppo ignored is refused."""
    text = (RUNS / run / 'nep.in').read_text()
    if run == 'ignored_keyword':
        with pytest.raises(FormatError, match=r'nep.in line \d+: population: a setting of GPUMD'):
            read_nep_in(text, engine='neppo')
        return
    assert read_nep_in(text, engine='neppo')['type'] == ['Cu', 'Au']


def test_log_of_a_finished_training():
    folder = RUNS / 'train_stages'
    log = read_neppo_stdout((folder / 'nep.out').read_text(), (folder / 'nep.err').read_text())
    assert log['version'] == '1.0' and log['torch_version'] == '2.13.0+cpu' and log['device'] == 'cpu'
    assert log['cpu_threads'] == 1
    assert log['stages_started'] == 2 and log['stages_finished'] == 2
    assert log['last_generation'] == 30 and log['progress_rows'] == 3
    assert log['num_batches'] == 3 and log['batch_size'] == 4
    assert log['time_training_s'] is not None and log['errors'] == [] and log['warnings'] == []
    assert not log['prediction_finished']


def test_log_of_a_killed_training_and_a_prediction():
    killed = read_neppo_stdout((RUNS / 'killed' / 'nep.out').read_text(), '')
    assert killed['stages_started'] == 1 and killed['stages_finished'] == 0
    rows = read_loss(RUNS / 'killed' / 'loss.out')['data']
    assert killed['last_generation'] == int(rows[-1, 0]) and killed['time_training_s'] is None
    predict = read_neppo_stdout((RUNS / 'predict' / 'nep.out').read_text(), '')
    assert predict['prediction_finished'] and predict['stages_started'] == 0 and predict['last_generation'] is None


def test_log_of_a_refusal_and_of_a_warning():
    refused = read_neppo_stdout((RUNS / 'refused' / 'nep.out').read_text(), (RUNS / 'refused' / 'nep.err').read_text())
    assert refused['errors'] == [{'kind': 'NotImplementedError',
                                  'text': 'neppo does not support the keyword fine_tune'}]
    ignored = read_neppo_stdout((RUNS / 'ignored_keyword' / 'nep.out').read_text(),
                                (RUNS / 'ignored_keyword' / 'nep.err').read_text())
    assert ignored['errors'] == [] and ignored['stages_finished'] == 1
    assert ignored['warnings'] == ['UserWarning: neppo ignores the keyword population']


def test_loss_of_two_stages():
    loss = read_loss(RUNS / 'train_stages' / 'loss.out')
    assert loss['kind'] == 'potential'
    assert loss['columns'] == ['generation', 'loss_total', 'rmse_energy_train', 'rmse_force_train',
                               'rmse_virial_train', 'rmse_energy_test', 'rmse_force_test', 'rmse_virial_test']
    np.testing.assert_array_equal(loss['data'][:, 0], [10, 20, 30])  # steps count on across the stages
    killed = read_loss(RUNS / 'killed' / 'loss.out')
    assert killed['columns'][-1] == 'rmse_virial_train' and len(killed['data']) > 10
