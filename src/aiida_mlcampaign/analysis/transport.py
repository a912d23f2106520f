"""Diffusion coefficients from MSD curves, Nernst–Einstein conductivity and Arrhenius fits.

Units: time in ps, MSD in Å², D in Å²/ps (1 Å²/ps = 1e-4 cm²/s), volume in Å³, temperature in K,
charges in e, conductivity in S/cm, activation energy in eV.

D is the slope of the MSD over a window of lag times divided by 2d (d = 3 for the summed x+y+z MSD,
1 per direction). The default window is the middle half of the lag range, [0.25, 0.75] t_max:
early lags are ballistic / sub-diffusive, late lags have few time origins and are noisy. When the
trajectory was also cut into blocks, t_max is the block length, so the whole run and every block
are fitted over the same window; the error bar is then the standard error of the block values,
std(D_b, ddof=1) / sqrt(B), which accounts for the time correlation the least-squares error of a
single curve ignores. Without blocks (a GPUMD ``msd.out`` with one run) only that least-squares
error is available and is labelled as such: it is a lower bound.
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = [
    'A2_PER_PS_TO_CM2_PER_S',
    'BOLTZMANN_EV_PER_K',
    'arrhenius_fit',
    'diffusion_from_msd',
    'linear_fit',
    'nernst_einstein',
    'plot_arrhenius',
]

A2_PER_PS_TO_CM2_PER_S = 1.0e-4
BOLTZMANN_EV_PER_K = 8.617333262e-5
ELEMENTARY_CHARGE_C = 1.602176634e-19
BOLTZMANN_J_PER_K = 1.380649e-23


def linear_fit(x, y, sigma=None) -> dict:
    """Least-squares line y = slope x + intercept; standard errors from the residuals (or from ``sigma``).

    With ``sigma`` (1-sigma errors of y) the fit is weighted and the parameter errors come from the
    covariance scaled by the reduced chi² when there are more points than parameters.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2:
        raise ValueError(f'window: a line needs at least 2 points, got {len(x)}')
    weights = np.ones_like(x) if sigma is None else 1.0 / np.asarray(sigma, dtype=float) ** 2
    design = np.stack([x, np.ones_like(x)], axis=1)
    normal = design.T @ (design * weights[:, None])
    covariance = np.linalg.inv(normal)
    slope, intercept = covariance @ (design.T @ (weights * y))
    residual = y - (slope * x + intercept)
    dof = len(x) - 2
    if dof > 0:
        chi2 = float(np.sum(weights * residual ** 2)) / dof
        covariance = covariance * chi2
        slope_err, intercept_err = np.sqrt(np.diag(covariance))
    else:
        slope_err = intercept_err = float('nan')
    return {
        'slope': float(slope), 'intercept': float(intercept),
        'slope_err': float(slope_err), 'intercept_err': float(intercept_err),
        'covariance': covariance, 'points': len(x),
    }


def _window(time, window, t_max) -> tuple[float, float]:
    if window is None or (window[0] is None and window[1] is None):
        return 0.25 * t_max, 0.75 * t_max
    start = 0.25 * t_max if window[0] is None else float(window[0])
    stop = 0.75 * t_max if window[1] is None else float(window[1])
    if not 0 <= start < stop:
        raise ValueError(f'fit_window: need 0 <= start < end, got {start}, {stop} ps')
    if stop > t_max * (1 + 1e-9):
        raise ValueError(f'fit_window: end {stop} ps exceeds the longest lag available ({t_max} ps)')
    return start, stop


def diffusion_from_msd(time_ps, msd_A2, *, window=None, block_time_ps=None, block_msd_A2=None) -> dict:
    """D of one species (or group) from its MSD.

    ``msd_A2`` is (T, 3) per direction (or (T,) already summed over x, y, z); ``block_msd_A2``
    (B, Tb, 3) the MSD of B independent blocks of the run on ``block_time_ps``. ``window`` =
    (start, end) in ps, either may be None for the default (module docstring).

    Returns D (total and per direction x y z) in Å²/ps and cm²/s, the error and how it was obtained
    (``error_method``: ``'block_average'`` or ``'least_squares_lower_bound'``), the fitted line (for
    plots), the window and, with blocks, the per-block values.
    """
    time = np.asarray(time_ps, dtype=float)
    msd = np.asarray(msd_A2, dtype=float)
    if msd.ndim == 1:
        msd = msd[:, None]
    if msd.shape[0] != len(time):
        raise ValueError(f'msd: {msd.shape[0]} rows but {len(time)} times')
    dims = 3 if msd.shape[1] == 1 else msd.shape[1]
    blocks = None
    if block_msd_A2 is not None and len(block_msd_A2):
        blocks = np.asarray(block_msd_A2, dtype=float)
        if blocks.ndim == 2:
            blocks = blocks[:, :, None]
        block_time = np.asarray(block_time_ps, dtype=float)
        t_max = float(block_time[-1])
    else:
        t_max = float(time[-1])
    start, stop = _window(time, window, t_max)
    inside = (time >= start - 1e-12) & (time <= stop + 1e-12)
    total = msd.sum(axis=1)
    fit = linear_fit(time[inside], total[inside])
    d_total = fit['slope'] / (2 * dims)
    per_direction = [linear_fit(time[inside], msd[:, k][inside])['slope'] / 2 for k in range(msd.shape[1])] \
        if msd.shape[1] == 3 else []
    result = {
        'D_A2_per_ps': d_total,
        'D_cm2_per_s': d_total * A2_PER_PS_TO_CM2_PER_S,
        'D_xyz_A2_per_ps': per_direction,
        'window_ps': [start, stop],
        'points_in_window': int(inside.sum()),
        'slope_A2_per_ps': fit['slope'],
        'intercept_A2': fit['intercept'],
    }
    if blocks is not None:
        block_inside = (block_time >= start - 1e-12) & (block_time <= stop + 1e-12)
        values = np.array([
            linear_fit(block_time[block_inside], block.sum(axis=1)[block_inside])['slope'] / (2 * dims)
            for block in blocks
        ])
        error = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float('nan')
        result.update({
            'D_err_A2_per_ps': error,
            'error_method': 'block_average',
            'D_blocks_A2_per_ps': values.tolist(),
            'num_blocks': int(len(values)),
        })
    else:
        result.update({
            'D_err_A2_per_ps': fit['slope_err'] / (2 * dims),
            'error_method': 'least_squares_lower_bound',
        })
    result['D_err_cm2_per_s'] = result['D_err_A2_per_ps'] * A2_PER_PS_TO_CM2_PER_S
    return result


def nernst_einstein(diffusion_A2_per_ps: t.Mapping[str, float], counts: t.Mapping[str, float],
                    charges: t.Mapping[str, float], volume_A3: float, temperature_K: float,
                    haven_ratio: float = 1.0) -> dict:
    """σ = e² / (V k_B T) Σ_i N_i q_i² D_i / H_R in S/cm, over the species of ``diffusion_A2_per_ps``.

    ``charges`` (in e) must name every species that has a D (a framework species that does not
    conduct can be given charge 0); a missing one is refused by name. H_R is the Haven ratio
    (tracer over charge diffusion; 1 = uncorrelated ions). Returns the total and per-species
    contributions in S/cm.
    """
    missing = [s for s in diffusion_A2_per_ps if s not in charges]
    if missing:
        raise ValueError(f'charges: no charge given for species {", ".join(map(repr, missing))}')
    missing = [s for s in diffusion_A2_per_ps if s not in counts]
    if missing:
        raise ValueError(f'counts: no atom count given for species {", ".join(map(repr, missing))}')
    if not volume_A3 > 0:
        raise ValueError(f'volume: must be positive, got {volume_A3}')
    if not temperature_K > 0:
        raise ValueError(f'temperature: must be positive, got {temperature_K}')
    if not haven_ratio > 0:
        raise ValueError(f'haven_ratio: must be positive, got {haven_ratio}')
    volume_m3 = volume_A3 * 1e-30
    prefactor = ELEMENTARY_CHARGE_C ** 2 / (volume_m3 * BOLTZMANN_J_PER_K * temperature_K) / haven_ratio
    contributions = {}
    for species, d in diffusion_A2_per_ps.items():
        d_m2_per_s = d * 1e-20 / 1e-12
        sigma_s_per_m = prefactor * counts[species] * charges[species] ** 2 * d_m2_per_s
        contributions[species] = sigma_s_per_m / 100.0
    return {
        'sigma_S_per_cm': float(sum(contributions.values())),
        'sigma_by_species_S_per_cm': contributions,
        'haven_ratio': haven_ratio,
        'temperature_K': temperature_K,
        'volume_A3': volume_A3,
    }


def arrhenius_fit(temperatures_K, values, errors=None, quantity: str = 'diffusion') -> dict:
    """Ea and prefactor from y(T) = A exp(-Ea / k_B T).

    ``quantity='diffusion'`` fits ln D against 1/T (A = D0, same units as D); ``'conductivity'``
    fits ln(σT) against 1/T (σT = A exp(-Ea/kT), A in S K/cm), the form that follows from
    Nernst–Einstein. ``errors`` (1-sigma of the values) weight the fit through
    σ_ln = error / value. Ea ± its standard error in eV; the prefactor error is propagated from
    the intercept (ln A ± s -> A e^{±s}, reported as A·s).
    """
    temperatures = np.asarray(temperatures_K, dtype=float)
    values = np.asarray(values, dtype=float)
    if quantity not in ('diffusion', 'conductivity'):
        raise ValueError(f"quantity: expected 'diffusion' or 'conductivity', got {quantity!r}")
    if temperatures.shape != values.shape or temperatures.ndim != 1:
        raise ValueError(f'values: expected one value per temperature, got {values.shape} for {temperatures.shape}')
    if len(temperatures) < 2:
        raise ValueError(f'temperatures: an Arrhenius fit needs at least 2 temperatures, got {len(temperatures)}')
    if len(set(temperatures.tolist())) < 2:
        raise ValueError('temperatures: need at least 2 different temperatures')
    if not (temperatures > 0).all():
        raise ValueError('temperatures: must all be positive (K)')
    if not (values > 0).all():
        raise ValueError(f'values: every {quantity} must be positive for a logarithmic fit, got {values.tolist()}')
    y = np.log(values * temperatures) if quantity == 'conductivity' else np.log(values)
    sigma = None
    if errors is not None:
        errors = np.asarray(errors, dtype=float)
        if errors.shape != values.shape:
            raise ValueError('errors: expected one error per value')
        if np.all(np.isfinite(errors)) and np.all(errors > 0):
            sigma = errors / values
    fit = linear_fit(1.0 / temperatures, y, sigma)
    ea = -fit['slope'] * BOLTZMANN_EV_PER_K
    prefactor = float(np.exp(fit['intercept']))
    return {
        'quantity': quantity,
        'activation_energy_eV': float(ea),
        'activation_energy_err_eV': float(fit['slope_err'] * BOLTZMANN_EV_PER_K),
        'prefactor': prefactor,
        'prefactor_err': float(prefactor * fit['intercept_err']),
        'prefactor_units': 'S K/cm' if quantity == 'conductivity' else 'same as the values',
        'ln_prefactor': float(fit['intercept']),
        'ln_prefactor_err': float(fit['intercept_err']),
        'temperatures_K': temperatures.tolist(),
        'values': values.tolist(),
        'weighted': sigma is not None,
    }


def plot_arrhenius(fit: dict, value_label: str) -> bytes:
    """PNG of ln y against 1000/T with the fitted line and Ea in the legend (error bars if ``fit['errors']``)."""
    from .figures import new_figure, to_png

    figure, axis = new_figure()
    temperatures = np.asarray(fit['temperatures_K'], dtype=float)
    values = np.asarray(fit['values'], dtype=float)
    y = np.log(values * temperatures) if fit['quantity'] == 'conductivity' else np.log(values)
    errors = fit.get('errors')
    if errors is not None and all(e is not None for e in errors):
        axis.errorbar(1000.0 / temperatures, y, yerr=np.asarray(errors, dtype=float) / values, fmt='o',
                      capsize=3, label='data (±1σ)')
    else:
        axis.plot(1000.0 / temperatures, y, 'o', label='data')
    grid = np.linspace(temperatures.min(), temperatures.max(), 50)
    line = fit['ln_prefactor'] - fit['activation_energy_eV'] / (BOLTZMANN_EV_PER_K * grid)
    axis.plot(1000.0 / grid, line, '-',
              label=f'Ea = {fit["activation_energy_eV"]:.3f} ± {fit["activation_energy_err_eV"]:.3f} eV')
    axis.set_xlabel('1000 / T (1/K)')
    axis.set_ylabel(f'ln({value_label})')
    axis.legend(fontsize=8)
    return to_png(figure)
