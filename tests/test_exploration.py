"""Exploration-MD driver without AiiDA: walkers, grades, candidates, explosions, settings.

Potential: the level-08 Cu MTP trained with BFGS on the 40 EMT configurations
(fixtures/mtp/SOURCES.md); its active set comes from the same 40 configurations. The starting
structure is training configuration 0 (8-atom fcc cell, slightly strained and rattled): at 300 K
its grades stay near 1, at 3000 K the walker leaves the training domain within tens of steps.
"""

import json
import math
import pathlib

import numpy as np
import pytest

pytest.importorskip('motep')

from aiida_mlcampaign.formats.extxyz import read_extxyz, write_extxyz
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from aiida_mlcampaign import exploration as ex

MTP_DIR = pathlib.Path(__file__).parent / 'fixtures' / 'mtp'
POTENTIAL = MTP_DIR / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
TRAIN_CFG = MTP_DIR / 'cu_emt_train_40cfg_made-here.cfg'
SPECIES = ['Cu']
BASE = {'temperatures': [300, 3000], 'seeds': [1, 2], 'steps': 300, 'time_step': 2.0, 'grade_every': 10}


def _start(index=0, label=None) -> Frame:
    frame = list(read_cfg(TRAIN_CFG, SPECIES))[index]
    return Frame(symbols=frame.symbols, cell=frame.cell, positions=frame.positions,
                 info={'label': label} if label else {})


def _overlapping() -> Frame:
    frame = _start(label='overlap')
    frame.positions[1] = frame.positions[0] + [0.3, 0.0, 0.0]
    return frame


def _run(tmp_path, settings, starts, name='out'):
    starts_path = tmp_path / f'{name}_starts.xyz'
    write_extxyz(starts, starts_path, convention='ase')
    out = tmp_path / name
    summary = ex.explore(settings, POTENTIAL, SPECIES, TRAIN_CFG, starts_path, out)
    return summary, list(read_extxyz(out / ex.CANDIDATES_FILENAME)), out


@pytest.fixture(scope='module')
def ladder(tmp_path_factory):
    """2 temperatures x 2 seeds x 2 starts (a good fcc cell and one with atoms 0.3 Å apart)."""
    tmp_path = tmp_path_factory.mktemp('explore')
    return _run(tmp_path, BASE, [_start(label='fcc'), _overlapping()])


def _walkers(summary, temperature, start):
    return [w for w in summary['walkers'] if w['temperature'] == temperature and w['start'] == start]


# ------------------------------------------------------------------------------------ walkers


def test_walker_layout_and_summary_file(ladder):
    summary, _, out = ladder
    assert json.loads((out / ex.SUMMARY_FILENAME).read_text()) == summary
    walkers = summary['walkers']
    assert len(walkers) == 2 * 2 * 2
    assert [w['walker'] for w in walkers] == list(range(8))
    assert {(w['temperature'], w['seed'], w['start']) for w in walkers} == {
        (t, s, i) for t in (300.0, 3000.0) for s in (1, 2) for i in (0, 1)}
    assert {w['start_label'] for w in walkers} == {'fcc', 'overlap'}
    assert summary['active_set']['training_configurations'] == 40
    assert summary['settings']['select_threshold'] == 2.1 and summary['settings']['break_threshold'] == 10.0


def test_cold_walker_stays_below_select(ladder):
    summary, frames, _ = ladder
    for walker in _walkers(summary, 300.0, 0):
        assert walker['stop_reason'] == 'completed'
        assert walker['steps_run'] == 300 and walker['graded'] == 30
        assert walker['above_select'] <= 0.1 * walker['graded']
        assert 0.5 < walker['max_grade'] < 2.1
    assert not [f for f in frames if f.info['temperature'] == 300.0]


def test_hot_walker_breaks_and_saves_the_breaking_frame(ladder):
    summary, frames, _ = ladder
    for walker in _walkers(summary, 3000.0, 0):
        assert walker['stop_reason'] == 'break'
        assert walker['steps_run'] < 300 and walker['steps_run'] % 10 == 0
        assert walker['max_grade'] > 10.0
        mine = [f for f in frames if f.info['walker'] == walker['walker']]
        assert len(mine) == walker['candidates'] == walker['above_select'] >= 1
        # mlip-2 saves the breaking frame before stopping: the last candidate is the break step
        assert mine[-1].info['step'] == walker['steps_run']
        assert mine[-1].info['grade'] == pytest.approx(walker['max_grade'])
        assert all(f.info['grade'] > 2.1 for f in mine)
        assert [f.info['step'] for f in mine] == sorted(f.info['step'] for f in mine)


def test_candidates_are_unlabelled_and_described(ladder):
    summary, frames, _ = ladder
    assert frames
    for frame in frames:
        assert frame.energy is None and frame.forces is None and frame.stress is None
        assert frame.symbols == ['Cu'] * 8 and frame.pbc == (True, True, True)
        walker = summary['walkers'][frame.info['walker']]
        assert frame.info['temperature'] == walker['temperature']
        assert frame.info['seed'] == walker['seed'] and frame.info['start'] == walker['start']
        assert frame.info['origin'] == 'explore'
        assert frame.info['step'] % 10 == 0 and frame.info['grade'] > 2.1


def test_totals_are_consistent(ladder):
    summary, frames, _ = ladder
    walkers, totals = summary['walkers'], summary['totals']
    assert totals['candidates'] == len(frames) == sum(w['candidates'] for w in walkers)
    assert totals['graded'] == sum(w['graded'] for w in walkers)
    assert totals['above_select'] == sum(w['above_select'] for w in walkers)
    assert totals['candidate_fraction'] == pytest.approx(totals['above_select'] / totals['graded'])
    assert totals['steps_run'] == sum(w['steps_run'] for w in walkers)
    assert totals['completed'] + totals['break'] + totals['exploded'] == totals['walkers'] == 8
    assert totals['exploded'] == 4 and totals['break'] == 2 and totals['completed'] == 2
    assert totals['max_grade'] == max(w['max_grade'] for w in walkers if w['max_grade'] is not None)
    assert totals['wall_time'] > 0 and totals['steps_per_second'] > 10


def test_overlapping_start_explodes_at_once(ladder):
    summary, frames, _ = ladder
    for temperature in (300.0, 3000.0):
        for walker in _walkers(summary, temperature, 1):
            assert walker['stop_reason'] == 'exploded'
            assert walker['steps_run'] == 0 and walker['graded'] == 0 and walker['max_grade'] is None
            assert '0.300 Å apart' in walker['stop_detail']
    assert not [f for f in frames if f.info['start'] == 1]


def test_same_seed_same_trajectory(ladder, tmp_path):
    _, frames, _ = ladder
    # seed 2 at 3000 K alone, in a run with another walker order: identical candidates
    _, again_frames, _ = _run(tmp_path, {**BASE, 'temperatures': [3000], 'seeds': [2]}, [_start()])
    reference = [f for f in frames if f.info['temperature'] == 3000.0 and f.info['seed'] == 2]
    assert len(again_frames) == len(reference) > 0
    for a, b in zip(again_frames, reference, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.info['step'] == b.info['step'] and a.info['grade'] == b.info['grade']
    other = [f for f in frames if f.info['temperature'] == 3000.0 and f.info['seed'] == 1]
    assert not np.allclose(other[0].positions, reference[0].positions)


# ----------------------------------------------------------------------- thresholds and limits


def test_explode_grade_discards_the_frame(tmp_path):
    # explode_grade just above break: the first frame above 6 is garbage, not a breaking candidate
    # (with these seeds: grades 3.99, 3.97, 4.87 at steps 10-30, then 19.2 at step 40)
    settings = {**BASE, 'temperatures': [3000], 'seeds': [2], 'break_threshold': 6.0, 'explode_grade': 6.000001}
    summary, frames, _ = _run(tmp_path, settings, [_start()])
    (walker,) = summary['walkers']
    assert walker['stop_reason'] == 'exploded' and 'explode_grade 6' in walker['stop_detail']
    assert walker['steps_run'] == 10 * (walker['graded'] + 1)  # the exploded frame is not counted as graded
    assert walker['max_grade'] <= 6.0
    assert len(frames) == walker['above_select'] and all(f.info['step'] < walker['steps_run'] for f in frames)
    assert all(f.info['grade'] <= 6.0 for f in frames)


def test_min_distance_explodes_during_the_run(tmp_path):
    # fcc Cu has 2.55 Å nearest neighbours; at 3000 K they come closer than 2.3 Å within steps
    settings = {**BASE, 'temperatures': [3000], 'seeds': [1], 'min_distance': 2.3, 'break_threshold': 1e3,
                'explode_grade': 1e5}
    summary, frames, _ = _run(tmp_path, settings, [_start()])
    (walker,) = summary['walkers']
    assert walker['stop_reason'] == 'exploded' and walker['steps_run'] > 0
    assert 'min_distance 2.3' in walker['stop_detail']
    assert all(f.info['step'] < walker['steps_run'] for f in frames)
    assert summary['totals']['exploded'] == 1


def test_candidates_per_walker_are_capped(tmp_path):
    settings = {**BASE, 'temperatures': [3000], 'seeds': [1], 'steps': 200, 'select_threshold': 1.05,
                'break_threshold': 1e3, 'explode_grade': 1e5, 'max_candidates_per_walker': 2}
    summary, frames, _ = _run(tmp_path, settings, [_start()])
    (walker,) = summary['walkers']
    assert walker['above_select'] > 2
    assert walker['candidates'] == len(frames) == summary['totals']['candidates'] == 2
    assert summary['totals']['candidate_fraction'] == pytest.approx(walker['above_select'] / walker['graded'])


def test_no_break_threshold_walkers_go_on(tmp_path):
    """break_threshold None (the MTP family's young potential): grades above 10 no longer stop a walker."""
    settings = {**BASE, 'temperatures': [3000], 'break_threshold': None, 'min_distance': 1.5}
    summary, frames, _ = _run(tmp_path, settings, [_start()])
    assert summary['settings']['break_threshold'] is None
    assert summary['totals']['break'] == 0
    for walker in summary['walkers']:
        assert walker['stop_reason'] in ('completed', 'exploded')
        assert walker['max_grade'] > 10  # a break at 10 would have ended it
    with_break = _run(tmp_path, {**settings, 'break_threshold': 10.0}, [_start()], name='with_break')[0]
    assert sum(w['steps_run'] for w in summary['walkers']) > sum(w['steps_run'] for w in with_break['walkers'])


def test_npt_berendsen_runs(tmp_path):
    settings = {**BASE, 'temperatures': [300], 'seeds': [3], 'steps': 100, 'ensemble': 'npt', 'pressure': 0.0}
    summary, _, _ = _run(tmp_path, settings, [_start()])
    (walker,) = summary['walkers']
    assert walker['stop_reason'] == 'completed' and walker['graded'] == 10
    assert summary['settings']['taup'] == 1000.0 and 'friction' not in summary['settings']


def test_main_runs_in_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'potential.mtp').write_text(POTENTIAL.read_text())
    (tmp_path / 'training.cfg').write_text(TRAIN_CFG.read_text())
    write_extxyz([_start()], tmp_path / 'starts.xyz', convention='ase')
    settings = {**BASE, 'temperatures': [300], 'seeds': [1], 'steps': 20, 'species': SPECIES}
    (tmp_path / 'settings.json').write_text(json.dumps(settings))
    assert ex.main(['settings.json']) == 0
    out = capsys.readouterr().out
    assert ex.DONE_MARKER in out and 'walker 0: T=300 K seed=1 start=0 completed' in out
    assert json.loads((tmp_path / 'summary.json').read_text())['totals']['walkers'] == 1
    assert (tmp_path / 'candidates.xyz').exists()

    (tmp_path / 'settings.json').write_text(json.dumps({**settings, 'steps': 0}))
    assert ex.main(['settings.json']) == 1
    assert f'{ex.ERROR_MARKER}: ValueError: steps: must be an integer >= 1' in capsys.readouterr().out


def test_driver_refuses_an_element_outside_the_species(tmp_path):
    frame = _start()
    frame.symbols[0] = 'Ag'
    with pytest.raises(ValueError, match=r"starts: structure 0 holds \['Ag'\]"):
        _run(tmp_path, BASE, [frame])


# ------------------------------------------------------------------------------------ settings


def test_settings_defaults():
    settings = ex.check_explore_settings(dict(BASE))
    assert settings == {
        **BASE, 'temperatures': [300.0, 3000.0], 'time_step': 2.0, 'ensemble': 'nvt', 'friction': 0.02,
        'select_threshold': 2.1, 'break_threshold': 10.0, 'explode_grade': None, 'min_distance': 0.6,
        'max_candidates_per_walker': 20, 'engine': 'cext',
    }
    assert ex.check_explore_settings(settings) == settings  # idempotent
    json.dumps(settings)


@pytest.mark.parametrize('change, message', [
    ({'temperatures': [300, -5]}, r'temperatures\[1\]: must be a number > 0'),
    ({'temperatures': []}, 'temperatures: must be a non-empty list'),
    ({'temperatures': 300}, 'temperatures: must be a non-empty list'),
    ({'seeds': [1, 1.5]}, r'seeds\[1\]: must be an integer'),
    ({'seeds': [True]}, r'seeds\[0\]: must be an integer'),
    ({'seeds': [3, 3]}, 'seeds: repeated seed'),
    ({'steps': 0}, 'steps: must be an integer >= 1'),
    ({'time_step': 0}, 'time_step: must be > 0'),
    ({'time_step': float('nan')}, 'time_step: must be a finite number'),
    ({'grade_every': 0}, 'grade_every: must be an integer >= 1'),
    ({'grade_every': 301}, r'grade_every: must be <= steps \(300\)'),
    ({'select_threshold': 0.5}, 'select_threshold: must be >= 1'),
    ({'break_threshold': 2.0}, r'break_threshold: must be > select_threshold \(2.1\)'),
    ({'explode_grade': 5.0}, r'explode_grade: must be > break_threshold \(10.0\)'),
    ({'break_threshold': None, 'explode_grade': 2.0}, r'explode_grade: must be > select_threshold \(2.1\)'),
    ({'break_threshold': 'none'}, 'break_threshold: must be a finite number'),
    ({'min_distance': -1}, 'min_distance: must be >= 0'),
    ({'max_candidates_per_walker': -1}, 'max_candidates_per_walker: must be an integer >= 0'),
    ({'ensemble': 'nve'}, "ensemble: must be one of \\['nvt', 'npt'\\]"),
    ({'friction': 0}, 'friction: must be > 0'),
    ({'ensemble': 'npt', 'friction': 0.01}, "friction: only used with ensemble 'nvt'"),
    ({'pressure': 1.0}, "pressure: only used with ensemble 'npt'"),
    ({'ensemble': 'npt', 'compressibility': 0}, 'compressibility: must be > 0'),
    ({'engine': 'lammps'}, 'engine: must be one of'),
    ({'temperature': 300}, r"settings: unknown key\(s\) \['temperature'\]"),
])
def test_settings_refusals_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        ex.check_explore_settings({**BASE, **change})


def test_settings_missing_required_key():
    settings = dict(BASE)
    del settings['time_step']
    with pytest.raises(ValueError, match='time_step: required'):
        ex.check_explore_settings(settings)
    with pytest.raises(ValueError, match='settings: expected a dictionary'):
        ex.check_explore_settings([1, 2])
    assert math.isclose(ex.check_explore_settings({**BASE, 'friction': 1})['friction'], 1.0)


# ------------------------------------------------------------------------------- NEP committee
#
# The same driver with family 'nep': two PbTe NEP4 models of GPUMD's examples (different architectures, same
# species; fixtures/gpumd/SOURCES.md), the first drives the MD, the grade is their force deviation (eV/Å).
# On the 8-atom rocksalt cell the deviation stays below 0.02 eV/Å at 300 K and passes 0.06 within 40 steps
# at 3000 K.

NEP_DIR = pathlib.Path(__file__).parent / 'fixtures' / 'gpumd' / 'nep'
NEP_MODELS = [NEP_DIR / 'pbte_train_master' / 'nep.txt', NEP_DIR / 'pbte_train_legacy_v3.9.5' / 'nep.txt']
NEP_BASE = {'family': 'nep', 'temperatures': [300, 3000], 'seeds': [1, 2], 'steps': 100, 'time_step': 2.0,
            'grade_every': 5, 'select_threshold': 0.03, 'break_threshold': 0.06}


def _pbte_start(label='rocksalt') -> Frame:
    from ase.build import bulk

    frame = Frame.from_ase(bulk('PbTe', 'rocksalt', a=6.46, cubic=True))
    frame.info = {'label': label}
    return frame


def _run_nep(tmp_path, settings, starts, name='nep'):
    pytest.importorskip('calorine')
    starts_path = tmp_path / f'{name}_starts.xyz'
    write_extxyz(starts, starts_path, convention='ase')
    out = tmp_path / name
    summary = ex.explore(settings, NEP_MODELS, None, None, starts_path, out)
    return summary, list(read_extxyz(out / ex.CANDIDATES_FILENAME)), out


@pytest.fixture(scope='module')
def nep_ladder(tmp_path_factory):
    return _run_nep(tmp_path_factory.mktemp('explore_nep'), NEP_BASE, [_pbte_start()])


def test_nep_walkers_grade_with_the_committee(nep_ladder, ladder):
    from aiida_mlcampaign.nep.cpu import committee_deviations

    summary, frames, out = nep_ladder
    assert json.loads((out / ex.SUMMARY_FILENAME).read_text()) == summary
    assert summary['family'] == 'nep' and summary['species'] == ['Te', 'Pb']
    assert summary['committee'] == {'models': 2, 'files': ['nep.txt', 'nep.txt'], 'md_model': 'nep.txt'}
    assert 'active_set' not in summary and 'engine' not in summary['settings']
    # the same summary layout as the MTP family
    assert set(summary['totals']) == set(ladder[0]['totals'])
    assert {key for w in summary['walkers'] for key in w} == {key for w in ladder[0]['walkers'] for key in w}

    cold = [w for w in summary['walkers'] if w['temperature'] == 300.0]
    hot = [w for w in summary['walkers'] if w['temperature'] == 3000.0]
    for walker in cold:
        assert walker['stop_reason'] == 'completed' and walker['graded'] == 20
        assert walker['above_select'] == walker['candidates'] == 0 and walker['max_grade'] < 0.03
    for walker in hot:
        assert walker['stop_reason'] == 'break' and walker['steps_run'] % 5 == 0
        assert '>= break_threshold 0.06' in walker['stop_detail']
        mine = [f for f in frames if f.info['walker'] == walker['walker']]
        assert len(mine) == walker['candidates'] == walker['above_select'] >= 1
        assert mine[-1].info['step'] == walker['steps_run'] and mine[-1].info['grade'] >= 0.06
    assert frames and all(f.info['grade'] >= 0.03 for f in frames)
    assert all(f.energy is None and f.forces is None for f in frames)
    # the saved grade is the committee deviation of the saved frame
    recomputed = committee_deviations(NEP_MODELS, frames)
    np.testing.assert_allclose(recomputed, [f.info['grade'] for f in frames], rtol=1e-4)
    totals = summary['totals']
    assert totals['completed'] == 2 and totals['break'] == 2 and totals['exploded'] == 0
    assert totals['candidate_fraction'] == pytest.approx(totals['above_select'] / totals['graded'])
    assert summary['walkers'][0]['below_min_dist_evaluations'] == 0


def test_nep_main_reads_the_numbered_models(tmp_path, monkeypatch, capsys):
    pytest.importorskip('calorine')
    monkeypatch.chdir(tmp_path)
    for number, model in enumerate(NEP_MODELS):
        (tmp_path / f'potential_{number}.txt').write_bytes(model.read_bytes())
    write_extxyz([_pbte_start()], tmp_path / 'starts.xyz', convention='ase')
    settings = {**NEP_BASE, 'temperatures': [300], 'seeds': [1], 'steps': 10, 'species': ['Te', 'Pb']}
    (tmp_path / 'settings.json').write_text(json.dumps(settings))
    assert ex.main(['settings.json']) == 0
    out = capsys.readouterr().out
    assert "committee ['potential_0.txt', 'potential_1.txt']" in out and ex.DONE_MARKER in out
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['committee']['files'] == ['potential_0.txt', 'potential_1.txt']

    (tmp_path / 'settings.json').write_text(json.dumps({**settings, 'species': ['Pb', 'Te']}))
    assert ex.main(['settings.json']) == 1
    assert "species: ['Pb', 'Te'] differ from the models' species ['Te', 'Pb']" in capsys.readouterr().out
    (tmp_path / 'potential_1.txt').unlink()
    (tmp_path / 'settings.json').write_text(json.dumps(settings))
    assert ex.main(['settings.json']) == 1
    assert 'potentials: family nep needs potential_0.txt, potential_1.txt' in capsys.readouterr().out


def test_nep_refuses_what_nep_cpu_cannot_do(tmp_path):
    slab = _pbte_start()
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match='starts: structure 0 is not periodic in 3 directions; nep_cpu'):
        _run_nep(tmp_path, NEP_BASE, [slab])
    with pytest.raises(ValueError, match='potentials: a committee needs at least 2 models'):
        ex.explore(NEP_BASE, NEP_MODELS[:1], None, None, tmp_path / 'unused.xyz', tmp_path)
    with pytest.raises(ValueError, match='training: family nep grades with the committee'):
        ex.explore(NEP_BASE, NEP_MODELS, None, TRAIN_CFG, tmp_path / 'unused.xyz', tmp_path)


def test_nep_settings():
    settings = ex.check_explore_settings({**BASE, 'family': 'nep'})
    assert settings['family'] == 'nep' and 'engine' not in settings
    assert settings['select_threshold'] == 0.1 and settings['break_threshold'] == 0.5
    assert ex.check_explore_settings(settings) == settings
    assert ex.check_explore_settings({**BASE, 'family': 'nep', 'select_threshold': 0.02})['select_threshold'] == 0.02
    with pytest.raises(ValueError, match="engine: only used with family 'mtp'"):
        ex.check_explore_settings({**BASE, 'family': 'nep', 'engine': 'cext'})
    with pytest.raises(ValueError, match='select_threshold: must be > 0'):
        ex.check_explore_settings({**BASE, 'family': 'nep', 'select_threshold': 0})
    with pytest.raises(ValueError, match=r'break_threshold: must be > select_threshold \(0.3\)'):
        ex.check_explore_settings({**BASE, 'family': 'nep', 'select_threshold': 0.3, 'break_threshold': 0.2})
    with pytest.raises(ValueError, match=r"family: must be one of \['mtp', 'nep'\]"):
        ex.check_explore_settings({**BASE, 'family': 'ace'})
    assert 'family' not in ex.check_explore_settings({**BASE, 'family': 'mtp'})
