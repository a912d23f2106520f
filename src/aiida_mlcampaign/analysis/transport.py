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
error is available and is labelled as such: it is a lower bound. Blocks too short to hold the
window (a short run cut into many blocks) cannot give that error; the fit then uses the whole run
as if there were no blocks and says so in its ``warnings`` rather than failing (:func:`fit_window`).

A slope is only a diffusion coefficient where the motion is diffusive, MSD ∝ t. A short run
fitted at a few fs measures ballistic flight (MSD ∝ t²) and one of a crystal measures rattling in a
cage (MSD flat at the vibration amplitude, well below 1 Å²); both give a number that looks like a D
and is not one. :func:`diffusive_regime` therefore checks every fit: the log-log exponent
β = d ln MSD / d ln t over the window must be close to 1, the MSD at the window end must exceed a
vibration (default 1 Å²) and the window must start after the ballistic regime (default 0.1 ps,
a few collision times in solids and liquids). A fit that fails one of these keeps its numbers but
is marked ``diffusive: False`` with a warning saying why.
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = [
    'A2_PER_PS_TO_CM2_PER_S',
    'BOLTZMANN_EV_PER_K',
    'DIFFUSIVE_EXPONENT_RANGE',
    'MIN_MSD_A2',
    'MIN_WINDOW_START_PS',
    'arrhenius_fit',
    'auto_blocks',
    'diffusion_from_msd',
    'diffusive_regime',
    'fit_window',
    'linear_fit',
    'nernst_einstein',
    'non_diffusive_conductors',
    'plot_arrhenius',
]

A2_PER_PS_TO_CM2_PER_S = 1.0e-4
BOLTZMANN_EV_PER_K = 8.617333262e-5
ELEMENTARY_CHARGE_C = 1.602176634e-19
BOLTZMANN_J_PER_K = 1.380649e-23

#: A fit window is diffusive when the log-log MSD exponent lies in this range (1 = Fickian diffusion).
DIFFUSIVE_EXPONENT_RANGE = (0.8, 1.2)
#: ... when the MSD (x+y+z) at the window end exceeds this (Å²): further than a thermal vibration.
MIN_MSD_A2 = 1.0
#: ... and when the window starts at or after this lag (ps): past the ballistic regime.
MIN_WINDOW_START_PS = 0.1


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


def auto_blocks(num_frames: int, max_blocks: int = 5, min_frames_per_block: int = 3) -> int:
    """Number of blocks for the block-averaged error bar when none was asked for.

    As many as the frames allow, at most ``max_blocks``, each with at least ``min_frames_per_block``
    frames; 0 (no blocks, least-squares error) when fewer than 2 blocks fit: a spread needs two
    values. A short run thus still gets its MSD instead of a refusal.
    """
    blocks = min(int(max_blocks), int(num_frames) // int(min_frames_per_block))
    return blocks if blocks >= 2 else 0


def _points(time, start, stop) -> int:
    return int(((time >= start - 1e-12) & (time <= stop + 1e-12)).sum())


def _window_on(time, window, t_max) -> tuple[float, float]:
    """(start, end) of ``window`` with the defaults 0.25 / 0.75 t_max; refuses start >= end by field name."""
    given_start = window is not None and window[0] is not None
    given_stop = window is not None and window[1] is not None
    start = float(window[0]) if given_start else 0.25 * t_max
    stop = float(window[1]) if given_stop else 0.75 * t_max
    if start < 0:
        raise ValueError(f'fit_start_ps: must be >= 0, got {start:g}')
    if not start < stop:
        if given_start and given_stop:
            raise ValueError(f'fit_end_ps: must be larger than fit_start_ps ({start:g} ps), got {stop:g} ps')
        if given_start:
            raise ValueError(f'fit_start_ps: {start:g} ps is not below the default window end '
                             f'(0.75 x the longest lag {t_max:g} ps = {stop:g} ps); give fit_end_ps or start earlier')
        if given_stop:
            raise ValueError(f'fit_end_ps: {stop:g} ps is not above the default window start '
                             f'(0.25 x the longest lag {t_max:g} ps = {start:g} ps); give fit_start_ps or end later')
        raise ValueError(f'msd: no lag range to fit (longest lag {t_max:g} ps)')
    return start, stop


def fit_window(time_ps, window=None, block_time_ps=None) -> dict:
    """Decide the fit window of an MSD on ``time_ps`` (and its blocks on ``block_time_ps``, if any).

    ``window`` = (start, end) in ps, either None for the default (module docstring). With blocks
    the window is taken on the block length so that the run and every block are fitted alike; when
    the blocks are too short for it (the window ends past the block length or holds fewer than 2
    block lags, e.g. 3-frame blocks of a short run) the blocks are dropped and the window is taken
    on the whole run, with a note: a short run gets a D with a least-squares error (a lower bound)
    instead of a refusal.

    Returns ``window_ps`` [start, end], ``use_blocks`` and ``note`` (str or None). A window that the
    MSD itself cannot fill is refused with a ValueError naming the field to change:
    ``fit_start_ps`` / ``fit_end_ps`` when one was given, else ``msd`` (too short a run).
    """
    time = np.asarray(time_ps, dtype=float).ravel()
    if len(time) < 2:
        raise ValueError(f'msd: needs at least 2 lag times to fit a slope, got {len(time)}')
    t_max = float(time[-1])
    given = window is not None and (window[0] is not None or window[1] is not None)
    note = None
    if block_time_ps is not None and len(block_time_ps):
        block_time = np.asarray(block_time_ps, dtype=float).ravel()
        block_max = float(block_time[-1])
        try:
            start, stop = _window_on(block_time, window, block_max)
        except ValueError:
            start = stop = None
        if start is not None and stop <= block_max * (1 + 1e-9) and _points(block_time, start, stop) >= 2 \
                and _points(time, start, stop) >= 2:
            return {'window_ps': [start, stop], 'use_blocks': True, 'note': None}
        note = (f'msd: blocks of {len(block_time)} lags ({block_max:g} ps) are too short for the fit window, '
                'so the whole run is fitted and the error is the least-squares error (a lower bound); '
                'use fewer blocks or a longer run for a block-averaged error')
    start, stop = _window_on(time, window, t_max)
    if stop > t_max * (1 + 1e-9):
        raise ValueError(f'fit_end_ps: {stop:g} ps exceeds the longest lag of the MSD ({t_max:g} ps)')
    points = _points(time, start, stop)
    if points < 2:
        if given:
            field = 'fit_start_ps' if window[0] is not None else 'fit_end_ps'
            raise ValueError(f'{field}: the fit window {start:g}-{stop:g} ps holds {points} lag time(s) of the MSD '
                             f'(spacing {time[1] - time[0]:g} ps); a slope needs at least 2, widen the window')
        raise ValueError(f'msd: too short to fit: the default window {start:g}-{stop:g} ps holds {points} of its '
                         f'{len(time)} lag times, a slope needs at least 2 (run longer or save frames more often)')
    return {'window_ps': [start, stop], 'use_blocks': False, 'note': note}


def diffusive_regime(time_ps, msd_A2, window_ps, *, min_msd_A2: float = MIN_MSD_A2,
                     min_start_ps: float = MIN_WINDOW_START_PS,
                     exponent_range: tuple[float, float] = DIFFUSIVE_EXPONENT_RANGE, label: str | None = None) -> dict:
    """Is the MSD over ``window_ps`` diffusive (MSD ∝ t), so that its slope is a D?

    ``msd_A2`` is (T, 3) per direction or (T,) already summed over x, y, z. Three tests, all needed
    (module docstring for the physics):

    * the exponent β = d ln MSD / d ln t, the least-squares slope of ln MSD against ln t over the
      lags inside the window (t > 0 and MSD > 0), lies in ``exponent_range`` (β ≈ 2: ballistic;
      β ≈ 0: caged; β undefined when fewer than 2 such lags);
    * the MSD at the window end (last lag inside it) exceeds ``min_msd_A2`` Å²: the atoms moved
      further than a vibration;
    * the window starts at or after ``min_start_ps``: not inside the ballistic regime.

    Returns ``msd_exponent`` (NaN when undefined), ``window_ps``, ``msd_window_end_A2``,
    ``diffusive`` (bool), ``reasons`` (why not, short phrases) and ``warning`` (one human-readable
    sentence starting with ``label``, or None when diffusive).
    """
    time = np.asarray(time_ps, dtype=float)
    msd = np.asarray(msd_A2, dtype=float)
    total = msd.sum(axis=1) if msd.ndim == 2 else msd
    start, stop = float(window_ps[0]), float(window_ps[1])
    inside = (time >= start - 1e-12) & (time <= stop + 1e-12)
    logs = inside & (time > 0) & (total > 0)
    exponent = float('nan')
    if logs.sum() >= 2:
        exponent = linear_fit(np.log(time[logs]), np.log(total[logs]))['slope']
    msd_end = float(total[inside][-1]) if inside.any() else float('nan')
    low, high = exponent_range
    reasons = []
    if not np.isfinite(exponent):
        reasons.append('exponent undefined (fewer than 2 lags with MSD > 0 in the window)')
    elif exponent > high:
        kind = 'ballistic' if exponent >= 1.5 else 'super-diffusive'
        reasons.append(f'{kind} (exponent above {high:g}; diffusion is MSD ∝ t¹, flight MSD ∝ t²)')
    elif exponent < low:
        reasons.append(f'sub-diffusive or caged (exponent below {low:g}: atoms rattle in place)')
    if not msd_end > min_msd_A2:
        reasons.append(f'MSD only {msd_end:.3g} Å² at {stop:.3g} ps (not above {min_msd_A2:g} Å²: '
                       'no further than a vibration)')
    if start < min_start_ps:
        reasons.append(f'window starts at {start:.3g} ps (before {min_start_ps:g} ps: ballistic times)')
    diffusive = not reasons
    warning = None
    if not diffusive:
        name = f'{label}: ' if label else ''
        beta = 'undefined' if not np.isfinite(exponent) else f'{exponent:.2f}'
        warning = f'{name}MSD exponent {beta} over {start:.3g}-{stop:.3g} ps: {"; ".join(reasons)}; D not trustworthy'
    return {
        'msd_exponent': exponent,
        'window_ps': [start, stop],
        'msd_window_end_A2': msd_end,
        'diffusive': diffusive,
        'reasons': reasons,
        'warning': warning,
    }


def diffusion_from_msd(time_ps, msd_A2, *, window=None, block_time_ps=None, block_msd_A2=None,
                       min_msd_A2: float = MIN_MSD_A2, min_start_ps: float = MIN_WINDOW_START_PS,
                       label: str | None = None) -> dict:
    """D of one species (or group) from its MSD, with a check that the motion fitted is diffusive.

    ``msd_A2`` is (T, 3) per direction (or (T,) already summed over x, y, z); ``block_msd_A2``
    (B, Tb, 3) the MSD of B independent blocks of the run on ``block_time_ps``. ``window`` =
    (start, end) in ps, either may be None for the default (module docstring; :func:`fit_window`
    chooses it, drops blocks too short for it and refuses a window the MSD cannot fill).

    Returns D (total and per direction x y z) in Å²/ps and cm²/s, the error and how it was obtained
    (``error_method``: ``'block_average'`` or ``'least_squares_lower_bound'``), the fitted line (for
    plots), the window and, with blocks, the per-block values. Because a slope is a D only in the
    diffusive regime, it also returns that check (:func:`diffusive_regime` with ``min_msd_A2``,
    ``min_start_ps``): ``msd_exponent``, ``msd_window_end_A2``, ``diffusive``, and ``warnings``, a
    list of sentences (prefixed with ``label``) saying why D is not trustworthy or why the blocks
    were not used; empty when all is well.
    """
    time = np.asarray(time_ps, dtype=float)
    msd = np.asarray(msd_A2, dtype=float)
    if msd.ndim == 1:
        msd = msd[:, None]
    if msd.shape[0] != len(time):
        raise ValueError(f'msd: {msd.shape[0]} rows but {len(time)} times')
    dims = 3 if msd.shape[1] == 1 else msd.shape[1]
    blocks = block_time = None
    if block_msd_A2 is not None and len(block_msd_A2):
        blocks = np.asarray(block_msd_A2, dtype=float)
        if blocks.ndim == 2:
            blocks = blocks[:, :, None]
        block_time = np.asarray(block_time_ps, dtype=float)
    plan = fit_window(time, window, block_time)
    if not plan['use_blocks']:
        blocks = None
    start, stop = plan['window_ps']
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
    regime = diffusive_regime(time, total, [start, stop], min_msd_A2=min_msd_A2, min_start_ps=min_start_ps,
                              label=label)
    result['msd_exponent'] = regime['msd_exponent']
    result['msd_window_end_A2'] = regime['msd_window_end_A2']
    result['diffusive'] = regime['diffusive']
    result['warnings'] = [w for w in (plan['note'], regime['warning']) if w]
    return result


def non_diffusive_conductors(contributions: t.Mapping[str, float], diffusive: t.Mapping[str, bool | None],
                             fraction: float = 0.05) -> list[str]:
    """Species whose non-diffusive D matters to a Nernst–Einstein σ (``contributions`` per species, S/cm).

    A species counts when its D was not diffusive (``diffusive[s]`` is False; None = unknown, not
    counted) and its |contribution| is at least ``fraction`` of the sum of |contributions| (any
    such species when that sum is 0): a caged framework ion adds ~nothing to σ and does not make it
    untrustworthy, a ballistic mobile ion does.
    """
    scale = sum(abs(float(c)) for c in contributions.values())
    return [name for name, c in contributions.items()
            if diffusive.get(name) is False and (scale == 0 or abs(float(c)) >= fraction * scale)]


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
