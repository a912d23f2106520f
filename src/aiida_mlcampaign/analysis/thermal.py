"""Lattice thermal conductivity from GPUMD outputs: HNEMD (``kappa.out``), Green–Kubo (``hac.out``) and
the spectral decomposition of the HNEMD heat current (``shc.out``).

The readers in :mod:`aiida_mlcampaign.formats.gpumd` return the numbers as GPUMD wrote them; this module
turns them into conductivities with error estimates and convergence figures. Plain numpy (+ the shared
Agg figure helpers), no AiiDA, so a result can be redone on a laptop from the files alone.

Conventions (GPUMD's ``hnemd_kappa.cu`` and ``shc.cu``, the project's GPUMD format notes §7.7–7.9;
Fan et al., Phys. Rev. B 99, 064308 (2019)):

* the five columns of ``kappa.out`` and ``hac.out`` are ``x_in x_out y_in y_out z``: the response along
  x, y, z, with x and y split into the in-plane (velocity components x, y) and out-of-plane (z)
  contributions that matter for 2D materials. For a bulk material κ_xx = x_in + x_out, and so on.
  ``kappa.out`` holds κ_μν for μ the direction of the driving force F_e, so the diagonal element is the
  pair of columns of that direction (column ``z`` alone for F_e along z);
* each ``kappa.out`` row is the average over *one* output window; κ(t) is their running mean. GPUMD divides
  the heat current by |F_e|, so a negative F_e gives rows of the opposite sign: :func:`hnemd_kappa`
  multiplies them by the sign of F_e to report κ itself;
* ``shc.out``: J(ω) = 2 ∫ K(t) cos(ωt) dt (Hann window) in Å·eV, ω angular in THz. The spectral
  conductivity is κ(ω) = J(ω) / (V T F_e) with κ = ∫₀^∞ κ(ω) dω/2π, i.e. the sum over the frequency
  rows of κ(ν)·Δν with ν = ω/2π. Numerically 1 eV/(ps·Å·K) = 1602.18 W/(m·K); the same factor turns
  J/(V T F_e) into W/(m·K·THz) and K(t=0)/(V T F_e) into W/(m·K). V is the volume of the atoms the
  spectrum was collected over (the group's, with ``compute_shc ... group``), not necessarily the box.
"""

from __future__ import annotations

import math

import numpy as np

from .figures import new_figure, to_png

__all__ = [
    'COMPONENTS',
    'EV_PER_PS_A_K_IN_W_PER_MK',
    'direction_of_force',
    'green_kubo',
    'green_kubo_figure',
    'hnemd_figure',
    'hnemd_kappa',
    'running_mean',
    'settings_from_run_in',
    'spectral_figure',
    'spectral_kappa',
]

COMPONENTS = ('x_in', 'x_out', 'y_in', 'y_out', 'z')
# eV / (ps · Å · K) in W / (m · K): 1.602176634e-19 J / (1e-12 s · 1e-10 m).
EV_PER_PS_A_K_IN_W_PER_MK = 1.602176634e-19 / (1.0e-12 * 1.0e-10)
_AXES = ('x', 'y', 'z')
_DIAGONAL = {'x': (0, 1), 'y': (2, 3), 'z': (4, None)}


# ----------------------------------------------------------------------------------------------- shared


def running_mean(values, window: int | None = None) -> np.ndarray:
    """Running mean along axis 0: cumulative from the first row, or over the last ``window`` rows."""
    values = np.asarray(values, dtype=float)
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f'window: expected a positive integer or None, got {window!r}')
    n = len(values)
    cumulative = np.cumsum(values, axis=0)
    counts = np.arange(1, n + 1, dtype=float)
    if window is None:
        return cumulative / counts.reshape((n,) + (1,) * (values.ndim - 1))
    shifted = np.zeros_like(cumulative)
    if window < n:
        shifted[window:] = cumulative[:n - window]
    counts = np.minimum(counts, window)
    return (cumulative - shifted) / counts.reshape((n,) + (1,) * (values.ndim - 1))


def direction_of_force(driving_force) -> tuple[str, float]:
    """Axis ('x', 'y', 'z') and signed value (Å⁻¹) of F_e; GPUMD's HNEMD needs exactly one non-zero component.

    A scalar is refused: the direction decides which ``kappa.out`` columns are the diagonal element.
    """
    values = np.asarray(driving_force, dtype=float).reshape(-1)
    if values.size != 3:
        raise ValueError(f'driving_force: expected the 3 components (Fe_x, Fe_y, Fe_z) in 1/Å, '
                         f'got {values.size} values')
    if not np.all(np.isfinite(values)):
        raise ValueError(f'driving_force: not finite: {values.tolist()}')
    nonzero = np.flatnonzero(values)
    if nonzero.size != 1:
        raise ValueError(
            f'driving_force: exactly one non-zero component expected (the HNEMD direction), got {values.tolist()}'
        )
    axis = int(nonzero[0])
    return _AXES[axis], float(values[axis])


def _stderr(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float('nan')
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------ run.in


def settings_from_run_in(parsed: dict) -> dict:
    """What the thermal analyses need from a parsed ``run.in`` (:func:`formats.gpumd_run.read_run_in`).

    Returns a dict with, for the *last* run block that has each command (``time_step`` is propagated
    from earlier blocks as GPUMD does; 1 fs when never set):

    * ``hnemd``: ``driving_force`` [Fe_x, Fe_y, Fe_z] (Å⁻¹), ``output_interval`` (steps), ``time_step_fs``,
      ``time_per_row_ps``, ``temperature_K`` (target of the block's thermostat when T1 = T2, else None);
    * ``hac``: ``sample_interval``, ``Nc``, ``output_interval``, ``time_step_fs``;
    * ``shc``: ``sample_interval``, ``Nc``, ``direction`` (0/1/2), ``num_omega``, ``omega_max`` (THz),
      ``group`` (or None), ``time_step_fs``, ``temperature_K``, and ``driving_force`` when the same block
      runs ``compute_hnemd``.

    A key is absent when no block uses the command.
    """
    result: dict = {}
    time_step = 1.0
    for stage in parsed.get('stages', []):
        if 'time_step' in stage:
            time_step = float(stage['time_step']['dt'])
        ensemble = stage.get('ensemble') or {}
        temperature = None
        if 'T1' in ensemble and 'T2' in ensemble and float(ensemble['T1']) == float(ensemble['T2']):
            temperature = float(ensemble['T1'])
        fe = None
        if 'compute_hnemd' in stage:
            hnemd = stage['compute_hnemd']
            fe = [float(hnemd['Fe_x']), float(hnemd['Fe_y']), float(hnemd['Fe_z'])]
            interval = int(hnemd['output_interval'])
            result['hnemd'] = {
                'driving_force': fe, 'output_interval': interval, 'time_step_fs': time_step,
                'time_per_row_ps': interval * time_step / 1000.0, 'temperature_K': temperature,
            }
        if 'compute_hac' in stage:
            hac = stage['compute_hac']
            result['hac'] = {
                'sample_interval': int(hac['sample_interval']), 'Nc': int(hac['Nc']),
                'output_interval': int(hac['output_interval']), 'time_step_fs': time_step,
            }
        if 'compute_shc' in stage:
            shc = stage['compute_shc']
            group = shc.get('group')
            result['shc'] = {
                'sample_interval': int(shc['sample_interval']), 'Nc': int(shc['Nc']),
                'direction': int(shc['direction']), 'num_omega': int(shc['num_omega']),
                'omega_max': float(shc['omega_max']), 'group': list(group) if group is not None else None,
                'time_step_fs': time_step, 'temperature_K': temperature,
            }
            if fe is not None:
                result['shc']['driving_force'] = fe
    return result


# ------------------------------------------------------------------------------------------------ HNEMD


def hnemd_kappa(block_rows, driving_force, *, time_per_row_ps: float | None = None, skip_rows: int = 0,
                window: int | None = None) -> dict:
    """κ from the rows of ``kappa.out`` (W/(m·K)), its running mean and an error estimate.

    :param block_rows: (N, 5) the rows as written (``x_in x_out y_in y_out z``, block averages).
    :param driving_force: (Fe_x, Fe_y, Fe_z) in Å⁻¹; its non-zero component picks the diagonal element
        (and a negative one flips the sign of the rows, see the module docstring).
    :param time_per_row_ps: output_interval × time step; gives the time axis (else rows are counted).
    :param skip_rows: rows left out of the final estimate (transient after switching F_e on).
    :param window: running mean over the last ``window`` rows instead of all rows (figure only).

    The estimate is the mean of the rows after ``skip_rows``; ``stderr`` treats those rows as
    independent (true when the output window is longer than the heat-current correlation time; otherwise
    it is a lower bound — independent runs are the safer error bar). ``first_half``/``second_half`` are the
    means of the two halves of the used rows: a converged run has them agree within the error.
    Returned keys: ``direction``, ``driving_force_per_A``, ``rows``, ``rows_used``, ``time_ps`` (or None),
    ``block`` (N, 5), ``running`` (N, 5), ``running_in``/``running_out``/``running_total`` (N,) for the
    diagonal element (``running_out`` None for z), and ``estimate``: {``in``, ``out``, ``total``} each
    {``mean``, ``stderr``, ``first_half``, ``second_half``} in W/(m·K) (``in``/``out`` None for z).
    """
    rows = np.asarray(block_rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] != 5 or len(rows) == 0:
        raise ValueError(f'kappa: expected (N, 5) rows x_in x_out y_in y_out z, got shape {rows.shape}')
    if not np.all(np.isfinite(rows)):
        bad = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise ValueError(f'kappa: row {bad + 1} is not finite (the run blew up?)')
    axis, fe = direction_of_force(driving_force)
    rows = rows * math.copysign(1.0, fe)  # kappa.out = J / (V T |F_e|): undo the sign of a negative F_e
    n = len(rows)
    if not isinstance(skip_rows, (int, np.integer)) or not 0 <= skip_rows < n:
        raise ValueError(f'skip_rows: must be an integer in [0, {n - 1}] for {n} rows, got {skip_rows!r}')
    if time_per_row_ps is not None and not time_per_row_ps > 0:
        raise ValueError(f'time_per_row_ps: must be positive, got {time_per_row_ps}')
    i_in, i_out = _DIAGONAL[axis]
    block_in = rows[:, i_in]
    block_out = rows[:, i_out] if i_out is not None else None
    block_total = block_in + block_out if block_out is not None else block_in

    def estimate(values):
        used = values[skip_rows:]
        half = len(used) // 2
        return {
            'mean': float(np.mean(used)),
            'stderr': _finite_or_none(_stderr(used)),
            'first_half': float(np.mean(used[:half])) if half else None,
            'second_half': float(np.mean(used[half:])) if half else None,
        }

    return {
        'direction': axis,
        'driving_force_per_A': fe,
        'rows': n,
        'rows_used': n - skip_rows,
        'skip_rows': int(skip_rows),
        'time_ps': None if time_per_row_ps is None else float(time_per_row_ps) * np.arange(1, n + 1),
        'block': rows,
        'running': running_mean(rows, window),
        'running_in': running_mean(block_in, window) if block_out is not None else None,
        'running_out': running_mean(block_out, window) if block_out is not None else None,
        'running_total': running_mean(block_total, window),
        'estimate': {
            'in': estimate(block_in) if block_out is not None else None,
            'out': estimate(block_out) if block_out is not None else None,
            'total': estimate(block_total),
        },
    }


def hnemd_figure(result: dict, title: str = '') -> bytes:
    """Convergence figure: running κ_μμ (in, out, total) against time, with the final estimate."""
    figure, axes = new_figure(width=5.5, height=3.8)
    n = result['rows']
    if result['time_ps'] is not None:
        x = np.asarray(result['time_ps']) / 1000.0
        axes.set_xlabel('time (ns)')
        step = x[0]
    else:
        x = np.arange(1, n + 1)
        axes.set_xlabel('output window')
        step = 1.0
    mu = result['direction']
    label = f'κ_{mu}{mu}'
    axes.plot(x, result['block'][:, _DIAGONAL[mu][0]] + (result['block'][:, _DIAGONAL[mu][1]]
              if _DIAGONAL[mu][1] is not None else 0.0), color='0.8', lw=0.6, label=f'{label} per window')
    if result['running_in'] is not None:
        axes.plot(x, result['running_in'], color='tab:blue', label=f'{label} in-plane')
        axes.plot(x, result['running_out'], color='tab:orange', label=f'{label} out-of-plane')
    axes.plot(x, result['running_total'], color='k', lw=1.8, label=f'{label} total (running mean)')
    total = result['estimate']['total']
    error = f" ± {total['stderr']:.3g}" if total['stderr'] is not None else ''
    axes.axhline(total['mean'], color='tab:red', ls='--', lw=1.0, label=f"estimate {total['mean']:.4g}{error}")
    if result['skip_rows']:
        axes.axvline(x[0] - step + result['skip_rows'] * step, color='0.5', ls=':', lw=1.0)
    running = [result['running_total']] + ([result['running_in'], result['running_out']]
                                           if result['running_in'] is not None else [])
    low = min(float(np.min(r)) for r in running)
    high = max(float(np.max(r)) for r in running)
    pad = 0.25 * (high - low) + 1e-9
    axes.set_ylim(low - pad, high + pad)
    axes.set_ylabel('κ (W m⁻¹ K⁻¹)')
    axes.set_title(title or f'HNEMD, F_e along {mu} ({result["driving_force_per_A"]:g} Å⁻¹)')
    axes.legend(fontsize=7)
    return to_png(figure)


# ------------------------------------------------------------------------------------------- Green–Kubo


def green_kubo(time_ps, hac, kappa, block_starts=None, *, t_min_ps: float | None = None,
               t_max_ps: float | None = None) -> dict:
    """Plateau of the running Green–Kubo κ(t) of ``hac.out`` over a correlation-time window.

    :param time_ps: (N,) window centres; ``hac`` (N, 5) ⟨J(0)J(t)⟩ in eV³/amu and ``kappa`` (N, 5) the
        running integral in W/(m·K), columns ``x_in x_out y_in y_out z``.
    :param block_starts: row index of each block (appended runs = independent EMD runs); blocks must
        share the time axis. κ(t) is averaged over them and the spread between them gives ``stderr``.
    :param t_min_ps, t_max_ps: the plateau window (default: the second half of the correlation time).

    Returns ``time_ps`` (n,), ``blocks``, ``running`` (n, 5) and ``running_totals`` {x, y, z} (n,) — the
    block-averaged κ(t) — ``hac_normalised`` {x, y, z} (n,) (HAC/HAC(0), block-averaged), ``window_ps``,
    ``window_rows`` and ``plateau``: for ``x_in x_out y_in y_out z x y in_plane isotropic`` a dict
    {``mean`` (window mean of κ(t)), ``spread`` (its std inside the window), ``stderr`` (between blocks, None
    for one block)}. ``in_plane`` = (κ_x + κ_y)/2 (2D materials), ``isotropic`` = (κ_x + κ_y + κ_z)/3 (cubic
    bulk). Only GPUMD's potential part of the heat current enters (hac.out has no convective term).
    """
    time_ps = np.asarray(time_ps, dtype=float)
    hac = np.asarray(hac, dtype=float)
    kappa = np.asarray(kappa, dtype=float)
    n_total = len(time_ps)
    for name, array in (('hac', hac), ('kappa', kappa)):
        if array.shape != (n_total, 5):
            raise ValueError(f'{name}: expected shape ({n_total}, 5) to match time_ps, got {array.shape}')
        if not np.all(np.isfinite(array)):
            raise ValueError(f'{name}: contains non-finite values')
    starts = [0] if block_starts is None or len(block_starts) == 0 else [int(s) for s in block_starts]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= n_total:
        raise ValueError(f'block_starts: must start at 0 and increase below {n_total}, got {starts}')
    bounds = list(zip(starts, starts[1:] + [n_total]))
    length = bounds[0][1] - bounds[0][0]
    for index, (lo, hi) in enumerate(bounds):
        if hi - lo != length or not np.allclose(time_ps[lo:hi], time_ps[:length], rtol=1e-9, atol=1e-12):
            raise ValueError(
                f'block_starts: block {index} has a different time axis from block 0 (rows {lo}-{hi - 1}); '
                'only runs with the same compute_hac settings can be averaged'
            )
    if length < 2:
        raise ValueError('hac: a block needs at least 2 rows')
    time = time_ps[:length]
    per_block = np.stack([kappa[lo:hi] for lo, hi in bounds])           # (B, n, 5)
    hac_blocks = np.stack([hac[lo:hi] for lo, hi in bounds])
    t_lo = float(time[-1]) / 2.0 if t_min_ps is None else float(t_min_ps)
    t_hi = float(time[-1]) if t_max_ps is None else float(t_max_ps)
    mask = (time >= t_lo) & (time <= t_hi)
    if not mask.any():
        raise ValueError(
            f't_min_ps/t_max_ps: the window [{t_lo}, {t_hi}] ps holds no row (time runs {time[0]}..{time[-1]} ps)'
        )

    def totals(values):  # (..., 5) -> dict of (...)
        return {
            'x_in': values[..., 0], 'x_out': values[..., 1], 'y_in': values[..., 2], 'y_out': values[..., 3],
            'z': values[..., 4], 'x': values[..., 0] + values[..., 1], 'y': values[..., 2] + values[..., 3],
            'in_plane': (values[..., 0] + values[..., 1] + values[..., 2] + values[..., 3]) / 2.0,
            'isotropic': (values[..., 0] + values[..., 1] + values[..., 2] + values[..., 3] + values[..., 4]) / 3.0,
        }

    mean_running = per_block.mean(axis=0)
    block_totals = totals(per_block)                                   # each (B, n)
    plateau = {}
    for key, values in block_totals.items():
        averaged = values.mean(axis=0)
        per_block_plateau = values[:, mask].mean(axis=1)
        plateau[key] = {
            'mean': float(averaged[mask].mean()),
            'spread': float(averaged[mask].std()),
            'stderr': _finite_or_none(_stderr(per_block_plateau)) if len(bounds) > 1 else None,
        }
    hac_totals = totals(hac_blocks.mean(axis=0))
    normalised = {}
    for key in ('x', 'y', 'z'):
        first = hac_totals[key][0]
        normalised[key] = hac_totals[key] / first if first != 0 else np.full(length, np.nan)
    running_totals = totals(mean_running)
    return {
        'time_ps': time,
        'blocks': len(bounds),
        'running': mean_running,
        'running_totals': {key: running_totals[key] for key in ('x', 'y', 'z')},
        'hac_normalised': normalised,
        'window_ps': [t_lo, t_hi],
        'window_rows': int(mask.sum()),
        'plateau': plateau,
    }


def green_kubo_figure(result: dict, title: str = '') -> bytes:
    """Normalised HAC and running κ(t) with the plateau window shaded."""
    figure, (left, right) = new_figure(ncols=2, width=4.6, height=3.6)
    time = result['time_ps']
    colours = {'x': 'tab:blue', 'y': 'tab:orange', 'z': 'tab:green'}
    for key, colour in colours.items():
        left.plot(time, result['hac_normalised'][key], color=colour, label=f'{key}')
        right.plot(time, result['running_totals'][key], color=colour, label=f'κ_{key}{key}')
        right.axhline(result['plateau'][key]['mean'], color=colour, ls='--', lw=0.9)
    left.axhline(0.0, color='0.6', lw=0.6)
    left.set_xlabel('correlation time (ps)')
    left.set_ylabel('HAC / HAC(0)')
    left.legend(fontsize=7)
    lo, hi = result['window_ps']
    right.axvspan(lo, hi, color='0.9', label='plateau window')
    right.set_xlabel('correlation time (ps)')
    right.set_ylabel('κ (W m⁻¹ K⁻¹)')
    right.legend(fontsize=7)
    blocks = result['blocks']
    figure.suptitle(title or f'Green–Kubo ({blocks} run{"s" if blocks > 1 else ""})')
    return to_png(figure)


# ------------------------------------------------------------------------------------- spectral (SHC)


def spectral_kappa(omega_THz, shc_in, shc_out, *, volume_A3: float, temperature_K: float,
                   driving_force_per_A: float, correlation: tuple | None = None) -> dict:
    """Spectral thermal conductivity κ(ν) from the frequency rows of one ``shc.out`` block.

    :param omega_THz: angular frequencies ω (THz), uniform from Δω (GPUMD's grid);
    :param shc_in, shc_out: J(ω) in Å·eV (= Å·eV/ps/THz) for in-plane / out-of-plane velocities;
    :param volume_A3: volume of the atoms in the SHC group (Å³);
    :param temperature_K: the HNEMD temperature; ``driving_force_per_A`` the non-zero F_e component.
    :param correlation: optional (time_ps, K_in, K_out) of the same block: κ from K(t = 0) is an
        independent check of the integral (equal up to the ω_max cut and the Hann window).

    Returns ``nu_THz`` = ω/2π, ``kappa_in``/``kappa_out``/``kappa_total`` (n,) in W/(m·K·THz), their
    ``cumulative_*`` (n,) in W/(m·K) (sum of κ(ν)·Δν up to ν), ``integral`` {in, out, total} in W/(m·K)
    and, with ``correlation``, ``from_correlation`` {in, out, total} = K(0)/(V T F_e).
    """
    omega = np.asarray(omega_THz, dtype=float)
    shc_in = np.asarray(shc_in, dtype=float)
    shc_out = np.asarray(shc_out, dtype=float)
    if omega.ndim != 1 or len(omega) < 2 or shc_in.shape != omega.shape or shc_out.shape != omega.shape:
        raise ValueError(
            f'shc: expected matching 1D arrays of at least 2 frequencies, got {omega.shape}, {shc_in.shape}, '
            f'{shc_out.shape}'
        )
    for name, value in (('volume', volume_A3), ('temperature', temperature_K)):
        if not (value is not None and math.isfinite(value) and value > 0):
            raise ValueError(f'{name}: must be a positive number, got {value!r}')
    if not (math.isfinite(driving_force_per_A) and driving_force_per_A != 0):
        raise ValueError(f'driving_force: must be a non-zero number (Å⁻¹), got {driving_force_per_A!r}')
    d_omega = np.diff(omega)
    if not np.all(d_omega > 0) or not np.allclose(d_omega, d_omega[0], rtol=1e-3):
        raise ValueError('omega: frequencies must be uniformly spaced and increasing (one shc.out block)')
    scale = EV_PER_PS_A_K_IN_W_PER_MK / (volume_A3 * temperature_K * driving_force_per_A)
    nu = omega / (2.0 * math.pi)
    d_nu = float(d_omega.mean()) / (2.0 * math.pi)
    spectra = {'in': scale * shc_in, 'out': scale * shc_out}
    spectra['total'] = spectra['in'] + spectra['out']
    result = {'nu_THz': nu, 'd_nu_THz': d_nu}
    for key, values in spectra.items():
        result[f'kappa_{key}'] = values
        result[f'cumulative_{key}'] = np.cumsum(values) * d_nu
    result['integral'] = {key: float(result[f'cumulative_{key}'][-1]) for key in spectra}
    if correlation is not None:
        time, k_in, k_out = (np.asarray(c, dtype=float) for c in correlation)
        zero = int(np.argmin(np.abs(time)))
        if abs(time[zero]) > 1e-9 * max(1.0, float(np.max(np.abs(time)))):
            raise ValueError('correlation: no row at t = 0')
        k0 = {'in': scale * k_in[zero], 'out': scale * k_out[zero]}
        k0['total'] = k0['in'] + k0['out']
        result['from_correlation'] = {key: float(value) for key, value in k0.items()}
    return result


def spectral_figure(result: dict, reference: dict | None = None, title: str = '') -> bytes:
    """κ(ν) and its cumulative integral; ``reference`` {in, out, total} (e.g. HNEMD κ) as dashed lines."""
    figure, (left, right) = new_figure(ncols=2, width=4.6, height=3.6)
    nu = result['nu_THz']
    colours = {'in': 'tab:blue', 'out': 'tab:orange', 'total': 'k'}
    names = {'in': 'in-plane', 'out': 'out-of-plane', 'total': 'total'}
    for key, colour in colours.items():
        left.plot(nu, result[f'kappa_{key}'], color=colour, lw=1.0, label=names[key])
        right.plot(nu, result[f'cumulative_{key}'], color=colour, label=names[key])
        if reference and reference.get(key) is not None:
            right.axhline(reference[key], color=colour, ls='--', lw=0.9)
    left.axhline(0.0, color='0.6', lw=0.6)
    left.set_xlabel('ν = ω/2π (THz)')
    left.set_ylabel('κ(ν) (W m⁻¹ K⁻¹ THz⁻¹)')
    left.legend(fontsize=7)
    right.set_xlabel('ν = ω/2π (THz)')
    right.set_ylabel('cumulative κ (W m⁻¹ K⁻¹)')
    if reference:
        right.plot([], [], color='0.4', ls='--', label='HNEMD κ')
    right.legend(fontsize=7)
    figure.suptitle(title or 'Spectral decomposition of the HNEMD heat current')
    return to_png(figure)

