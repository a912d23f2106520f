"""The run-level helpers of ``aiida_mlcampaign.formats.nep``: stdout, ``nep.restart``, parameter counts, architecture
checks, GPUMD's batch order of ``*_train.out`` and its inverse, RMSEs.

Recorded fixtures (``tests/fixtures/gpumd/nep``, provenance in ``tests/fixtures/gpumd/SOURCES.md`` and
``SOURCES-nep.md``). The dipole (``tnep_dipole_legacy_v3.9.5``) and NEP89 fine-tuning (``finetune_nep89_MoS2``)
folders come without their ``train.xyz`` and with truncated per-atom files, so only what they hold is checked here
(columns, units, sentinels, RMSEs), not the pairing of rows with frames.
"""

import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import (
    apply_architecture, architecture_from_header, expected_parameter_count, gpumd_batch_order, match_train_order,
    parity_rmse, read_loss, read_nep_header, read_nep_restart, read_nep_stdout, read_parity, read_parity_set,
    restore_train_order,
)

NEP = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'nep'


def test_parameter_counts_match_recorded_models():
    for folder, version in (('pbte_train_master', '5.6'), ('pbte_train_legacy_v3.9.5', '3.9.5')):
        header = read_nep_header(NEP / folder / 'nep.txt')
        settings = {'type': header['species'], **architecture_from_header(header)}
        assert expected_parameter_count(settings, version) == header['n_parameters']
    assert expected_parameter_count({'type': ['Te', 'Pb']}, '5.6') == 3033  # v5.2+ defaults = the master model
    assert expected_parameter_count({'type': ['Te', 'Pb']}, '3.9.5') == 2281  # older defaults = the v3.9.5 model
    header = read_nep_header(NEP / 'qnep_pbte_master' / 'nep.txt')
    assert expected_parameter_count({'type': ['Te', 'Pb'], 'cutoff': [8, 4], 'charge_mode': 2}) == \
        header['n_parameters']


def test_read_nep_restart(tmp_path):
    assert read_nep_restart('  2.5e-01   2.7e-02\n -1.5e-01   1.9e-02\n\n') == {'n_parameters': 2}
    for text, match in (('1.0\n', 'line 1: expected two numbers'), ('1 2\nx y\n', 'line 2'),
                        ('1 nan\n', 'line 1: not finite'), ('\n', 'empty')):
        with pytest.raises(FormatError, match=match):
            read_nep_restart(text if '\n' in text else text + '\n')


def test_apply_architecture_takes_and_checks_the_model():
    header = read_nep_header(NEP / 'pbte_train_legacy_v3.9.5' / 'nep.txt')
    arch = architecture_from_header(header)
    merged = apply_architecture({'type': ['Te', 'Pb'], 'prediction': 1, 'batch': 10}, arch, 'the potential')
    assert merged['n_max'] == [4, 4] and merged['basis_size'] == [8, 8] and merged['batch'] == 10
    with pytest.raises(FormatError, match=r"^neuron: 50 does not match the potential's 30"):
        apply_architecture({'type': ['Te', 'Pb'], 'neuron': 50}, arch, 'the potential')
    with pytest.raises(FormatError, match=r"^zbl: 2.0 does not match the potential's None"):
        apply_architecture({'type': ['Te', 'Pb'], 'zbl': 2}, arch, 'the potential')


def test_batch_order_by_hand():
    # 7 frames, batch 3 -> 3 batches (sizes 3, 2, 2). Energies sorted: frames 5, 1, 3, 2, 4, 0, 6; batch b takes
    # sorted positions b, b + 3, b + 6: batch 0 = 5, 2, 6; batch 1 = 1, 4; batch 2 = 3, 0.
    energies = [5.0, 1.0, 3.0, 2.0, 4.0, 0.0, 6.0]
    assert gpumd_batch_order(energies, 3).tolist() == [5, 2, 6, 1, 4, 3, 0]
    assert gpumd_batch_order(energies, 7).tolist() == list(range(7))  # one batch: train.xyz order
    assert gpumd_batch_order([1.0, 1.0, 0.0], 1).tolist() == [2, 0, 1]  # ties keep file order (stable sort)
    with pytest.raises(FormatError, match='batch: must be >= 1'):
        gpumd_batch_order(energies, 0)


def test_match_and_restore_order():
    energies = np.array([-3.0, -3.5, -2.5, -3.2, -2.8])
    natoms = np.array([2, 3, 2, 4, 2])
    order = [1, 4, 3, 2, 0]
    assert match_train_order(energies[order], energies, 2)[1] == 'batches'
    assert match_train_order(energies, energies, 2)[1] == 'train.xyz'  # a file written in one batch anyway
    assert match_train_order(energies, energies, 1000, prediction=True)[1] == 'train.xyz'
    shuffled = [2, 0, 4, 1, 3]
    found, how = match_train_order(energies[shuffled] + 3e-6, energies, 2)
    assert how == 'matched' and found.tolist() == shuffled
    with pytest.raises(FormatError, match='4 rows but train.xyz has 5 frames'):
        match_train_order(energies[:4], energies, 2)
    with pytest.raises(FormatError, match='do not belong to the training set'):
        match_train_order(energies + 0.1, energies, 2)
    equal = np.array([-3.0, -3.0, -2.0])
    with pytest.raises(FormatError, match='ambiguous'):
        match_train_order(equal[[2, 0, 1]], equal, 1000)

    per_atom = np.concatenate([np.full((natoms[i], 3), float(i)) for i in order])  # blocks in the written order
    parity = {'kind': 'force', 'prediction': per_atom, 'target': per_atom.copy(),
              'missing': np.zeros(len(per_atom), bool)}
    restored = restore_train_order(parity, order, natoms)
    assert restored['prediction'][:, 0].tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4]
    with pytest.raises(FormatError, match='neither one per frame'):
        restore_train_order({**parity, 'prediction': per_atom[:7]}, order, natoms)


def test_rmse_leaves_out_missing_targets():
    parity = read_parity(NEP / 'pbte_train_v4.0' / 'virial_train.out', 'virial')
    assert parity_rmse(parity) == (None, 0)  # every target is the -1e6 sentinel
    parity = {'kind': 'stress', 'prediction': np.array([[1.0] * 6, [2.0] * 6]),
              'target': np.array([[0.5] * 6, [np.nan] * 6])}
    assert parity_rmse(parity) == (pytest.approx(0.5), 1)


def test_read_nep_stdout():
    text = '\n'.join([
        '*                     version 4.3                             *',
        'Number of devices = 2', 'Number of batches = 3', 'Hello, I changed the batch_size from 1000 to 834.',
        'Time used for initialization = 1.500000 s.', 'Started training.',
        'Step    Total-Loss L1Reg-Loss L2Reg-Loss RMSE-E-Train RMSE-F-Train RMSE-V-Train RMSE-E-Test  RMSE-F-Test  '
        'RMSE-V-Test',
        '100     0.15328    0.02081    0.02458    0.00189      0.10600      0.00000      0.00000      0.00000      '
        '0.00000',
        '200     0.14515    0.02171    0.02614    0.00123      0.09607      0.00000      0.00000      0.00000      '
        '0.00000',
        'Time used for training = 12.250000 s.', 'Finished running nep.', ''])
    log = read_nep_stdout(text)
    assert log['version'] == '4.3' and log['num_devices'] == 2 and log['num_batches'] == 3
    assert log['batch_size'] == 834 and log['last_generation'] == 200 and log['progress_rows'] == 2
    assert log['time_initialization_s'] == 1.5 and log['time_training_s'] == 12.25 and log['finished']
    assert log['errors'] == []
    refused = read_nep_stdout('Started running nep.\nInput Error:\n    File:       parameters.cu\n    Line:       99\n'
                              '    Error text: type should be the first keyword.\n')
    assert not refused['finished'] and refused['errors'][0]['text'] == 'type should be the first keyword.'


def test_dipole_model_outputs():
    """TNEP (dipole, v3.9.5): 6-column loss.out and per-structure dipole parity rows (truncated: 200 of 5768)."""
    folder = NEP / 'tnep_dipole_legacy_v3.9.5'
    loss = read_loss(folder / 'loss.out')
    assert loss['kind'] == 'tensor' and loss['columns'][4:] == ['rmse_tensor_train', 'rmse_tensor_test']
    assert loss['data'][0, 4] == pytest.approx(0.01403)
    result = read_parity_set({'dipole_train.out': folder / 'dipole_train.out'}, 'train')
    dipole = result['kinds']['dipole']
    assert result['order'] == 'as written' and dipole['prediction'].shape == (200, 3)
    np.testing.assert_allclose(dipole['prediction'][0], [0.0118762, 0.000438913, 0.000341426])
    rmse, rows = parity_rmse(dipole)
    assert rows == 200 and rmse == pytest.approx(np.sqrt(np.mean((dipole['prediction'] - dipole['target']) ** 2)))


def test_nep89_fine_tune_outputs():
    """NEP89 fine-tuned on MoS2 (batch 5000 > 104 frames: one batch); force file truncated to 200 rows."""
    folder = NEP / 'finetune_nep89_MoS2'
    loss = read_loss(folder / 'loss.out')
    assert loss['data'].shape == (110, 10) and loss['data'][-1, 0] == 11000
    texts = {f'{kind}_train.out': folder / f'{kind}_train.out' for kind in ('energy', 'force', 'virial', 'stress')}
    kinds = read_parity_set(texts, 'train')['kinds']
    assert kinds['energy']['prediction'].shape == (104, 1) and kinds['force']['prediction'].shape == (200, 3)
    energy_rmse, _ = parity_rmse(kinds['energy'])  # meV/atom
    assert energy_rmse == pytest.approx(1000 * np.sqrt(np.mean(np.diff(np.loadtxt(folder / 'energy_train.out'),
                                                                       axis=1) ** 2)))
    stress_rmse, rows = parity_rmse(kinds['stress'])  # GPa, every frame has a target here
    assert rows == 104 and 0.001 < stress_rmse < 1.0
    assert kinds['stress']['prediction'][0, 1] == pytest.approx(0.414292)
    targets = kinds['energy']['target'][:, 0]
    with pytest.raises(FormatError, match=r'force_train.out: 200 rows, expected 312 \(one per atom'):
        read_parity_set(texts, 'train', natoms=[3] * 104, energies_per_atom=targets, batch_size=5000)
