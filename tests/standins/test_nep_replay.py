"""The replay stand-in of ``nep`` (``nep_replay.py``), run as a program in a job folder like the real one.

Recorded real runs (GPUMD master and v3.9.5, PbTe, type order Te Pb; provenance in
``tests/fixtures/gpumd/SOURCES.md`` and ``SOURCES-nep.md``) are replayed; its parity files are compared with the
ones the real ``nep`` wrote for the same model and frames.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aiida_mlcampaign.formats.nep import nep_in, read_loss, read_nep_header, read_nep_restart, read_parity

HERE = pathlib.Path(__file__).parent
STANDIN = HERE / 'nep_replay.py'
FIXTURES = HERE.parent / 'fixtures' / 'gpumd'
MASTER = FIXTURES / 'nep' / 'pbte_train_master'
LEGACY = FIXTURES / 'nep' / 'pbte_train_legacy_v3.9.5'
TRAIN_XYZ = FIXTURES / 'pbte_train_master' / 'train.xyz'


def recording(folder: pathlib.Path, source: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True)
    for name in ('nep.txt', 'loss.out'):
        shutil.copyfile(source / name, folder / name)
    return folder


def job(tmp_path, name, settings, replay_dir=None, stop=None, files=()):
    folder = tmp_path / name
    folder.mkdir()
    (folder / 'nep.in').write_text(settings if isinstance(settings, str) else nep_in(settings))
    shutil.copyfile(TRAIN_XYZ, folder / 'train.xyz')
    for source, target in files:
        shutil.copyfile(source, folder / target)
    env = {key: value for key, value in os.environ.items() if not key.startswith('MLCAMPAIGN_NEP_REPLAY')}
    if replay_dir is not None:
        env['MLCAMPAIGN_NEP_REPLAY_DIR'] = str(replay_dir)
    if stop:
        env['MLCAMPAIGN_NEP_REPLAY_STOP'] = stop
    result = subprocess.run([sys.executable, str(STANDIN)], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=120)
    return folder, result


def test_is_an_executable_stand_in():
    assert os.access(STANDIN, os.X_OK)
    text = STANDIN.read_text()
    assert text.startswith('#!/usr/bin/env python3\n')
    assert 'STAND-IN' in text and 'REPLAYS RECORDED REAL OUTPUTS' in text


def test_training_replay_matches_the_recorded_run(tmp_path):
    replay = recording(tmp_path / 'recorded', MASTER)
    folder, result = job(tmp_path, 'train', {'type': ['Te', 'Pb'], 'generation': 20000}, replay)
    assert result.returncode == 0, result.stderr
    assert 'Finished running nep.' in result.stdout and 'version 5.6' in result.stdout
    assert (folder / 'nep.txt').read_bytes() == (MASTER / 'nep.txt').read_bytes()
    assert read_loss(folder / 'loss.out')['data'].shape == (200, 10)
    assert read_nep_restart(folder / 'nep.restart')['n_parameters'] == 3033  # synthesised: none was recorded
    # One batch: rows in train.xyz order, and the CPU evaluation reproduces what GPUMD printed (6 digits).
    for kind, rows in (('energy', 2), ('force', 500), ('virial', 2), ('stress', 2)):
        replayed = read_parity(folder / f'{kind}_train.out', kind)
        recorded = read_parity(MASTER / f'{kind}_train.out', kind)
        np.testing.assert_allclose(replayed['prediction'], recorded['prediction'][:rows], rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(replayed['target'], recorded['target'][:rows], rtol=1e-5, atol=1e-5,
                                   equal_nan=True)
    assert (folder / 'stress_train.out').read_text().split()[6] == '-1e+06'  # GPUMD >= v4.9.1 sentinel
    assert not (folder / 'energy_test.out').exists()


def test_committee_members_and_walltime(tmp_path):
    replay = tmp_path / 'committee'
    recording(replay / 'member_0', MASTER)
    recording(replay / 'member_1', LEGACY)
    models, warned = [], []
    for j in range(3):
        folder, result = job(tmp_path, f'job{j}', {'type': ['Te', 'Pb']}, replay, stop='walltime')
        assert result.returncode == 143 and 'Finished running nep.' not in result.stdout
        assert 'TIME LIMIT' in result.stderr
        header = read_nep_header(folder / 'nep.txt')
        models.append((header['n_max'], header['basis_size']))
        rows = len(read_loss(folder / 'loss.out')['data'])
        assert rows == {0: 100, 1: 50, 2: 100}[j]  # half of the recorded rows
        assert read_nep_restart(folder / 'nep.restart')['n_parameters'] == header['n_parameters']
        assert not list(folder.glob('*_train.out'))
        warned.append('differs from the replayed model' in result.stdout)
    assert models[0] == models[2] != models[1]  # job j replays member j mod 2
    assert (replay / 'replay_counter').read_text().strip() == '3'
    assert warned == [False, True, False]  # nep.in asks for the v5.6 architecture; member 1 is a v3.9.5 model


def test_prediction_mode(tmp_path):
    folder, result = job(tmp_path, 'predict', 'type 2 Te Pb\nprediction 1\n', files=[(LEGACY / 'nep.txt', 'nep.txt')])
    assert result.returncode == 0, result.stderr
    assert 'Time used for predicting' in result.stdout
    assert not (folder / 'loss.out').exists() and not (folder / 'nep.restart').exists()
    energy = read_parity(folder / 'energy_train.out', 'energy')
    np.testing.assert_allclose(energy['prediction'][0], [-3.7476], atol=2e-5)  # the v3.9.5 run printed -3.7476


@pytest.mark.parametrize('settings, replay, message', [
    ('type 2 Pb Te\n', True, r"species \['Te', 'Pb'\] but nep.in type is \['Pb', 'Te'\]"),
    ('type 1 Te\n', True, 'There is atom in train.xyz or test.xyz that are not in nep.in'),
    ('type 2 Te Pb\nn_max 13 4\n', True, r'n_max \(radial\): must be <= 12'),
    ('type 2 Te Pb\n', False, 'MLCAMPAIGN_NEP_REPLAY_DIR'),
])
def test_refusals_are_gpumd_input_errors(tmp_path, settings, replay, message):
    import re

    replay_dir = recording(tmp_path / 'recorded', MASTER) if replay else None
    folder, result = job(tmp_path, 'refused', settings, replay_dir)
    assert result.returncode == 1
    assert result.stderr.startswith('Input Error:\n') and re.search(message, result.stderr), result.stderr
    assert not (folder / 'nep.txt').exists()


def test_resume_needs_a_fitting_restart(tmp_path):
    replay = recording(tmp_path / 'recorded', MASTER)
    bad = tmp_path / 'bad.restart'
    bad.write_text('  1.0e-01   1.0e-02\n' * 20)
    _, result = job(tmp_path, 'resume', {'type': ['Te', 'Pb']}, replay, stop='walltime', files=[(bad, 'nep.restart')])
    assert result.returncode == 1 and 'nep.restart holds 20 parameters, the model needs 3033' in result.stderr
