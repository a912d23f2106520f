"""Thermal-conductivity numbers: analytic cases, then spot values on recorded GPUMD outputs."""

import math
import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.analysis import thermal
from aiida_mlcampaign.formats.gpumd import read_hac, read_kappa, read_shc
from aiida_mlcampaign.formats.gpumd_run import read_run_in

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
C = thermal.COMPONENTS
# Volume of the SHC group of GPUMD's diffusive-graphene example (its post-processing script): Lx = 100·√3·1.42 Å
# (the box width), Ly = 3·10·1.42 Å (the group's length), Lz = 3.35 Å (graphene thickness).
GRAPHENE_GROUP_VOLUME = (1.42 * math.sqrt(3) * 100) * (3 * 1.42 * 10) * 3.35


def is_png(data: bytes) -> bool:
    return data.startswith(b'\x89PNG') and len(data) > 1000


# ------------------------------------------------------------------------------------------- running mean


def test_running_mean_cumulative_and_window():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(thermal.running_mean(values), [1, 2, 3, 4])
    np.testing.assert_allclose(thermal.running_mean(values, window=2), [1, 2, 4, 6])
    two = np.column_stack([values, 2 * values])
    np.testing.assert_allclose(thermal.running_mean(two)[:, 1], [2, 4, 6, 8])
    with pytest.raises(ValueError, match='window'):
        thermal.running_mean(values, window=0)


# ------------------------------------------------------------------------------------------------- HNEMD


def test_hnemd_synthetic_y_direction():
    n = 10
    rows = np.zeros((n, 5))
    rows[:, 2] = 10.0 + np.where(np.arange(n) % 2, 1.0, -1.0)  # y_in alternates 9, 11
    rows[:, 3] = 5.0                                              # y_out constant
    rows[:, 0] = 99.0                                             # off-diagonal columns must not leak in
    result = thermal.hnemd_kappa(rows, [0, 1e-5, 0], time_per_row_ps=0.5)
    assert result['direction'] == 'y'
    total = result['estimate']['total']
    assert total['mean'] == pytest.approx(15.0)
    # std (ddof=1) of ±1 over 10 rows = sqrt(10/9); stderr = that / sqrt(10) = 1/3
    assert total['stderr'] == pytest.approx(1.0 / 3.0)
    assert result['estimate']['in']['mean'] == pytest.approx(10.0)
    assert result['estimate']['out']['mean'] == pytest.approx(5.0)
    np.testing.assert_allclose(result['running_total'][:3], [14.0, 15.0, 14 + 2 / 3])
    np.testing.assert_allclose(result['time_ps'], 0.5 * np.arange(1, n + 1))
    skipped = thermal.hnemd_kappa(rows, [0, 1e-5, 0], skip_rows=5)
    assert skipped['rows_used'] == 5
    assert skipped['estimate']['in']['mean'] == pytest.approx((11 + 9 + 11 + 9 + 11) / 5)


def test_hnemd_z_direction_uses_the_single_column():
    rows = np.zeros((4, 5))
    rows[:, 4] = [-1.0, -2.0, -3.0, -4.0]  # GPUMD divides by |F_e|: a force along -z gives negative rows
    result = thermal.hnemd_kappa(rows, [0, 0, -2e-4])
    assert result['direction'] == 'z'
    assert result['driving_force_per_A'] == -2e-4
    assert result['estimate']['in'] is None and result['running_out'] is None
    assert result['estimate']['total']['mean'] == pytest.approx(2.5)
    assert result['estimate']['total']['first_half'] == pytest.approx(1.5)
    assert result['estimate']['total']['second_half'] == pytest.approx(3.5)


@pytest.mark.parametrize('force, message', [
    ([1e-5, 1e-5, 0], 'exactly one non-zero'),
    ([0, 0, 0], 'exactly one non-zero'),
    (1e-5, '3 components'),
])
def test_hnemd_refuses_ambiguous_driving_force(force, message):
    with pytest.raises(ValueError, match=f'driving_force: .*{message}'):
        thermal.hnemd_kappa(np.ones((3, 5)), force)


def test_hnemd_refuses_bad_rows_and_skip():
    with pytest.raises(ValueError, match='kappa: expected'):
        thermal.hnemd_kappa(np.ones((3, 4)), [1e-5, 0, 0])
    rows = np.ones((3, 5))
    rows[1, 2] = np.nan
    with pytest.raises(ValueError, match='row 2 is not finite'):
        thermal.hnemd_kappa(rows, [1e-5, 0, 0])
    with pytest.raises(ValueError, match='skip_rows'):
        thermal.hnemd_kappa(np.ones((3, 5)), [1e-5, 0, 0], skip_rows=3)


def test_hnemd_graphene_legacy_spot_values():
    data = read_kappa(MD / 'graphene_hnemd_shc_legacy_v3.x' / 'kappa.out')  # first 200 of 10000 rows
    settings = thermal.settings_from_run_in(read_run_in((MD / 'graphene_hnemd_shc_legacy_v3.x' / 'run.in').read_text()))
    hnemd = settings['hnemd']
    assert hnemd == {'driving_force': [0.0, 1e-5, 0.0], 'output_interval': 1000, 'time_step_fs': 1.0,
                     'time_per_row_ps': 1.0, 'temperature_K': 300.0}
    result = thermal.hnemd_kappa(data['kappa_block_W_per_mK'], hnemd['driving_force'],
                                 time_per_row_ps=hnemd['time_per_row_ps'])
    estimate = result['estimate']
    assert estimate['in']['mean'] == pytest.approx(850.128873, rel=1e-6)
    assert estimate['out']['mean'] == pytest.approx(1433.457820, rel=1e-6)
    assert estimate['total']['mean'] == pytest.approx(2283.586693, rel=1e-6)
    assert estimate['total']['stderr'] == pytest.approx(90.409463, rel=1e-5)
    # the reader's own running mean and ours agree
    np.testing.assert_allclose(result['running_in'], data['kappa_y_in_W_per_mK'])
    assert result['time_ps'][-1] == pytest.approx(200.0)
    assert is_png(thermal.hnemd_figure(result))


def test_hnemd_carbon_nep_z_direction_spot_value():
    data = read_kappa(MD / 'carbon_nep_hnemd_legacy_v3.x' / 'kappa.out')
    settings = thermal.settings_from_run_in(read_run_in((MD / 'carbon_nep_hnemd_legacy_v3.x' / 'run.in').read_text()))
    assert settings['hnemd']['driving_force'] == [0.0, 0.0, 2e-4]
    result = thermal.hnemd_kappa(data['kappa_block_W_per_mK'], settings['hnemd']['driving_force'])
    assert result['direction'] == 'z'
    assert result['estimate']['total']['mean'] == pytest.approx(6.172744, rel=1e-6)
    assert result['rows'] == 200
    assert is_png(thermal.hnemd_figure(result))


# -------------------------------------------------------------------------------------------- Green–Kubo


def synthetic_hac(kappa_inf, tau, time):
    """HAC ∝ exp(-t/τ); running κ(t) = κ∞ (1 - exp(-t/τ)) in every column."""
    hac = np.exp(-time / tau)[:, None] * np.ones(5)
    kappa = (kappa_inf * (1.0 - np.exp(-time / tau)))[:, None] * np.ones(5)
    return hac, kappa


def test_green_kubo_exponential_plateau():
    time = 0.1 * np.arange(1, 201)  # 0.1 .. 20 ps
    hac, kappa = synthetic_hac(100.0, 1.0, time)
    result = thermal.green_kubo(time, hac, kappa, t_min_ps=10.0, t_max_ps=20.0)
    window = (time >= 10.0) & (time <= 20.0)
    expected = float(np.mean(100.0 * (1 - np.exp(-time[window]))))
    assert result['window_rows'] == window.sum()
    assert result['plateau']['x_in']['mean'] == pytest.approx(expected)
    assert result['plateau']['x']['mean'] == pytest.approx(2 * expected)       # in + out
    assert result['plateau']['z']['mean'] == pytest.approx(expected)
    assert result['plateau']['isotropic']['mean'] == pytest.approx(5 * expected / 3)
    assert result['plateau']['x']['stderr'] is None
    np.testing.assert_allclose(result['hac_normalised']['y'], np.exp(-(time - time[0])))
    default = thermal.green_kubo(time, hac, kappa)
    assert default['window_ps'] == [10.0, 20.0]


def test_green_kubo_averages_blocks_and_gives_stderr():
    time = 0.1 * np.arange(1, 51)
    hac1, kappa1 = synthetic_hac(90.0, 0.5, time)
    hac2, kappa2 = synthetic_hac(110.0, 0.5, time)
    result = thermal.green_kubo(np.concatenate([time, time]), np.vstack([hac1, hac2]), np.vstack([kappa1, kappa2]),
                                [0, 50])
    assert result['blocks'] == 2
    single = thermal.green_kubo(time, hac1, (kappa1 + kappa2) / 2)
    assert result['plateau']['z']['mean'] == pytest.approx(single['plateau']['z']['mean'])
    # two runs: stderr = |a - b| / 2 of their window means
    window = time >= time[-1] / 2
    a = np.mean(kappa1[window, 4])
    b = np.mean(kappa2[window, 4])
    assert result['plateau']['z']['stderr'] == pytest.approx(abs(a - b) / 2)


def test_green_kubo_refuses_mismatched_blocks_and_empty_window():
    time = 0.1 * np.arange(1, 11)
    hac, kappa = synthetic_hac(1.0, 1.0, time)
    with pytest.raises(ValueError, match='block 1 has a different time axis'):
        thermal.green_kubo(np.concatenate([time, time[:5]]), np.vstack([hac, hac[:5]]), np.vstack([kappa, kappa[:5]]),
                           [0, 10])
    with pytest.raises(ValueError, match='t_min_ps/t_max_ps'):
        thermal.green_kubo(time, hac, kappa, t_min_ps=5.0, t_max_ps=6.0)


def test_green_kubo_graphene_spot_values():
    data = read_hac(MD / 'graphene_emd_hac_v4.8' / 'hac.out')
    result = thermal.green_kubo(
        data['time_ps'], np.column_stack([data[f'hac_{c}_eV3_per_amu'] for c in C]),
        np.column_stack([data[f'kappa_{c}_W_per_mK'] for c in C]), data['block_starts'],
    )
    assert result['blocks'] == 1 and len(result['time_ps']) == 50
    assert result['window_ps'] == pytest.approx([4.95, 9.9])
    assert result['window_rows'] == 25
    assert result['plateau']['x']['mean'] == pytest.approx(236.555980, rel=1e-6)
    assert result['plateau']['y']['mean'] == pytest.approx(187.253023, rel=1e-6)
    assert result['plateau']['in_plane']['mean'] == pytest.approx(211.904502, rel=1e-6)
    # κ(t) at the last row is the file's own running integral
    assert result['running_totals']['x'][-1] == pytest.approx(1.408427023167455e2 + 1.180488727439425e2)
    assert is_png(thermal.green_kubo_figure(result))


# -------------------------------------------------------------------------------------------------- SHC


def test_spectral_kappa_gaussian_correlation_integrates_to_k0():
    # K(t) = A exp(-t²/2σ²) → J(ω) = 2∫K cos(ωt)dt = 2Aσ√(2π) exp(-ω²σ²/2), and ∫₀^∞ J dω/2π = A = K(0).
    amplitude, sigma = 3.0, 0.05                      # Å·eV/ps, ps
    omega = 0.4 * np.arange(1, 1001)                  # THz, GPUMD's grid Δω … ω_max
    shc = 2 * amplitude * sigma * math.sqrt(2 * math.pi) * np.exp(-(omega * sigma) ** 2 / 2)
    time = 0.002 * np.arange(-249, 250)
    k = amplitude * np.exp(-time**2 / (2 * sigma**2))
    volume, temperature, fe = 1000.0, 300.0, 1e-4
    result = thermal.spectral_kappa(omega, shc, 0.5 * shc, volume_A3=volume, temperature_K=temperature,
                                    driving_force_per_A=fe, correlation=(time, k, 0.5 * k))
    expected = thermal.EV_PER_PS_A_K_IN_W_PER_MK * amplitude / (volume * temperature * fe)
    assert thermal.EV_PER_PS_A_K_IN_W_PER_MK == pytest.approx(1602.176634)
    assert result['from_correlation']['in'] == pytest.approx(expected)
    # rectangle rule from Δω misses half of the first bin: relative error ~ Δω/2 · J(0) / ∫J ≈ 0.4 %
    assert result['integral']['in'] == pytest.approx(expected, rel=1e-2)
    assert result['integral']['total'] == pytest.approx(1.5 * result['integral']['in'])
    np.testing.assert_allclose(result['nu_THz'], omega / (2 * math.pi))
    assert result['cumulative_in'][-1] == pytest.approx(result['integral']['in'])


def test_spectral_kappa_refuses_bad_parameters():
    omega = np.arange(1.0, 5.0)
    with pytest.raises(ValueError, match='volume'):
        thermal.spectral_kappa(omega, omega, omega, volume_A3=0, temperature_K=300, driving_force_per_A=1e-5)
    with pytest.raises(ValueError, match='driving_force'):
        thermal.spectral_kappa(omega, omega, omega, volume_A3=1, temperature_K=300, driving_force_per_A=0)
    with pytest.raises(ValueError, match='uniformly spaced'):
        thermal.spectral_kappa(np.array([1.0, 2.0, 4.0]), omega[:3], omega[:3], volume_A3=1, temperature_K=1,
                               driving_force_per_A=1)


def test_spectral_graphene_legacy_matches_k0_and_hnemd_in_plane():
    """The full 10-ns SHC of GPUMD's diffusive-graphene example against the same run's kappa.out.

    The integral equals K(0)/(V T F_e) (same data, two routes) to 0.3 %. Against HNEMD only the in-plane
    part can be compared: the kappa.out fixture keeps the first 200 ps of the 10 ns, where the
    out-of-plane (flexural) κ is still rising (1433 vs 2069 W/mK over the whole run), while the
    in-plane part (850 ± 81 over 200 ps) already agrees with the spectrum's 831 W/mK.
    """
    data = read_shc(MD / 'graphene_hnemd_shc_legacy_v3.x' / 'shc.out')
    settings = thermal.settings_from_run_in(read_run_in((MD / 'graphene_hnemd_shc_legacy_v3.x' / 'run.in').read_text()))
    assert settings['shc']['direction'] == 1 and settings['shc']['driving_force'] == [0.0, 1e-5, 0.0]
    result = thermal.spectral_kappa(
        data['omega_THz'], data['shc_in_A_eV_per_ps_per_THz'], data['shc_out_A_eV_per_ps_per_THz'],
        volume_A3=GRAPHENE_GROUP_VOLUME, temperature_K=settings['shc']['temperature_K'], driving_force_per_A=1e-5,
        correlation=(data['time_ps'], data['K_in_A_eV_per_ps'], data['K_out_A_eV_per_ps']),
    )
    assert result['integral']['in'] == pytest.approx(831.47, rel=1e-4)
    assert result['integral']['out'] == pytest.approx(2069.14, rel=1e-4)
    assert result['integral']['total'] == pytest.approx(2900.61, rel=1e-4)
    for key in ('in', 'out', 'total'):
        assert result['integral'][key] == pytest.approx(result['from_correlation'][key], rel=3e-3)
    hnemd = thermal.hnemd_kappa(read_kappa(MD / 'graphene_hnemd_shc_legacy_v3.x' / 'kappa.out')['kappa_block_W_per_mK'],
                                [0, 1e-5, 0])['estimate']
    assert abs(result['integral']['in'] - hnemd['in']['mean']) < hnemd['in']['stderr']
    reference = {key: hnemd[key]['mean'] for key in ('in', 'out', 'total')}
    assert is_png(thermal.spectral_figure(result, reference))


def test_settings_from_run_in_hac_and_group():
    hac = thermal.settings_from_run_in(read_run_in((MD / 'graphene_emd_hac_v4.8' / 'run.in').read_text()))
    assert hac == {'hac': {'sample_interval': 20, 'Nc': 500, 'output_interval': 10, 'time_step_fs': 1.0}}
    shc = thermal.settings_from_run_in(read_run_in((MD / 'graphene_hnemd_shc_v5.6' / 'run.in').read_text()))['shc']
    assert shc['group'] == [0, 4] and shc['omega_max'] == 400.0 and shc['temperature_K'] == 300.0
