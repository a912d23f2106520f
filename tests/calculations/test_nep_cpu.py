"""``evaluate_nep`` and ``select_by_committee`` calcfunctions on GPUMD's PbTe NEPs and tiny rattled cells."""

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk

pytest.importorskip('calorine')

from aiida_mlcampaign.calculations.nep_cpu import evaluate_nep, select_by_committee
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.nep import committee as cm
from aiida_mlcampaign.nep import cpu

MODELS = ('gpumd/nep/pbte_train_master/nep.txt', 'gpumd/nep/pbte_train_legacy_v3.9.5/nep.txt')


def _cell(seed, amplitude=0.1, cubic=False):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=cubic)
    atoms.rattle(amplitude, seed=seed)
    return atoms


@pytest.fixture(scope='module')
def committee(aiida_profile, fixtures_dir):
    return {f'member_{n}': NepPotentialData(fixtures_dir / path).store() for n, path in enumerate(MODELS)}


@pytest.fixture(scope='module')
def model_paths(fixtures_dir):
    return [fixtures_dir / path for path in MODELS]


def test_evaluate_nep_labels_frames_and_reports_errors(committee, model_paths):
    # reference labels: the legacy model's predictions, so the errors are the difference of the two NEPs
    images = [_cell(1), _cell(2, cubic=True), _cell(3)]
    reference = cpu.evaluate(model_paths[1], images)
    frames, offsets = [], np.concatenate([[0], np.cumsum(reference['natoms'])])
    for i, atoms in enumerate(images):
        frames.append(Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell, positions=atoms.positions,
                            energy=reference['energies'][i], forces=reference['forces'][offsets[i]:offsets[i + 1]],
                            stress=reference['stresses'][i], info={'origin': 'rattle', 'source_uuid': 'abc'}))
    labelled = TrainingSetData.from_frames(frames, species=['Pb', 'Te']).store()

    outputs, node = evaluate_nep.run_get_node(committee['member_0'], labelled)
    assert node.is_finished_ok
    predictions, errors = outputs['predictions'], outputs['errors'].get_dict()
    expected = cpu.evaluate(model_paths[0], images)
    assert predictions.species == ['Pb', 'Te'] and predictions.num_frames == 3
    np.testing.assert_allclose(predictions.get_array('energies'), expected['energies'])
    np.testing.assert_allclose(predictions.get_array('forces'), expected['forces'])
    np.testing.assert_allclose(predictions.get_array('stresses'), expected['stresses'])
    np.testing.assert_allclose(predictions.get_array('positions'), labelled.get_array('positions'))
    assert list(predictions.get_array('origins')) == ['rattle'] * 3
    # GPUMD-convention virial of a predicted frame = the NEP's virial
    np.testing.assert_allclose(predictions.get_frame(1).virial, expected['virials'][1], atol=1e-10)

    # motep's error keys, computed from the two models' predictions
    natoms = expected['natoms']
    de = expected['energies'] - reference['energies']
    assert errors['energy_rmse'] == pytest.approx(np.sqrt(np.mean(de**2)))
    assert errors['energy_per_atom_rmse'] == pytest.approx(np.sqrt(np.mean((de / natoms) ** 2)))
    assert errors['forces_rmse'] == pytest.approx(np.sqrt(np.mean((expected['forces'] - reference['forces']) ** 2)))
    assert errors['stress_rmse'] == pytest.approx(
        160.21766208 * np.sqrt(np.mean((expected['stresses'] - reference['stresses']) ** 2)))
    assert errors['n_configurations'] == errors['n_energy'] == errors['n_stress'] == 3
    assert errors['n_forces_atoms'] == 12 and errors['forces_rmse'] > 0
    assert {'forces_mae', 'forces_max', 'energy_max', 'stress_mae'} <= set(errors)

    # labels without stress (e.g. from an extxyz without virial): no stress error, stored as None, not NaN
    stress_free = [Frame(symbols=f.symbols, cell=f.cell, positions=f.positions, energy=f.energy, forces=f.forces)
                   for f in frames]
    outputs, node = evaluate_nep.run_get_node(committee['member_0'],
                                              TrainingSetData.from_frames(stress_free, species=['Pb', 'Te']).store())
    assert node.is_finished_ok, node.exit_message
    errors = outputs['errors'].get_dict()
    assert errors['n_stress'] == 0 and errors['stress_rmse'] is None and errors['stress_max'] is None
    assert errors['forces_rmse'] == pytest.approx(
        np.sqrt(np.mean((expected['forces'] - reference['forces']) ** 2)))

    # unlabelled frames: predictions only
    unlabelled = TrainingSetData.from_ase([_cell(4)]).store()
    outputs = evaluate_nep(committee['member_0'], unlabelled)
    assert 'errors' not in outputs and outputs['predictions'].base.attributes.get('num_labelled') == 1


def test_select_by_committee(committee, model_paths):
    # a pool with quiet frames, hot ones, a duplicate and a near-copy of a supercell
    images = [_cell(seed, amplitude) for seed, amplitude in [(1, 0.01), (2, 0.25), (3, 0.3), (4, 0.02), (5, 0.35)]]
    images.append(images[2].copy())                                # exact duplicate of frame 2
    images.append(images[4].repeat((1, 1, 2)))                     # supercell of frame 4: same structure
    deviations = cpu.committee_deviations(model_paths, images)
    candidates = TrainingSetData.from_ase(images, origin='explore').store()
    lower, upper = 0.02, float(np.sort(deviations)[-2]) - 1e-9    # the largest and the (supercell) tie are above
    outputs, node = select_by_committee.run_get_node(
        candidates, orm.Float(lower), orm.Float(upper), orm.Int(4), **committee)
    assert node.is_finished_ok

    np.testing.assert_allclose(outputs['deviations'].get_array('deviations'), deviations)
    statistics = outputs['statistics'].get_dict()
    expected = cm.select_in_trust_window(deviations, lower, upper, 4,
                                         descriptors=cm.structure_descriptors(candidates.iter_frames(), ['Pb', 'Te']))
    assert statistics['indices'] == expected.indices
    in_window = [i for i, d in enumerate(deviations) if lower <= d < upper]
    assert statistics['in_window'] == len(in_window) and statistics['selected'] == len(expected.indices) >= 1
    assert statistics['below'] + statistics['in_window'] + statistics['above'] == 7
    assert statistics['selected_deviations'] == pytest.approx([deviations[i] for i in expected.indices])
    assert statistics['indices'][0] == max(in_window, key=lambda i: deviations[i])   # the most uncertain first
    assert not {2, 5} <= set(statistics['indices'])                                     # never both duplicates
    assert all(lower <= deviations[i] < upper for i in statistics['indices'])
    structures = sorted(key for key in outputs if key.startswith('structure_'))
    assert structures == [f'structure_{n:04d}' for n in range(len(expected.indices))]
    first = outputs['structure_0000'].get_ase()
    np.testing.assert_allclose(first.positions, images[expected.indices[0]].positions)
    assert statistics['members'] == ['member_0', 'member_1'] and statistics['models'] == 2


def test_select_by_committee_refusals(committee, fixtures_dir):
    candidates = TrainingSetData.from_ase([_cell(1)]).store()
    with pytest.raises(ValueError, match='potentials: a committee needs at least 2 NEPs'):
        select_by_committee(candidates, orm.Float(0.1), orm.Float(0.5), orm.Int(2), member_0=committee['member_0'])
    water = NepPotentialData(fixtures_dir / 'gpumd/nep/models/nep4_water_OH.txt')
    with pytest.raises(ValueError, match=r"potentials.water: species \['O', 'H'\] differ"):
        select_by_committee(candidates, orm.Float(0.1), orm.Float(0.5), orm.Int(2), water=water, **committee)
    with pytest.raises(ValueError, match='upper: must be > lower'):
        select_by_committee(candidates, orm.Float(0.5), orm.Float(0.1), orm.Int(2), **committee)
    copper = _cell(1)
    copper[0].symbol = 'Cu'
    with pytest.raises(ValueError, match=r"candidates: species \['Cu'\] are not in the potential's species"):
        select_by_committee(TrainingSetData.from_ase([copper]), orm.Float(0.1), orm.Float(0.5), orm.Int(2),
                            **committee)
    with pytest.raises(ValueError, match=r"frames: species \['Cu'\] are not in the potential's species"):
        evaluate_nep(committee['member_0'], TrainingSetData.from_ase([copper]))
