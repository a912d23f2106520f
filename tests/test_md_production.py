"""Production-MD driver without AiiDA: settings, real MTP and NEP runs, GPUMD-readable outputs, restarts, seeds.

Potentials: the level-08 Cu MTP trained on 40 EMT configurations (fixtures/mtp/SOURCES.md) on a 32-atom fcc cell,
and the PbTe NEP trained with GPUMD master (fixtures/gpumd/SOURCES-nep.md) on the 8-atom rock-salt cell. Runs are
100-200 steps (a fraction of a second each).
"""

import json
import pathlib

import numpy as np
import pytest

pytest.importorskip('motep')
pytest.importorskip('calorine')

from ase.build import bulk

from aiida_mlcampaign import md_production as md
from aiida_mlcampaign.formats.gpumd import read_thermo
from aiida_mlcampaign.formats.gpumd_model import write_model_xyz
from aiida_mlcampaign.formats.gpumd_xyz import iter_dump_xyz, read_restart_xyz

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
MTP = FIXTURES / 'mtp' / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
NEP = FIXTURES / 'gpumd' / 'nep' / 'pbte_train_master' / 'nep.txt'
BASE = {'temperature': 600.0, 'steps': 200, 'time_step': 2.0, 'thermo_every': 10, 'dump_every': 20,
        'restart_every': 100, 'seed': 7}


def _copper(tmp_path, rattle: float = 0.0, name='model.xyz') -> pathlib.Path:
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)  # 32 atoms, 7.2 Å cube
    if rattle:
        atoms.rattle(rattle, seed=3)
    path = tmp_path / name
    write_model_xyz(path, atoms.get_chemical_symbols(), atoms.cell, atoms.positions, masses=atoms.get_masses())
    return path


def _run(tmp_path, settings=None, name='out', restart=None, **kwargs):
    start = _copper(tmp_path) if not (tmp_path / 'model.xyz').exists() else tmp_path / 'model.xyz'
    summary = md.run_md({**BASE, **(settings or {})}, MTP, 'mtp', ['Cu'], start, tmp_path / name, restart, **kwargs)
    return summary, tmp_path / name


@pytest.fixture(scope='module')
def copper_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp('md'))


# ----------------------------------------------------------------------------------- settings


@pytest.mark.parametrize('change, message', [
    ({'temperature': -1}, r'temperature: must be > 0'),
    ({'steps': 0}, r'steps: must be an integer >= 1'),
    ({'time_step': 0.0}, r'time_step: must be > 0'),
    ({'ensemble': 'npt'}, r"ensemble: must be one of \['nvt', 'nve'\]"),
    ({'ensemble': 'nve', 'friction': 0.1}, r"friction: only used with ensemble 'nvt'"),
    ({'friction': -0.1}, r'friction: must be > 0'),
    ({'seed': -2}, r'seed: must be an integer >= 0'),
    ({'seed': 1.5}, r'seed: must be an integer >= 0'),
    ({'thermo_every': 0}, r'thermo_every: must be an integer >= 1'),
    ({'dump_every': 500}, r'dump_every: must be <= steps \(200\)'),
    ({'restart_every': 0}, r'restart_every: must be an integer >= 1'),
    ({'blowup_factor': 0.5}, r'blowup_factor: must be > 1'),
    ({'engine': 'fortran'}, r'engine: must be one of'),
    ({'nsteps': 3}, r'nsteps: unknown key'),
])
def test_bad_settings_are_refused_by_key(change, message):
    with pytest.raises(ValueError, match=message):
        md.check_md_settings({**BASE, **change})


def test_settings_defaults_and_required_keys():
    with pytest.raises(ValueError, match=r'time_step: required'):
        md.check_md_settings({'temperature': 300, 'steps': 1000})
    settings = md.check_md_settings({'temperature': 300, 'steps': 1000, 'time_step': 1})
    assert settings == {'ensemble': 'nvt', 'temperature': 300.0, 'steps': 1000, 'time_step': 1.0, 'seed': 0,
                        'thermo_every': 100, 'dump_every': 100, 'restart_every': 1000, 'blowup_factor': 5.0,
                        'friction': 0.02, 'engine': 'cext'}
    assert md.check_md_settings(settings) == settings
    assert 'engine' not in md.check_md_settings({'temperature': 300, 'steps': 1000, 'time_step': 1}, 'nep')
    with pytest.raises(ValueError, match=r"engine: only used with family 'mtp'"):
        md.check_md_settings({**BASE, 'engine': 'cext'}, 'nep')
    assert md.check_md_settings({**BASE, 'restart_every': None, 'blowup_factor': None})['restart_every'] is None


# ----------------------------------------------------------------------------------- outputs


def test_mtp_run_writes_gpumd_readable_outputs(copper_run):
    summary, out = copper_run
    assert summary['finished'] and summary['stop_reason'] == 'completed'
    assert (summary['steps_done'], summary['steps_run'], summary['step_start']) == (200, 200, 0)
    assert summary['time_fs'] == pytest.approx(400.0)
    assert summary['atom_steps_per_second'] > 0 and summary['ns_per_day'] > 0
    assert summary['hardware'] and summary['cpu']['threads'] >= 1
    assert json.loads((out / md.SUMMARY_FILENAME).read_text()) == summary

    thermo = read_thermo(out / md.THERMO_FILENAME)  # the GPUMD reader, unchanged
    assert thermo['num_columns'] == 18 and len(thermo['temperature_K']) == summary['thermo_rows'] == 20
    assert np.allclose(thermo['cell_A'], np.diag([7.2] * 3))
    assert np.isfinite(thermo['pressure_GPa']).all() and np.isfinite(thermo['shear_pressure_GPa']).all()
    assert 100 < thermo['temperature_K'].mean() < 1200
    arrays, note = md.read_md_thermo(out / md.THERMO_FILENAME, 0, summary['settings'])
    assert note is None
    assert list(arrays['step'][:3]) == [10, 20, 30] and arrays['time_fs'][-1] == pytest.approx(400.0)

    frames = list(iter_dump_xyz(out / md.DUMP_FILENAME))
    assert len(frames) == summary['dump_frames'] == 10
    assert [f['time'] for f in frames] == pytest.approx(np.arange(1, 11) * 40.0)
    for frame in frames:
        assert frame['velocities'].shape == (32, 3)
        image = np.linalg.solve(frame['cell'].T, (frame['arrays']['unwrapped_position'] - frame['positions']).T)
        assert np.allclose(image, np.round(image), atol=1e-6)  # unwrapped = wrapped + lattice vectors
    speeds = np.linalg.norm(frames[-1]['velocities'], axis=1)
    assert 1e-3 < speeds.mean() < 0.05  # Å/fs: hundreds of K for Cu

    restart = read_restart_xyz(out / md.RESTART_FILENAME)
    assert restart['info']['step'] == '200' and restart['time'] == pytest.approx(400.0)
    assert restart['masses'] == pytest.approx([63.546] * 32)
    assert np.allclose(restart['velocities'], frames[-1]['velocities'], atol=1e-8)


def test_a_seed_reproduces_the_run(copper_run, tmp_path):
    summary, out = copper_run
    _, again = _run(tmp_path)
    assert (again / md.THERMO_FILENAME).read_text() == (out / md.THERMO_FILENAME).read_text()
    assert (again / md.DUMP_FILENAME).read_text() == (out / md.DUMP_FILENAME).read_text()
    _, other = _run(tmp_path, {'seed': 8}, name='other')
    assert (other / md.THERMO_FILENAME).read_text() != (out / md.THERMO_FILENAME).read_text()


def test_restart_continues_with_continuous_time(copper_run, tmp_path):
    summary, out = copper_run
    more, out2 = _run(tmp_path, {'steps': 300}, restart=out / md.RESTART_FILENAME)
    assert (more['step_start'], more['time_start_fs'], more['steps_done'], more['steps_run']) == (200, 400.0, 300, 100)
    frames = list(iter_dump_xyz(out2 / md.DUMP_FILENAME))
    assert [f['time'] for f in frames] == pytest.approx(440.0 + 40.0 * np.arange(5))
    assert frames[0]['info']['step'] == '220'
    arrays, _ = md.read_md_thermo(out2 / md.THERMO_FILENAME, 200, more['settings'])
    assert list(arrays['step']) == list(range(10, 101, 10))  # from the start of this job, as GPUMD counts them
    assert read_restart_xyz(out2 / md.RESTART_FILENAME)['info']['step'] == '300'
    with pytest.raises(ValueError, match=r'steps: the restart is at step 300, nothing is left'):
        _run(tmp_path, {'steps': 300}, name='none', restart=out2 / md.RESTART_FILENAME)


def test_nve_restart_follows_the_uninterrupted_trajectory(tmp_path):
    """Full-precision positions, velocities and unwrapped positions: two NVE segments = one NVE run."""
    settings = {'ensemble': 'nve', 'steps': 100, 'thermo_every': 10, 'dump_every': 10}
    _copper(tmp_path, rattle=0.05)
    whole, out = _run(tmp_path, settings, name='whole')
    _run(tmp_path, {**settings, 'steps': 50}, name='first')
    _, second = _run(tmp_path, settings, name='second', restart=tmp_path / 'first' / md.RESTART_FILENAME)
    a, b = read_restart_xyz(out / md.RESTART_FILENAME), read_restart_xyz(second / md.RESTART_FILENAME)
    assert np.allclose(a['arrays']['unwrapped_position'], b['arrays']['unwrapped_position'], atol=1e-9)
    assert np.allclose(a['velocities'], b['velocities'], atol=1e-10)
    energies = read_thermo(out / md.THERMO_FILENAME)
    total = energies['kinetic_energy_eV'] + energies['potential_energy_eV']
    assert np.ptp(total) < 0.01  # NVE conserves energy


def test_nep_run(tmp_path):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=True)
    start = tmp_path / 'model.xyz'
    write_model_xyz(start, atoms.get_chemical_symbols(), atoms.cell, atoms.positions)
    settings = {'temperature': 300.0, 'steps': 100, 'time_step': 2.0, 'thermo_every': 10, 'dump_every': 10}
    summary = md.run_md(settings, NEP, 'nep', None, start, tmp_path / 'out')
    assert summary['finished'] and summary['family'] == 'nep' and summary['species'] == ['Te', 'Pb']
    thermo = read_thermo(tmp_path / 'out' / md.THERMO_FILENAME)
    assert len(thermo['temperature_K']) == 10 and np.isfinite(thermo['potential_energy_eV']).all()
    assert len(list(iter_dump_xyz(tmp_path / 'out' / md.DUMP_FILENAME))) == 10
    with pytest.raises(ValueError, match=r"species: \['Pb', 'Te'\] differ from the model's species"):
        md.run_md(settings, NEP, 'nep', ['Pb', 'Te'], start, tmp_path / 'bad')


# ----------------------------------------------------------------------------------- stops


def test_a_blowup_stops_the_run_and_keeps_the_last_good_restart(tmp_path):
    """A rattled cell at 10 K heats far above 2 x 10 K within tens of steps."""
    _copper(tmp_path, rattle=0.3)
    summary, out = _run(tmp_path, {'temperature': 10.0, 'ensemble': 'nve', 'blowup_factor': 2.0})
    assert not summary['finished'] and summary['stop_reason'] == 'blowup'
    assert 'exceeds 2 x the target 10 K' in summary['stop_detail']
    thermo, _ = md.read_md_thermo(out / md.THERMO_FILENAME, 0, summary['settings'])
    assert md.blowup_in_thermo(thermo, 10.0, 2.0).startswith('T = ')
    assert md.blowup_in_thermo(thermo, 10.0, None) is None
    assert summary['restart_step'] is None and not (out / md.RESTART_FILENAME).exists()


def test_a_signal_stops_after_the_step_with_a_restart(tmp_path):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= 37

    summary, out = _run(tmp_path, should_stop=should_stop)
    assert summary['stop_reason'] == 'terminated' and not summary['finished']
    assert summary['steps_done'] == summary['restart_step'] == 37
    assert read_restart_xyz(out / md.RESTART_FILENAME)['info']['step'] == '37'
    assert summary['thermo_rows'] == 3


def test_bad_inputs_are_refused(tmp_path):
    start = _copper(tmp_path)
    with pytest.raises(ValueError, match=r'restart: the comment line has no step='):
        md.run_md(BASE, MTP, 'mtp', ['Cu'], start, tmp_path / 'x', restart_path=start)
    with pytest.raises(ValueError, match=r"start: elements \['Cu'\] are not in the potential's species \['Ag'\]"):
        md.run_md(BASE, MTP, 'mtp', ['Ag'], start, tmp_path / 'x')
    with pytest.raises(ValueError, match=r'species: family mtp needs'):
        md.run_md(BASE, MTP, 'mtp', None, start, tmp_path / 'x')
    slab = tmp_path / 'slab.xyz'
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True)
    write_model_xyz(slab, atoms.get_chemical_symbols(), atoms.cell, atoms.positions, pbc=(True, True, False))
    with pytest.raises(ValueError, match=r'start: the cell must be periodic in 3 directions'):
        md.run_md(BASE, MTP, 'mtp', ['Cu'], slab, tmp_path / 'x')


def test_console_script(tmp_path, monkeypatch, capsys):
    _copper(tmp_path)
    (tmp_path / 'potential.mtp').write_bytes(MTP.read_bytes())
    (tmp_path / 'settings.json').write_text(json.dumps({**BASE, 'steps': 40, 'species': ['Cu']}))
    monkeypatch.chdir(tmp_path)
    assert md.main(['settings.json']) == 0
    assert md.DONE_MARKER in capsys.readouterr().out
    assert json.loads((tmp_path / md.SUMMARY_FILENAME).read_text())['steps_done'] == 40
    (tmp_path / 'settings.json').write_text(json.dumps({**BASE, 'time_step': -1, 'species': ['Cu']}))
    assert md.main(['settings.json']) == 1
    assert f'{md.ERROR_MARKER}: ValueError: time_step: must be > 0' in capsys.readouterr().out


def test_hardware_is_described():
    info = md.hardware()
    assert info['model'] and info['threads'] >= 1 and info['label'].startswith(info['model'])
    assert json.loads(json.dumps(info)) == info  # goes into summary.json as it is
