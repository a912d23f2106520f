"""Restart arithmetic of ``formats.gpumd_run`` (progress, restart step, remaining protocol, time-step halving) and
the thermo merge / viscosity reader / units of ``formats.gpumd`` (pure functions, no AiiDA).

``md/si_liquid_npt_nve_msd_sdc_rdf_v5.6/viscosity.out`` is a real GPUMD output (provenance in ``md/SOURCES.md``).
"""

import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import merge_thermo_segments, read_viscosity, unit_of
from aiida_mlcampaign.formats.gpumd_run import (
    canonical_stages, ensure_restart_dumps, remaining_stages, restart_point, run_in, run_progress, scale_time_step,
    stage_time_steps, target_temperatures, thermo_schedule,
)

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'

PROTOCOL = canonical_stages([
    {'velocity': 300, 'time_step': 2, 'minimize': 'fire 0.01 100', 'ensemble': ['nvt_ber', 300, 600, 100],
     'dump_thermo': 10, 'dump_restart': 20, 'run': 60},
    {'fix': 0, 'ensemble': ['npt_mttk', 'temp', 600, 600, 'iso', 0, 10], 'dump_thermo': 10, 'dump_restart': 20,
     'compute_msd': [2, 40], 'compute_shc': [20, 250, 1, 1000, 400], 'run': 100},
])


def test_thermo_schedule_steps_and_times():
    schedule = thermo_schedule(PROTOCOL, 8)
    assert schedule['stage'].tolist() == [0] * 6 + [1] * 2
    assert schedule['step'].tolist() == [10, 20, 30, 40, 50, 60, 70, 80]
    assert schedule['time_fs'].tolist() == [20.0 * k for k in range(1, 9)]  # time_step 2 carries over
    assert stage_time_steps(PROTOCOL) == [2.0, 2.0]
    with pytest.raises(FormatError, match='17 rows, but run.in .* asks for 16'):
        thermo_schedule(PROTOCOL, 17)


def test_progress_and_restart_point_in_the_current_block():
    progress = run_progress(PROTOCOL, 1, 10)  # first block done (6 rows) and 4 rows of the second: >= 40 steps
    assert progress['steps_done'] == [60, 40] and progress['current_stage'] == 1
    assert restart_point(PROTOCOL, progress['steps_done']) == {'stage': 1, 'step_in_stage': 40, 'step': 100,
                                                                'time_fs': 200.0, 'exact': True}
    progress = run_progress(PROTOCOL, 1, 7)  # 10 steps into the second block: its first dump (20) not reached
    assert restart_point(PROTOCOL, progress['steps_done'])['stage'] == 0  # the file is still the first block's
    assert run_progress(PROTOCOL, 2, 16)['current_stage'] is None
    assert run_progress(PROTOCOL, 1, 3)['thermo_consistent'] is False
    assert restart_point(PROTOCOL, [10, 0]) is None
    with pytest.raises(FormatError, match='3 finished runs, run.in has 2'):
        run_progress(PROTOCOL, 3, 0)


def test_restart_step_is_inexact_when_dumps_do_not_align_with_thermo_rows():
    stages = canonical_stages([{'ensemble': 'nve', 'dump_thermo': 20, 'dump_restart': 30, 'run': 100}])
    point = restart_point(stages, run_progress(stages, 0, 2)['steps_done'])  # >= 40 steps: 30, or 60 if 60-79 ran
    assert point['step_in_stage'] == 30 and point['exact'] is False


def test_remaining_stages_shortens_the_block_and_carries_the_time_step():
    rest, notes = remaining_stages(PROTOCOL, 0, 40)
    assert rest[0] == {'time_step': {'dt': 2.0}, 'ensemble': {'name': 'nvt_ber', 'T1': 500.0, 'T2': 600.0,
                                                              'T_coup': 100.0},
                       'dump_thermo': 10, 'dump_restart': 20, 'run': 20}  # velocity and minimize dropped
    assert rest[1:] == PROTOCOL[1:] and notes == []
    rest, notes = remaining_stages(PROTOCOL, 1, 80)
    assert len(rest) == 1 and rest[0]['run'] == 20 and rest[0]['time_step'] == {'dt': 2.0}
    assert rest[0]['fix'] == {'group_id': 0}  # block-level: kept
    assert rest[0]['ensemble']['temp'] == [600.0, 600.0] and rest[0]['ensemble']['iso'] == [8.0, 10.0]
    assert rest[0]['compute_msd'] == {'sample_interval': 2, 'Nc': 10} and 'Nc 40 -> 10' in notes[0]
    assert rest[0]['compute_shc']['Nc'] == 250  # kept as given
    run_in(rest)  # still a valid protocol
    finished_first, _ = remaining_stages(PROTOCOL, 0, 60)  # the first block is dropped whole
    assert finished_first == [{'time_step': {'dt': 2.0}, **PROTOCOL[1]}]
    assert remaining_stages(PROTOCOL, 1, 100) == ([], [])
    with pytest.raises(FormatError, match='restart step 120 outside the block'):
        remaining_stages(PROTOCOL, 1, 120)


def test_scale_time_step_keeps_time_units():
    halved = scale_time_step(PROTOCOL, 2)
    assert halved[0]['time_step'] == {'dt': 1.0} and halved[0]['run'] == 120
    assert halved[0]['ensemble']['T_coup'] == 200.0 and halved[0]['dump_thermo'] == 20
    assert halved[1]['compute_msd'] == {'sample_interval': 4, 'Nc': 40}
    assert halved[1]['compute_shc']['sample_interval'] == 40
    assert thermo_schedule(halved, 16)['time_fs'].tolist() == thermo_schedule(PROTOCOL, 16)['time_fs'].tolist()
    default = scale_time_step(canonical_stages([{'ensemble': 'nve', 'run': 10}]), 2)
    assert default[0]['time_step'] == {'dt': 0.5}
    with pytest.raises(FormatError, match=r'compute_shc sample_interval: 40 x 2 = 80 exceeds'):
        scale_time_step(halved, 2)


def test_targets_and_restart_dumps():
    assert target_temperatures(PROTOCOL) == [600.0, 600.0]
    nve = canonical_stages([{'velocity': 50, 'ensemble': 'nve', 'run': 10}, {'ensemble': 'heat_lan 300 100 20 1 2',
                                                                              'run': 10}])
    assert target_temperatures(nve) == [50.0, 320.0]
    stages, notes = ensure_restart_dumps(canonical_stages([{'ensemble': 'nve', 'dump_thermo': 300, 'run': 100000},
                                                           {'ensemble': 'nve', 'dump_thermo': 10, 'run': 25}]))
    assert stages[0]['dump_restart'] == 1200 and stages[1]['dump_restart'] == 20 and len(notes) == 2
    assert list(stages[0])[-1] == 'run'


def test_merge_thermo_segments_drops_redone_rows():
    first = {'step': np.array([10, 20, 30, 40, 50]), 'time_fs': np.arange(1, 6) * 20.0,
             'temperature_K': np.arange(5.0), 'cell_A': np.zeros((5, 3, 3)), 'shear_pressure_GPa': np.zeros((5, 3))}
    second = {'step': np.array([10, 20]), 'time_fs': np.array([20.0, 40.0]), 'temperature_K': np.array([7.0, 8.0]),
              'cell_A': np.ones((2, 3, 3))}
    merged = merge_thermo_segments([
        {'arrays': first, 'step_offset': 0, 'time_offset_fs': 0.0, 'cutoff_step': 40},
        {'arrays': second, 'step_offset': 40, 'time_offset_fs': 80.0, 'cutoff_step': None},
    ])
    assert merged['step'].tolist() == [10, 20, 30, 40, 50, 60]
    assert merged['time_fs'].tolist() == [20.0, 40.0, 60.0, 80.0, 100.0, 120.0]
    assert merged['temperature_K'].tolist() == [0.0, 1.0, 2.0, 3.0, 7.0, 8.0]
    assert merged['segment'].tolist() == [0, 0, 0, 0, 1, 1] and 'shear_pressure_GPa' not in merged


def test_viscosity_reader_and_units():
    data = read_viscosity(MD / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6' / 'viscosity.out')
    assert data['time_ps'][1] == 0.004 and data['sacf_eV2'].shape == (100, 9)
    assert data['sacf_eV2'][0, 0] == 1.105244274904121e04 and data['viscosity_mPa_s'][0].tolist() == [0.0] * 9
    assert data['headers'][0]['dt_output'] == (0.004, 'ps')
    assert [unit_of(k) for k in ('msd_A2', 'sdc_A2_per_ps', 'vac_A2_per_ps2', 'omega_THz', 'dos_per_THz', 'g_total',
                                 'viscosity_mPa_s', 'K_in_A_eV_per_ps', 'shc_in_A_eV_per_ps_per_THz', 'step')] == [
        'Å²', 'Å²/ps', 'Å²/ps²', 'THz (angular)', '1/THz', '1', 'mPa·s', 'Å·eV/ps', 'Å·eV/ps/THz', 'index']
