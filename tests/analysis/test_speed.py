"""Atom-steps per second from GPUMD stdout, LAMMPS logs and the exploration summary (hand-written texts)."""

import pathlib

import pytest

from aiida_mlcampaign.analysis import speed

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'speed'
GPUMD = (FIXTURES / 'gpumd_stdout_handwritten.txt').read_text()
LAMMPS = (FIXTURES / 'lammps_mtp_handwritten.log').read_text()
# Two runs: 4000 atoms × 10000 steps in 2 s and 4000 × 20000 in 3.2 s.
GPUMD_SPEED = 4000 * (10000 + 20000) / 5.2
LAMMPS_SPEED = 4000 * 1000 / 6.6


def test_lammps_log_runs():
    parsed = speed.read_lammps_log(LAMMPS)
    assert parsed['version'] == '2 Aug 2023 - Update 1'
    assert [r['steps'] for r in parsed['runs']] == [0, 1000, 5000]
    second = parsed['runs'][1]
    assert (second['loop_time_s'], second['procs'], second['atoms']) == (6.6, 4, 4000)
    assert second['timesteps_per_s'] == pytest.approx(151.515)
    assert second['atom_steps_per_s'] == pytest.approx(606.061e3)  # from the Performance line
    assert parsed['runs'][0]['atom_steps_per_s'] == 0.0  # run 0: no Performance line, 0 steps
    result = speed.lammps_speed(LAMMPS)
    assert result['runs_used'] == 2  # run 0 skipped
    assert result['atom_steps_per_s'] == pytest.approx(LAMMPS_SPEED, rel=1e-6)
    assert result['time_s'] == pytest.approx(39.6)
    assert speed.lammps_speed(LAMMPS, run=-1)['time_s'] == pytest.approx(33.0)


def test_lammps_log_without_atom_steps_and_with_mega_prefix():
    # Older LAMMPS print no atom-step figure (format of the LAMMPS manual's example, numbers made up).
    old = ('Loop time of 30 on 8 procs for 2000 steps with 300000 atoms\n\n'
           'Performance: 2.880 ns/day, 8.333 hours/ns, 66.667 timesteps/s\n')
    assert speed.lammps_speed(old)['atom_steps_per_s'] == pytest.approx(300000 * 2000 / 30)
    new = ('Loop time of 3.2 on 64 procs for 1000 steps with 10000 atoms\n'
           'Performance: 27.000 ns/day, 0.889 hours/ns, 312.500 timesteps/s, 3.125 Matom-step/s\n')
    assert speed.lammps_speed(new)['atom_steps_per_s'] == pytest.approx(3.125e6)
    with pytest.raises(ValueError, match='no "Loop time of'):
        speed.lammps_speed('Step Temp\n0 300\n')


def test_gpumd_stdout():
    result = speed.gpumd_speed(GPUMD)
    assert result['version'] == '5.6'
    assert result['atom_steps_per_s'] == pytest.approx(GPUMD_SPEED)
    assert result['weighting'] == 'time'
    assert speed.gpumd_speed(GPUMD, run=0)['atom_steps_per_s'] == pytest.approx(2e7)
    with pytest.raises(ValueError, match='run: the GPUMD stdout has 2 run'):
        speed.gpumd_speed(GPUMD, run=5)


def explore_summary():
    """The shape of ``summary.json`` written by ``exploration.py`` (walker records, totals, settings)."""
    return {
        'settings': {'grade_every': 10, 'engine': 'cext'},
        'walkers': [
            {'walker': 0, 'natoms': 56, 'steps_run': 200, 'wall_time': 4.0, 'stop_reason': 'completed'},
            {'walker': 1, 'natoms': 56, 'steps_run': 50, 'wall_time': 1.0, 'stop_reason': 'break'},
        ],
        'totals': {'steps_run': 250, 'wall_time': 5.5},
    }


def test_explore_summary_speed():
    result = speed.explore_speed(explore_summary())
    assert result['atom_steps_per_s'] == pytest.approx(56 * 250 / 5.0)
    assert result['grade_every'] == 10
    with pytest.raises(ValueError, match='walker 0 lacks'):
        speed.explore_speed({'walkers': [{'natoms': 3}]})


def test_speed_from_record_dispatch():
    assert speed.speed_from_record({'atom_steps_per_s': 5e5, 'hardware': '1 CPU'})['hardware'] == '1 CPU'
    assert speed.speed_from_record(explore_summary())['source'] == 'ase-explore'
    assert speed.speed_from_record({'gpumd_stdout': GPUMD})['atom_steps_per_s'] == pytest.approx(GPUMD_SPEED)
    assert speed.speed_from_record({'lammps_log': LAMMPS})['atom_steps_per_s'] == pytest.approx(LAMMPS_SPEED)
    parsed_gpumd = {'runs': [{'time_s': 2.0, 'speed_atom_step_per_s': 2e7},
                             {'time_s': 3.2, 'speed_atom_step_per_s': 2.5e7}]}
    assert speed.speed_from_record(parsed_gpumd)['atom_steps_per_s'] == pytest.approx(GPUMD_SPEED)
    parsed_lammps = speed.read_lammps_log(LAMMPS)
    assert speed.speed_from_record(parsed_lammps)['atom_steps_per_s'] == pytest.approx(LAMMPS_SPEED, rel=1e-6)
    with pytest.raises(ValueError, match='no speed found'):
        speed.speed_from_record({'foo': 1})
    with pytest.raises(ValueError, match='atom_steps_per_s: must be positive'):
        speed.speed_from_record({'atom_steps_per_s': -1})


def test_compare_speeds_table_and_figure():
    table = speed.compare_speeds({'MTP': LAMMPS_SPEED, 'NEP': GPUMD_SPEED, 'DFT': 50.0})
    assert table['models'] == ['NEP', 'MTP', 'DFT']
    assert table['slowest'] == 'DFT' and table['fastest'] == 'NEP'
    assert table['ratio_to_slowest']['DFT'] == 1.0
    ratio = table['ratio_to_slowest']['NEP'] / table['ratio_to_slowest']['MTP']
    assert ratio == pytest.approx(GPUMD_SPEED / LAMMPS_SPEED)
    assert table['statements'][0].startswith('NEP ') and table['statements'][0].endswith('x faster than DFT')
    two = speed.compare_speeds({'MTP': LAMMPS_SPEED, 'NEP': GPUMD_SPEED})
    expected = f'NEP {GPUMD_SPEED / LAMMPS_SPEED:.1f}x faster than MTP'
    assert two['statements'] == [expected] == ['NEP 38.1x faster than MTP']
    png = speed.speed_figure(table, {'NEP': '1 GPU'})
    assert png.startswith(b'\x89PNG') and len(png) > 1000
    with pytest.raises(ValueError, match='MTP: speed must be positive'):
        speed.compare_speeds({'MTP': 0.0})
