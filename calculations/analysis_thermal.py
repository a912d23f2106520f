"""Thermal-conductivity analyses as calcfunctions: HNEMD, Green–Kubo and the spectral decomposition.

Each takes a GPUMD output either as the raw file (``SinglefileData`` of ``kappa.out``/``hac.out``/``shc.out``,
read with :mod:`aiida_mlcampaign.formats.gpumd`) or as an ``ArrayData`` holding the arrays those readers
return (same names, e.g. from the ``gpumd`` parser), so the result links back to the run either way.
The numbers come from :mod:`aiida_mlcampaign.analysis.thermal`; this module only moves data between
nodes and those functions. Simulation settings (driving force, intervals, temperature) can be given
explicitly or read from the run's ``run.in`` (``SinglefileData``); explicit values win.
"""

from __future__ import annotations

import math

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.analysis import thermal
from aiida_mlcampaign.calculations.analysis_common import array_node, figure_node
from aiida_mlcampaign.formats import gpumd
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd_run import read_run_in

__all__ = ('analyse_green_kubo', 'analyse_hnemd', 'analyse_shc')

_C = thermal.COMPONENTS


def _read(node, reader, field: str, arrays: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """The reader's dict from a SinglefileData, or the named arrays of an ArrayData (as the ``gpumd`` parser
    stores a reader's result: arrays under the reader's keys, ``headers`` as an attribute)."""
    if isinstance(node, orm.SinglefileData):
        try:
            with node.open(mode='r') as handle:
                return reader(handle)
        except FormatError as exception:
            raise ValueError(f'{field}: {node.filename}: {exception}') from None
    if isinstance(node, orm.ArrayData):
        names = set(node.get_arraynames())
        missing = [name for name in arrays if name not in names]
        if missing:
            raise ValueError(f'{field}: the ArrayData lacks the arrays {missing} (has {sorted(names)})')
        result = {name: node.get_array(name) for name in arrays + tuple(o for o in optional if o in names)}
        headers = node.base.attributes.get('headers', None)  # the gpumd parser keeps the reader's headers here
        if isinstance(headers, list):
            result['headers'] = headers
        return result
    raise ValueError(f'{field}: expected a SinglefileData or an ArrayData, got {type(node).__name__}')


def _settings(run_in: orm.SinglefileData | None) -> dict:
    if run_in is None:
        return {}
    try:
        return thermal.settings_from_run_in(read_run_in(run_in.get_content(), legacy=True, allow_raw=True))
    except FormatError as exception:
        raise ValueError(f'run_in: {exception}') from None


def _positive(node, field: str) -> float | None:
    if node is None:
        return None
    value = float(node.value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f'{field}: must be a positive number, got {value}')
    return value


def _with_units(node: orm.ArrayData, units: dict, **attributes) -> orm.ArrayData:
    node.base.attributes.set('units', units)
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    return node


@calcfunction
def analyse_hnemd(kappa: orm.SinglefileData | orm.ArrayData, driving_force: orm.List | None = None,
                  run_in: orm.SinglefileData | None = None, time_step: orm.Float | None = None,
                  output_interval: orm.Int | None = None, skip_rows: orm.Int | None = None) -> dict:
    """Thermal conductivity from HNEMD (``compute_hnemd``): running average of ``kappa.out`` and its estimate.

    :param kappa: ``kappa.out`` as a file, or an ArrayData with ``kappa_block_W_per_mK`` (N, 5) — the rows
        as written, columns x_in x_out y_in y_out z, W/(m·K).
    :param driving_force: [Fe_x, Fe_y, Fe_z] in 1/Å (one non-zero); default from ``run_in``.
    :param run_in: the run's ``run.in``; gives F_e, the output interval and the time step.
    :param time_step: MD time step in fs (default from ``run_in``, else no time axis).
    :param output_interval: steps per ``kappa.out`` row (default from ``run_in``).
    :param skip_rows: rows left out of the estimate (default 0).
    """
    data = _read(kappa, gpumd.read_kappa, 'kappa', ('kappa_block_W_per_mK',))
    settings = _settings(run_in).get('hnemd', {})
    if driving_force is not None:
        force = list(driving_force.get_list())
    elif 'driving_force' in settings:
        force = settings['driving_force']
    else:
        raise ValueError('driving_force: give a List [Fe_x, Fe_y, Fe_z] (1/Å) or a run_in with compute_hnemd')
    step = _positive(time_step, 'time_step') or settings.get('time_step_fs')
    interval = output_interval.value if output_interval is not None else settings.get('output_interval')
    if interval is not None and interval < 1:
        raise ValueError(f'output_interval: must be a positive number of steps, got {interval}')
    time_per_row = interval * step / 1000.0 if (interval is not None and step is not None) else None
    result = thermal.hnemd_kappa(
        data['kappa_block_W_per_mK'], force, time_per_row_ps=time_per_row,
        skip_rows=skip_rows.value if skip_rows is not None else 0,
    )
    arrays = {
        'window_index': np.arange(1, result['rows'] + 1),
        'kappa_block_W_per_mK': result['block'],
        'running_kappa_W_per_mK': result['running'],
        'running_total_W_per_mK': result['running_total'],
    }
    if result['running_in'] is not None:
        arrays['running_in_W_per_mK'] = result['running_in']
        arrays['running_out_W_per_mK'] = result['running_out']
    if result['time_ps'] is not None:
        arrays['time_ps'] = result['time_ps']
    units = {name: ('W/(m K)' if name.endswith('W_per_mK') else 'ps' if name == 'time_ps' else '1') for name in arrays}
    estimate = result['estimate']
    summary = {
        'method': 'HNEMD (compute_hnemd)',
        'direction': result['direction'],
        'component': f"kappa_{result['direction']}{result['direction']}",
        'driving_force_per_A': [float(f) for f in force],
        'kappa_W_per_mK': estimate['total']['mean'],
        'kappa_stderr_W_per_mK': estimate['total']['stderr'],
        'kappa_first_half_W_per_mK': estimate['total']['first_half'],
        'kappa_second_half_W_per_mK': estimate['total']['second_half'],
        'rows': result['rows'],
        'rows_used': result['rows_used'],
        'skip_rows': result['skip_rows'],
        'time_per_row_ps': time_per_row,
        'simulated_time_ns': None if time_per_row is None else time_per_row * result['rows'] / 1000.0,
        'units': {'kappa': 'W/(m K)', 'driving_force': '1/Angstrom', 'time': 'ns'},
        'stderr_note': 'standard error of the mean over kappa.out rows, taken as independent',
    }
    if estimate['in'] is not None:
        summary.update(
            kappa_in_W_per_mK=estimate['in']['mean'], kappa_in_stderr_W_per_mK=estimate['in']['stderr'],
            kappa_out_W_per_mK=estimate['out']['mean'], kappa_out_stderr_W_per_mK=estimate['out']['stderr'],
        )
    return {
        'kappa': _with_units(array_node(**arrays), units, components=list(_C), direction=result['direction']),
        'summary': orm.Dict(summary),
        'figure': figure_node(thermal.hnemd_figure(result), 'hnemd_kappa.png'),
    }


@calcfunction
def analyse_green_kubo(hac: orm.SinglefileData | orm.ArrayData, t_min: orm.Float | None = None,
                       t_max: orm.Float | None = None) -> dict:
    """Green–Kubo thermal conductivity (``compute_hac``): plateau of the running κ(t) of ``hac.out``.

    :param hac: ``hac.out`` as a file, or an ArrayData with ``time_ps`` and ``hac_<c>_eV3_per_amu``,
        ``kappa_<c>_W_per_mK`` for c in x_in x_out y_in y_out z (optional ``block_starts``: appended
        independent runs, averaged).
    :param t_min: start of the plateau window in ps (default: half the correlation time).
    :param t_max: end of the plateau window in ps (default: the longest correlation time).
    """
    names = ('time_ps',) + tuple(f'hac_{c}_eV3_per_amu' for c in _C) + tuple(f'kappa_{c}_W_per_mK' for c in _C)
    data = _read(hac, gpumd.read_hac, 'hac', names, optional=('block_starts',))
    result = thermal.green_kubo(
        data['time_ps'], np.column_stack([data[f'hac_{c}_eV3_per_amu'] for c in _C]),
        np.column_stack([data[f'kappa_{c}_W_per_mK'] for c in _C]), data.get('block_starts'),
        t_min_ps=t_min.value if t_min is not None else None, t_max_ps=t_max.value if t_max is not None else None,
    )
    arrays = {'time_ps': result['time_ps'], 'running_kappa_W_per_mK': result['running']}
    for axis in ('x', 'y', 'z'):
        arrays[f'running_kappa_{axis}_W_per_mK'] = result['running_totals'][axis]
        arrays[f'hac_normalised_{axis}'] = result['hac_normalised'][axis]
    units = {name: ('W/(m K)' if name.endswith('W_per_mK') else 'ps' if name == 'time_ps' else '1') for name in arrays}
    plateau = result['plateau']
    summary = {
        'method': 'Green-Kubo (compute_hac; potential part of the heat current only)',
        'blocks': result['blocks'],
        'window_ps': result['window_ps'],
        'window_rows': result['window_rows'],
        'kappa_W_per_mK': {key: value['mean'] for key, value in plateau.items()},
        'kappa_spread_W_per_mK': {key: value['spread'] for key, value in plateau.items()},
        'kappa_stderr_W_per_mK': {key: value['stderr'] for key, value in plateau.items()},
        'units': {'kappa': 'W/(m K)', 'time': 'ps'},
        'notes': 'x = x_in + x_out, y = y_in + y_out; in_plane = (x + y)/2 for 2D materials, isotropic = '
                 '(x + y + z)/3 for cubic bulk; spread = std of kappa(t) inside the window; stderr between runs',
    }
    return {
        'kappa': _with_units(array_node(**arrays), units, components=list(_C)),
        'summary': orm.Dict(summary),
        'figure': figure_node(thermal.green_kubo_figure(result), 'green_kubo_kappa.png'),
    }


def _shc_direction(header: dict) -> int | None:
    tokens = str(header.get('command', '')).split()
    if len(tokens) >= 4 and tokens[0] == 'compute_shc':
        try:
            return int(tokens[3])
        except ValueError:
            return None
    return None


@calcfunction
def analyse_shc(shc: orm.SinglefileData | orm.ArrayData, temperature: orm.Float | None = None,
                volume: orm.Float | None = None, driving_force: orm.List | orm.Float | None = None,
                run_in: orm.SinglefileData | None = None, hnemd: orm.Dict | None = None,
                block: orm.Int | None = None) -> dict:
    """Spectral thermal conductivity κ(ν) from ``shc.out`` of an HNEMD run (``compute_shc`` + ``compute_hnemd``).

    κ(ω) = J(ω)/(V T F_e), κ = ∫ κ(ω) dω/2π (Fan et al., PRB 99, 064308 (2019)); frequencies ν = ω/2π in THz.

    :param shc: ``shc.out`` as a file, or an ArrayData with ``omega_THz``, ``shc_in_A_eV_per_ps_per_THz``,
        ``shc_out_A_eV_per_ps_per_THz`` (optional ``time_ps``, ``K_in_A_eV_per_ps``, ``K_out_A_eV_per_ps``
        and the ``*_block_starts``).
    :param temperature: HNEMD temperature in K (default: the thermostat target of the ``run_in`` block).
    :param volume: volume of the SHC group in Å³ (default: the v5.6 header cell when no group was used).
    :param driving_force: F_e in 1/Å, as [Fe_x, Fe_y, Fe_z] or the non-zero component (default from run_in).
    :param run_in: the run's ``run.in``.
    :param hnemd: the ``summary`` of ``analyse_hnemd`` on the same run, to compare the integral with.
    :param block: which block (group or appended run) of ``shc.out``; needed when there is more than one.
    """
    names = ('omega_THz', 'shc_in_A_eV_per_ps_per_THz', 'shc_out_A_eV_per_ps_per_THz')
    optional = ('time_ps', 'K_in_A_eV_per_ps', 'K_out_A_eV_per_ps', 'correlation_block_starts',
                'frequency_block_starts')
    data = _read(shc, gpumd.read_shc, 'shc', names, optional=optional)
    settings = _settings(run_in).get('shc', {})

    freq_starts = list(np.asarray(data.get('frequency_block_starts', [0]), dtype=int))
    n_blocks = len(freq_starts)
    if block is None and n_blocks > 1:
        raise ValueError(f'block: shc.out holds {n_blocks} blocks (groups or appended runs); choose one')
    index = block.value if block is not None else 0
    if not 0 <= index < n_blocks:
        raise ValueError(f'block: must be in [0, {n_blocks - 1}], got {index}')
    lo = freq_starts[index]
    hi = freq_starts[index + 1] if index + 1 < n_blocks else len(data['omega_THz'])
    headers = data.get('headers') or []
    header = headers[index] if index < len(headers) else {}

    direction = _shc_direction(header)
    if direction is None and 'direction' in settings:
        direction = settings['direction']
    if driving_force is None:
        if 'driving_force' not in settings:
            raise ValueError('driving_force: give it (1/Å) or a run_in whose compute_shc block has compute_hnemd')
        force_value = settings['driving_force']
    else:
        force_value = driving_force.get_list() if isinstance(driving_force, orm.List) else driving_force.value
    if isinstance(force_value, (list, tuple)):
        axis, fe = thermal.direction_of_force(force_value)
        if direction is not None and 'xyz'.index(axis) != direction:
            raise ValueError(
                f'driving_force: along {axis}, but compute_shc collected direction {"xyz"[direction]}; '
                'the spectrum decomposes the conductivity along F_e only'
            )
    else:
        fe = float(force_value)

    temp = _positive(temperature, 'temperature') or settings.get('temperature_K')
    if temp is None:
        raise ValueError('temperature: give the HNEMD temperature (K); run_in has no thermostat with T1 = T2')
    vol = _positive(volume, 'volume')
    volume_source = 'input'
    if vol is None:
        command = str(header.get('command', ''))
        if 'cell_A' in header and ' group ' not in f' {command} ':
            cell = np.asarray(header['cell_A'], dtype=float)
            vol = abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
            volume_source = 'shc.out header cell'
        else:
            raise ValueError(
                'volume: give the volume (Å³) of the atoms in the SHC group; shc.out has no header cell '
                'or the spectrum is of a group'
            )

    correlation = None
    if all(name in data for name in ('time_ps', 'K_in_A_eV_per_ps', 'K_out_A_eV_per_ps')):
        corr_starts = list(np.asarray(data.get('correlation_block_starts', [0]), dtype=int))
        if len(corr_starts) == n_blocks:
            c_lo = corr_starts[index]
            c_hi = corr_starts[index + 1] if index + 1 < n_blocks else len(data['time_ps'])
            correlation = tuple(np.asarray(data[name])[c_lo:c_hi]
                                for name in ('time_ps', 'K_in_A_eV_per_ps', 'K_out_A_eV_per_ps'))
    result = thermal.spectral_kappa(
        np.asarray(data['omega_THz'])[lo:hi], np.asarray(data['shc_in_A_eV_per_ps_per_THz'])[lo:hi],
        np.asarray(data['shc_out_A_eV_per_ps_per_THz'])[lo:hi], volume_A3=vol, temperature_K=temp,
        driving_force_per_A=fe, correlation=correlation,
    )

    reference = None
    summary = {
        'method': 'spectral decomposition of the HNEMD heat current (compute_shc)',
        'block': index,
        'blocks': n_blocks,
        'temperature_K': temp,
        'volume_A3': vol,
        'volume_source': volume_source,
        'driving_force_per_A': fe,
        'kappa_W_per_mK': result['integral'],
        'units': {'kappa': 'W/(m K)', 'kappa_spectral': 'W/(m K THz)', 'frequency': 'THz (nu = omega/2pi)'},
    }
    if 'from_correlation' in result:
        summary['kappa_from_K0_W_per_mK'] = result['from_correlation']
    if hnemd is not None:
        values = hnemd.get_dict()
        reference = {
            'in': values.get('kappa_in_W_per_mK'), 'out': values.get('kappa_out_W_per_mK'),
            'total': values.get('kappa_W_per_mK'),
        }
        summary['hnemd_kappa_W_per_mK'] = reference
        summary['ratio_to_hnemd'] = {
            key: (result['integral'][key] / value if value else None) for key, value in reference.items()
            if value is not None
        }
    arrays = {'nu_THz': result['nu_THz'], 'omega_THz': np.asarray(data['omega_THz'])[lo:hi]}
    for key in ('in', 'out', 'total'):
        arrays[f'kappa_{key}_W_per_mK_per_THz'] = result[f'kappa_{key}']
        arrays[f'cumulative_{key}_W_per_mK'] = result[f'cumulative_{key}']
    units = {name: ('THz' if name.endswith('THz') and not name.startswith('kappa') else
                    'W/(m K THz)' if name.endswith('per_THz') else 'W/(m K)') for name in arrays}
    return {
        'spectrum': _with_units(array_node(**arrays), units),
        'summary': orm.Dict(summary),
        'figure': figure_node(thermal.spectral_figure(result, reference), 'spectral_kappa.png'),
    }
