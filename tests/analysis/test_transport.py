"""Diffusion fits, Nernst–Einstein, Arrhenius; D from GPUMD msd.out against GPUMD's own sdc.out."""

import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.analysis.transport import (
    BOLTZMANN_EV_PER_K,
    arrhenius_fit,
    diffusion_from_msd,
    linear_fit,
    nernst_einstein,
    plot_arrhenius,
)
from aiida_mlcampaign.formats.gpumd import read_msd, read_sdc

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'


def test_linear_msd_gives_d_exactly():
    time = np.linspace(0, 10, 101)
    msd = np.stack([2 * 0.1 * time + 0.3, 2 * 0.2 * time + 0.3, 2 * 0.3 * time + 0.3], axis=1)
    fit = diffusion_from_msd(time, msd)
    assert fit['D_A2_per_ps'] == pytest.approx(0.2)
    assert fit['D_cm2_per_s'] == pytest.approx(0.2e-4)
    assert fit['D_xyz_A2_per_ps'] == pytest.approx([0.1, 0.2, 0.3])
    assert fit['window_ps'] == pytest.approx([2.5, 7.5])
    assert fit['error_method'] == 'least_squares_lower_bound'
    assert fit['D_err_A2_per_ps'] == pytest.approx(0.0, abs=1e-12)
    assert diffusion_from_msd(time, msd, window=(1.0, None))['window_ps'] == [1.0, 7.5]
    summed = diffusion_from_msd(time, msd.sum(axis=1))  # (T,) = already x + y + z
    assert summed['D_A2_per_ps'] == pytest.approx(0.2)


def test_window_refusals():
    time = np.linspace(0, 1, 11)
    msd = np.ones((11, 3))
    # The field to change is named (fit_diffusion's inputs), never a bare 'window'.
    with pytest.raises(ValueError, match=r'fit_end_ps: 2 ps exceeds the longest lag of the MSD \(1 ps\)'):
        diffusion_from_msd(time, msd, window=(0.1, 2.0))
    with pytest.raises(ValueError, match=r'fit_end_ps: must be larger than fit_start_ps \(0.5 ps\)'):
        diffusion_from_msd(time, msd, window=(0.5, 0.2))
    with pytest.raises(ValueError, match='fit_start_ps: the fit window 0.51-0.55 ps holds 0 lag time'):
        diffusion_from_msd(time, msd, window=(0.51, 0.55))
    with pytest.raises(ValueError, match='fit_start_ps: 0.9 ps is not below the default window end'):
        diffusion_from_msd(time, msd, window=(0.9, None))
    with pytest.raises(ValueError, match='fit_start_ps: must be >= 0'):
        diffusion_from_msd(time, msd, window=(-0.1, None))
    with pytest.raises(ValueError, match='msd: too short to fit: the default window'):
        diffusion_from_msd(time[:3], msd[:3])
    with pytest.raises(ValueError, match='msd: needs at least 2 lag times'):
        diffusion_from_msd(time[:1], msd[:1])


def test_nernst_einstein_hand_value():
    """sigma = e^2 N q^2 D / (V k_B T H_R).

    By hand: 10 ions of charge +1, D = 0.5 Å²/ps = 5e-9 m²/s, V = 1000 Å³ = 1e-27 m³, T = 500 K:
    (1.602176634e-19)^2 * 10 * 5e-9 / (1e-27 * 1.380649e-23 * 500) = 185.93 S/m = 1.8593 S/cm;
    a framework species with charge -2 and D = 0 adds nothing; H_R = 0.5 doubles it.
    """
    result = nernst_einstein({'Li': 0.5, 'O': 0.0}, {'Li': 10, 'O': 5}, {'Li': 1, 'O': -2}, 1000.0, 500.0)
    assert result['sigma_S_per_cm'] == pytest.approx(1.85926, rel=1e-5)
    assert result['sigma_by_species_S_per_cm']['O'] == 0.0
    half = nernst_einstein({'Li': 0.5}, {'Li': 10}, {'Li': 1}, 1000.0, 500.0, haven_ratio=0.5)
    assert half['sigma_S_per_cm'] == pytest.approx(2 * 1.85926, rel=1e-5)
    divalent = nernst_einstein({'Mg': 0.5}, {'Mg': 10}, {'Mg': 2}, 1000.0, 500.0)
    assert divalent['sigma_S_per_cm'] == pytest.approx(4 * 1.85926, rel=1e-5)


def test_nernst_einstein_refuses_a_missing_charge():
    with pytest.raises(ValueError, match=r"charges: no charge given for species 'S'"):
        nernst_einstein({'Cu': 0.1, 'S': 0.01}, {'Cu': 7, 'S': 6}, {'Cu': 1}, 1000.0, 600.0)
    with pytest.raises(ValueError, match='temperature'):
        nernst_einstein({'Cu': 0.1}, {'Cu': 7}, {'Cu': 1}, 1000.0, 0.0)


def test_arrhenius_recovers_the_activation_energy():
    temperatures = np.array([400.0, 500.0, 600.0, 800.0, 1000.0])
    exact = 3.0 * np.exp(-0.35 / (BOLTZMANN_EV_PER_K * temperatures))
    fit = arrhenius_fit(temperatures, exact)
    assert fit['activation_energy_eV'] == pytest.approx(0.35, rel=1e-10)
    assert fit['prefactor'] == pytest.approx(3.0, rel=1e-10)
    sigma = exact / temperatures  # sigma T = 3 exp(-Ea/kT)
    fit = arrhenius_fit(temperatures, sigma, quantity='conductivity')
    assert fit['activation_energy_eV'] == pytest.approx(0.35, rel=1e-10)
    assert fit['prefactor'] == pytest.approx(3.0, rel=1e-10)

    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):  # 5 % noise: the 1-sigma interval holds the truth ~68 % of the time
        errors = 0.05 * exact
        noisy = exact + rng.normal(0, errors)
        fit = arrhenius_fit(temperatures, noisy, errors)
        hits += abs(fit['activation_energy_eV'] - 0.35) < fit['activation_energy_err_eV']
    assert 0.5 < hits / 200 < 0.85
    assert fit['weighted']


def test_arrhenius_refusals():
    with pytest.raises(ValueError, match='at least 2 temperatures'):
        arrhenius_fit([500.0], [1.0])
    with pytest.raises(ValueError, match='values: every diffusion must be positive'):
        arrhenius_fit([500.0, 600.0], [1.0, -1.0])
    with pytest.raises(ValueError, match='quantity'):
        arrhenius_fit([500.0, 600.0], [1.0, 2.0], quantity='viscosity')


def test_linear_fit_errors_are_the_textbook_ones():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.1, 0.9, 2.1, 2.9])
    fit = linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    expected = np.sqrt(np.sum(residual ** 2) / 2 / np.sum((x - x.mean()) ** 2))
    assert fit['slope'] == pytest.approx(slope) and fit['slope_err'] == pytest.approx(expected)


@pytest.mark.parametrize('folder', ['si_liquid_npt_nve_msd_sdc_rdf_v5.6', 'si_liquid_diffusion_msd_sdc_legacy_v3.x'])
def test_gpumd_msd_gives_the_d_of_gpumd_sdc(folder):
    """D from msd.out against the integral of sdc.out, both written by the same GPUMD run.

    sdc.out holds D(t) = ∫_0^t VACF (running integral of the velocity autocorrelation), and
    MSD(t) = 2 ∫_0^t D(s) ds per direction exactly, so the same linear fit applied to 2∫sdc must
    give the D of the msd.out fit. What differs: positions vs velocities as estimators over the same
    time origins, and the trapezoid integral of sdc.out on its 2-4 fs grid; both are far below
    0.5 %, the tolerance (found: 0.08 % for v5.6 and 0.008 % for v3.x). The fitted D also lies
    inside the range sdc.out takes over the fit window, as a least-squares slope of a monotone
    integral must.
    """
    msd = read_msd(MD / folder / 'msd.out')
    sdc = read_sdc(MD / folder / 'sdc.out')
    fit = diffusion_from_msd(msd['time_ps'], msd['msd_A2'][:, 0])
    time, running = sdc['time_ps'], sdc['sdc_A2_per_ps'][:, 0]
    integral = np.concatenate([np.zeros((1, 3)),
                               np.cumsum(0.5 * (running[1:] + running[:-1]) * np.diff(time)[:, None], axis=0)])
    from_sdc = diffusion_from_msd(time, 2 * integral)
    assert fit['D_A2_per_ps'] == pytest.approx(from_sdc['D_A2_per_ps'], rel=5e-3)
    start, stop = fit['window_ps']
    inside = (time >= start - 1e-9) & (time <= stop + 1e-9)
    isotropic = running[inside].mean(axis=1)
    assert isotropic.min() < fit['D_A2_per_ps'] < isotropic.max()
    # liquid Si at these temperatures: D of a few 1e-4 cm²/s
    assert 1e-4 < fit['D_cm2_per_s'] < 5e-4


def test_arrhenius_figure():
    temperatures = np.array([500.0, 600.0, 700.0])
    fit = arrhenius_fit(temperatures, np.exp(-0.3 / (BOLTZMANN_EV_PER_K * temperatures)))
    png = plot_arrhenius(fit, 'D (Å²/ps)')
    assert png.startswith(b'\x89PNG') and len(png) > 1000
