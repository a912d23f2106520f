"""``compare_errors`` and ``compare_speed``: values, stored figures and provenance links.

Errors are checked twice: on hand-built predictions shifted by known amounts, and on real MTP predictions
(two trained Cu potentials evaluated in-process with motep, the same engine and cfg round trip as
``MotepEvaluateCalculation``), against motep's own error report.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm

from aiida_mlcampaign.calculations.analysis_models import compare_errors, compare_speed
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.formats.mlip_cfg import read_cfg

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures'
A = 5.0


def reference_frames():
    rng = np.random.default_rng(3)
    return [
        Frame(symbols=['Cu', 'Cu', 'S'], cell=np.eye(3) * A, positions=rng.uniform(0, A, (3, 3)),
              energy=-12.0 - i, forces=rng.normal(0, 0.5, (3, 3)), stress=np.diag([0.01, -0.02, 0.005]))
        for i in range(3)
    ]


def shifted(frames, energy_per_atom, force):
    """Same frames, energy + ``energy_per_atom`` eV/atom, every force component + ``force`` eV/Å."""
    return [Frame(symbols=f.symbols, cell=f.cell, positions=f.positions, energy=f.energy + energy_per_atom * f.natoms,
                  forces=f.forces + force, stress=f.stress) for f in frames]


def check_figure(figure, filename):
    assert figure.filename == filename
    with figure.open(mode='rb') as handle:
        content = handle.read()
    assert content.startswith(b'\x89PNG') and len(content) > 1000


def test_compare_errors_known_shifts_and_links(aiida_profile):
    frames = reference_frames()
    reference = TrainingSetData.from_frames(frames).store()
    mtp = TrainingSetData.from_frames(shifted(frames, 0.003, 0.02)).store()
    nep = TrainingSetData.from_frames(shifted(frames, -0.001, -0.005)).store()
    results, node = compare_errors.run_get_node(reference=reference, mtp=mtp, nep=nep)
    errors = results['errors'].get_dict()
    assert set(errors) == {'mtp', 'nep'}
    assert errors['mtp']['energy_rmse_meV_per_atom'] == pytest.approx(3.0)
    assert errors['mtp']['force_rmse_meV_per_A'] == pytest.approx(20.0)
    assert errors['nep']['energy_mae_meV_per_atom'] == pytest.approx(1.0)
    assert errors['nep']['force_rmse_by_element_meV_per_A'] == pytest.approx({'Cu': 5.0, 'S': 5.0})
    assert errors['mtp']['virial_rmse_meV_per_atom'] == pytest.approx(0.0, abs=1e-9)
    parity = results['parity']
    assert parity.base.attributes.get('models') == ['mtp', 'nep']
    assert parity.get_array('force_mtp_eV_per_A').shape == (9, 3)
    assert parity.base.attributes.get('units')['energy_nep_eV_per_atom'] == 'eV/atom'
    check_figure(results['figure'], 'parity.png')
    incoming = {entry.link_label: entry.node.pk for entry in node.base.links.get_incoming().all()}
    assert incoming == {'reference': reference.pk, 'mtp': mtp.pk, 'nep': nep.pk}
    query = orm.QueryBuilder()
    query.append(TrainingSetData, filters={'id': nep.pk}, tag='predictions')
    query.append(orm.CalcFunctionNode, with_incoming='predictions', tag='compare')
    query.append(orm.SinglefileData, with_incoming='compare', project='attributes.filename')
    assert query.all() == [['parity.png']]


def test_compare_errors_refuses_other_frames_naming_the_model(aiida_profile):
    frames = reference_frames()
    reference = TrainingSetData.from_frames(frames).store()
    moved = shifted(frames, 0.0, 0.0)
    moved[1].positions = moved[1].positions.copy()
    moved[1].positions[0, 0] += 0.2
    with pytest.raises(ValueError, match='^nep: frame 1 atom 0 is 0.2 Å away'):
        compare_errors(reference=reference, nep=TrainingSetData.from_frames(moved).store())
    with pytest.raises(ValueError, match='predictions: give at least one model'):
        compare_errors(reference=reference)


def test_compare_errors_on_real_mtp_predictions(aiida_profile, tmp_path):
    from aiida_mlcampaign.mtp import engine

    cfg = FIXTURES / 'mtp' / 'cu_emt_train_40cfg_made-here.cfg'
    frames = list(read_cfg(cfg, ['Cu']))[:12]
    reference = TrainingSetData.from_frames(frames, species=['Cu']).store()
    predictions, reports = {}, {}
    for model, name in (('mlip2', 'cu_emt_L08_mlip2-trained_from-motep-tests.mtp'),
                        ('motep', 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp')):
        out = tmp_path / f'{model}.cfg'
        reports[model] = engine.evaluate(FIXTURES / 'mtp' / name, frames, ['Cu'], out).errors
        predictions[model] = TrainingSetData.from_frames(read_cfg(out, ['Cu']), species=['Cu']).store()
    results = compare_errors(reference=reference, **predictions)
    errors = results['errors'].get_dict()
    for model, report in reports.items():
        assert errors[model]['energy_rmse_meV_per_atom'] == pytest.approx(1000 * report['energy_per_atom_rmse'])
        assert errors[model]['force_rmse_meV_per_A'] == pytest.approx(1000 * report['forces_rmse'])
        assert errors[model]['force_rmse_by_element_meV_per_A']['Cu'] == pytest.approx(1000 * report['forces_rmse'])
        assert errors[model]['n_virial'] == 12
    check_figure(results['figure'], 'parity.png')


def test_compare_speed_from_files_and_dicts(aiida_profile):
    speed = FIXTURES / 'speed'
    nep = orm.SinglefileData(speed / 'gpumd_stdout_handwritten.txt').store()
    mtp = orm.SinglefileData(speed / 'lammps_mtp_handwritten.log').store()
    explore = orm.Dict({'walkers': [{'natoms': 8, 'steps_run': 100, 'wall_time': 2.0}],
                        'settings': {'grade_every': 10}}).store()
    dft = orm.Dict({'atom_steps_per_s': 0.5, 'hardware': '2 cores', 'note': 'pw.x AIMD'}).store()
    results, node = compare_speed.run_get_node(nep=nep, mtp=mtp, mtp_ase=explore, dft=dft)
    table = results['table'].get_dict()
    assert table['models'] == ['nep', 'mtp', 'mtp_ase', 'dft']
    nep_speed, mtp_speed = 4000 * 30000 / 5.2, 4000 * 1000 / 6.6
    assert table['atom_steps_per_s']['nep'] == pytest.approx(nep_speed)
    assert table['atom_steps_per_s']['mtp'] == pytest.approx(mtp_speed, rel=1e-6)
    assert table['atom_steps_per_s']['mtp_ase'] == pytest.approx(400.0)
    assert table['ratio_to_slowest']['nep'] == pytest.approx(nep_speed / 0.5)
    assert table['details']['dft']['hardware'] == '2 cores'
    assert table['details']['mtp']['source'] == 'lammps' and table['details']['nep']['version'] == '5.6'
    check_figure(results['figure'], 'speed.png')
    incoming = {entry.link_label for entry in node.base.links.get_incoming().all()}
    assert incoming == {'nep', 'mtp', 'mtp_ase', 'dft'}
    # the ``speed`` Dict of the gpumd parser (runs with stage, steps, time and speed)
    parser_speed = orm.Dict({'runs': [{'stage': 0, 'steps': 10000, 'time_s': 2.0, 'speed_atom_step_per_s': 2e7},
                                      {'stage': 1, 'steps': 20000, 'time_s': 3.2, 'speed_atom_step_per_s': 2.5e7}],
                             'run_time_s': 5.2, 'total_time_s': 5.4, 'overall_speed_atom_step_per_s': nep_speed})
    from_parser = compare_speed(nep=parser_speed, dft=dft)
    assert from_parser['table']['atom_steps_per_s']['nep'] == pytest.approx(nep_speed)
    only_last = compare_speed(nep=orm.Dict({'gpumd_stdout': (speed / 'gpumd_stdout_handwritten.txt').read_text(),
                                            'run': -1}), mtp=mtp)
    assert only_last['table']['atom_steps_per_s']['nep'] == pytest.approx(2.5e7)
    assert only_last['table']['statements'] == [f'nep {2.5e7 / mtp_speed:.1f}x faster than mtp']


def test_compare_speed_refuses_unknown_input(aiida_profile, tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('nothing to see\n')
    with pytest.raises(ValueError, match='^mtp: notes.txt is neither'):
        compare_speed(mtp=orm.SinglefileData(text).store())
    with pytest.raises(ValueError, match='^nep: no speed found'):
        compare_speed(nep=orm.Dict({'foo': 1}).store())
