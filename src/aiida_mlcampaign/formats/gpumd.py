"""Readers for the output files of GPUMD's ``gpumd`` executable (MD with a NEP potential).

Every reader is a small pure function that takes a path or an open text handle and returns a plain
``dict`` of numpy arrays; units are part of the key names (``_K``, ``_eV``, ``_GPa``, ``_A``,
``_A2``, ``_ps`` ...) or, for the frame readers, stated in the docstring. The layout is chosen by
the *content* of the file (``#`` header present? how many columns?), never by a GPUMD version,
because layouts changed inside minor releases (see ``docs/gpumd-formats.md``, sections 7 and 9b).

Appended output. GPUMD opens most outputs in append mode, so one file can hold the data of several
``run`` commands (or of a resubmitted job). The readers return *one* array per quantity plus
``block_starts`` (row index where each block begins, first entry 0) and ``headers`` (one dict per
block; empty for headerless data). A new block starts

* at a ``#`` header line that follows data rows or repeats a key of the current header (v5.6+
  self-describing header, ``#radius`` label line of ``rdf.out``);
* for files with a leading time / frequency column (msd, sdc, rdf, dos, mvac, hac, shc), at a row
  whose first value does not increase; this also separates the per-group blocks that
  ``compute_dos``/``compute_shc`` with ``group <gm> -1`` write without separators. Such a block
  may therefore be a ``run`` or a group: the content does not tell which;
* never inside a headerless ``thermo.out`` or ``kappa.out``: they have no time column, so runs
  appended without a header cannot be told apart (the caller can split with ``run.in``: rows per
  run = steps // interval).

All blocks of a file must have the same column count (one array per quantity); otherwise
:class:`FormatError` names the offending line. Errors always name the file (or ``<stream>``) and
the 1-based line number.

The frame readers (:func:`iter_dump_xyz`, :func:`frame_from_dump`, :func:`read_restart_xyz`) live in
:mod:`.gpumd_xyz` and the stdout reader (:func:`read_gpumd_stdout`) in :mod:`.gpumd_stdout`; they are re-exported
here, so every GPUMD output reader can still be imported from this module (the parser looks readers up by name in
it: :data:`OUTPUT_FILES`). Only ``numpy`` and the modules of this package are imported, so the module works without
AiiDA.
"""

from __future__ import annotations

import re

import numpy as np

from .frames import FormatError
from .gpumd_stdout import read_gpumd_stdout
from .gpumd_xyz import frame_from_dump, iter_dump_xyz, read_restart_xyz
from .textio import Lines, open_for_read, source_name

__all__ = [
    'frame_from_dump',
    'iter_dump_xyz',
    'read_dos',
    'read_gpumd_stdout',
    'read_hac',
    'read_kappa',
    'read_msd',
    'read_mvac',
    'read_rdf',
    'read_restart_xyz',
    'read_sdc',
    'read_shc',
    'read_thermo',
    'read_viscosity',
    'OUTPUT_FILES',
    'array_node_content',
    'merge_thermo_segments',
    'unit_of',
]

# ------------------------------------------------------------------------------------ shared

# Keys of the v5.6 ``# <name> <values>`` header whose values are parsed; every other first line of
# a header block is the generating command (``# dump_thermo 10``), kept as ``header['command']``.
_INT_KEYS = {
    'format_version', 'num_atoms', 'num_groups', 'num_correlation_rows', 'num_frequency_rows',
    'num_output_groups',
}
_STR_LIST_KEYS = {'columns', 'columns_correlation', 'columns_shc', 'radius'}


class _Block:
    __slots__ = ('first_line', 'header', 'rows')

    def __init__(self, first_line: int):
        self.header: dict = {}
        self.rows: list[list[float]] = []
        self.first_line = first_line


def _header_key(text: str, header: dict) -> str:
    """The key :func:`_parse_header_line` would store ``text`` under in ``header`` ('' = none)."""
    tokens = text.lstrip('#').split()
    if not tokens:
        return ''
    lower = tokens[0].lower()
    if lower == 'cell':
        return 'cell_A'
    if lower in _INT_KEYS or lower in _STR_LIST_KEYS or lower in ('num_atoms_per_group', 'dt_output'):
        return lower
    if lower == 'col':
        return ''
    return 'command' if not header else lower


def _parse_header_line(text: str, header: dict, where: str) -> str:
    """Store one ``#`` line in ``header`` and return the key it used (for the repeat rule)."""
    tokens = text.lstrip('#').split()
    if not tokens:
        return ''
    key, values = tokens[0], tokens[1:]
    lower = key.lower()
    if lower in _INT_KEYS:
        if len(values) != 1 or not re.fullmatch(r'[+-]?\d+', values[0]):
            raise FormatError(f'{where}: header {key}: expected one integer, got {values}')
        header[lower] = int(values[0])
        return lower
    if lower == 'num_atoms_per_group':
        try:
            header[lower] = [int(v) for v in values]
        except ValueError:
            raise FormatError(f'{where}: header {key}: expected integers, got {values}') from None
        return lower
    if lower == 'cell':
        try:
            cell = np.array([float(v) for v in values])
        except ValueError:
            raise FormatError(f'{where}: header cell: non-numeric value in {values}') from None
        if cell.size != 9:
            raise FormatError(f'{where}: header cell: expected 9 numbers, got {cell.size}')
        header['cell_A'] = cell.reshape(3, 3)
        return 'cell_A'
    if lower == 'dt_output':
        if len(values) not in (1, 2):
            raise FormatError(f'{where}: header dt_output: expected "<value> <unit>", got {values}')
        try:
            value = float(values[0])
        except ValueError:
            raise FormatError(f'{where}: header dt_output: non-numeric value {values[0]!r}') from None
        header['dt_output'] = (value, values[1] if len(values) == 2 else '')
        return 'dt_output'
    if lower in _STR_LIST_KEYS:
        header[lower] = values
        return lower
    if lower == 'col':  # short-lived master header "# col n: name" (April 2025): one key, many lines
        header.setdefault('col', []).append(' '.join(values))
        return ''
    if not header:
        header['command'] = ' '.join(tokens)
        return 'command'
    header[lower] = ' '.join(values)
    return lower


def _scan_table(source, what: str, *, reset_column: int | None = None, check_width=None):
    """Read a whitespace table with optional ``#`` header blocks.

    Returns ``(name, blocks, width)``. ``check_width(width)`` returns an error text for an invalid
    column count (checked on the first data row); every later row must have the same count.
    """
    with open_for_read(source) as handle:
        name = source_name(source, handle)
        lines = Lines(handle)
        blocks: list[_Block] = []
        current: _Block | None = None
        width = width_line = None
        while (line := lines.next()) is not None:
            text = line.strip()
            if not text:
                continue
            where = f'{name}: line {lines.number}'
            if text.startswith('#'):
                key = _header_key(text, current.header if current is not None and not current.rows else {})
                if current is None or current.rows or (key and key in current.header):
                    current = _Block(lines.number)
                    blocks.append(current)
                _parse_header_line(text, current.header, where)
                continue
            tokens = text.split()
            try:
                values = [float(t) for t in tokens]
            except ValueError:
                bad = next(t for t in tokens if not _is_float(t))
                raise FormatError(f'{where}: {what}: non-numeric value {bad!r}') from None
            if width is None:
                problem = check_width(len(values)) if check_width else None
                if problem:
                    raise FormatError(f'{where}: {what}: {problem}')
                width, width_line = len(values), lines.number
            elif len(values) != width:
                raise FormatError(
                    f'{where}: {what}: expected {width} columns (as on line {width_line}), got {len(values)}'
                )
            if current is None or (
                reset_column is not None and current.rows
                and not values[reset_column] > current.rows[-1][reset_column]
            ):
                current = _Block(lines.number)
                blocks.append(current)
            if not current.rows:
                _check_header_columns(current.header, width, where, what)
            current.rows.append(values)
    if width is None:
        raise FormatError(f'{name}: {what}: no data rows')
    return name, blocks, width


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _check_header_columns(header: dict, width: int, where: str, what: str) -> None:
    columns = header.get('columns')
    if columns and len(columns) != width:
        raise FormatError(
            f'{where}: {what}: header "# columns" names {len(columns)} columns, data rows have {width}'
        )


def _assemble(blocks: list[_Block], width: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    starts, rows, headers = [], [], []
    for block in blocks:
        starts.append(len(rows))
        rows.extend(block.rows)
        headers.append(block.header)
    data = np.array(rows, dtype=float).reshape(len(rows), width)
    return data, np.array(starts, dtype=int), headers


# ------------------------------------------------------------------------------------ thermo.out

_THERMO_LAYOUTS = {
    # columns -> (has shear pressures, cell given as 9 components)
    9: (False, False),   # <= v3.3 orthogonal: T K U Pxx Pyy Pzz Lx Ly Lz
    12: (True, False),   # v3.3.1-v3.9.5 orthogonal: ... Pyz Pxz Pxy Lx Ly Lz
    15: (False, True),   # <= v3.3 triclinic: T K U Pxx Pyy Pzz ax ay az bx by bz cx cy cz
    18: (True, True),    # >= v4.0 always, v3.3.1+ triclinic: ... Pyz Pxz Pxy ax ... cz
}


def read_thermo(path) -> dict:
    """Read ``thermo.out`` (``dump_thermo``) in any of its 9/12/15/18-column layouts.

    Returns (N rows over all blocks):

    * ``temperature_K`` (N,), ``kinetic_energy_eV`` (N,), ``potential_energy_eV`` (N,) — whole
      system;
    * ``pressure_GPa`` (N, 3): Pxx Pyy Pzz (kinetic part included, positive = compressive);
    * ``shear_pressure_GPa`` (N, 3): Pyz Pxz Pxy (Voigt order) — only for the 12/18-column layouts;
      absent, not zero, for the 9/15-column ones;
    * ``cell_A`` (N, 3, 3): rows a, b, c (diagonal for the orthogonal 9/12-column layouts);
    * ``num_columns``; ``block_starts`` (row index of each appended block) and ``headers``;
    * ``time_in_block_fs`` (N,) only when every block has a ``# dt_output`` header: row i of a block
      is at (i+1)·dt_output from that block's start. The file has no time column; headerless files
      give no time (row i of a run is at step (i+1)·interval).

    The layout is chosen by the column count; a v5.6 ``# columns`` header must agree with it.
    Header column names are kept in ``headers`` but not used for mapping (PIMD runs rename the
    first two to ``T_target KE_quantum``; the positions are the same).
    """
    def check(width):
        if width not in _THERMO_LAYOUTS:
            return f'expected 9, 12, 15 or 18 columns, got {width}'
        return None

    _, blocks, width = _scan_table(path, 'thermo.out row', check_width=check)
    data, starts, headers = _assemble(blocks, width)
    shear, full_cell = _THERMO_LAYOUTS[width]
    n = len(data)
    result = {
        'temperature_K': data[:, 0].copy(),
        'kinetic_energy_eV': data[:, 1].copy(),
        'potential_energy_eV': data[:, 2].copy(),
        'pressure_GPa': data[:, 3:6].copy(),
        'num_columns': width,
        'block_starts': starts,
        'headers': headers,
    }
    cell_start = 9 if shear else 6
    if shear:
        result['shear_pressure_GPa'] = data[:, 6:9].copy()
    if full_cell:
        result['cell_A'] = data[:, cell_start:cell_start + 9].reshape(n, 3, 3).copy()
    else:
        cell = np.zeros((n, 3, 3))
        for axis in range(3):
            cell[:, axis, axis] = data[:, cell_start + axis]
        result['cell_A'] = cell
    times = _block_times(blocks, 'fs')
    if times is not None:
        result['time_in_block_fs'] = times
    return result


_TIME_UNITS = {'fs': 1.0, 'ps': 1000.0, 'ns': 1.0e6}


def _block_times(blocks: list[_Block], unit: str) -> np.ndarray | None:
    parts = []
    for block in blocks:
        dt = block.header.get('dt_output')
        if dt is None or dt[1] not in _TIME_UNITS:
            return None
        step = dt[0] * _TIME_UNITS[dt[1]] / _TIME_UNITS[unit]
        parts.append(step * np.arange(1, len(block.rows) + 1))
    return np.concatenate(parts) if parts else None


# ------------------------------------------------------------------------------- msd.out / sdc.out


def _grouped_table(path, what: str, first: str, first_unit: str):
    def check(width):
        if width < 7 or (width - 1) % 6:
            return f'expected 1 + 6*n_groups columns (7, 13, 19, ...), got {width}'
        return None

    name, blocks, width = _scan_table(path, what, reset_column=0, check_width=check)
    groups = (width - 1) // 6
    for block in blocks:
        declared = block.header.get('num_groups')
        if declared is not None and declared != groups:
            raise FormatError(
                f'{name}: line {block.first_line}: header num_groups {declared} but rows have '
                f'{width} columns ({groups} groups)'
            )
    data, starts, headers = _assemble(blocks, width)
    per_group = data[:, 1:].reshape(len(data), groups, 2, 3)
    return {
        'time_ps': data[:, 0].copy(),
        f'{first}_{first_unit}': per_group[:, :, 0, :].copy(),
        'sdc_A2_per_ps': per_group[:, :, 1, :].copy(),
        'num_groups': groups,
        'block_starts': starts,
        'headers': headers,
    }


def read_msd(path) -> dict:
    """Read ``msd.out`` (``compute_msd``), with or without ``all_groups`` / ``group``.

    Returns ``time_ps`` (N,) correlation time in ps, ``msd_A2`` (N, G, 3) mean-square displacement
    x y z in Å², ``sdc_A2_per_ps`` (N, G, 3) self-diffusion coefficient (half the finite-difference
    derivative of the MSD; ×1e-4 → cm²/s), ``num_groups`` G, ``block_starts``, ``headers``.

    G = (columns − 1) / 6, always present as an axis (G = 1 without ``all_groups``); with
    ``all_groups`` each group contributes 6 columns ``msd_x msd_y msd_z sdc_x sdc_y sdc_z`` after
    the time, in group order. A v5.6 ``# num_groups`` header must agree. Blocks (appended runs)
    start at a header or where the time does not increase.
    """
    return _grouped_table(path, 'msd.out row', 'msd', 'A2')


def read_sdc(path) -> dict:
    """Read ``sdc.out`` (``compute_sdc``, velocity-autocorrelation route).

    Returns ``time_ps`` (N,) correlation time in ps, ``vac_A2_per_ps2`` (N, G, 3) velocity
    autocorrelation per atom in Å²/ps², ``sdc_A2_per_ps`` (N, G, 3) running trapezoid integral of
    the VAC in Å²/ps, ``num_groups``, ``block_starts``, ``headers``.

    ``compute_sdc`` writes one group (7 columns) in every version we know; 1 + 6·G columns are
    accepted in the ``msd.out`` arrangement in case a later version adds ``all_groups``.
    """
    return _grouped_table(path, 'sdc.out row', 'vac', 'A2_per_ps2')


# ------------------------------------------------------------------------------------ rdf.out


def read_rdf(path) -> dict:
    """Read ``rdf.out`` (``compute_rdf``).

    Returns ``r_A`` (N,) bin centres in Å, ``g_total`` (N,), ``g_partial`` (N, P) partial RDFs,
    ``pairs`` (P labels), ``block_starts`` and ``headers`` (the ``#radius ...`` label line as
    ``headers[i]['radius']``).

    Pair labels come from the label line: v5.0+ element symbols (``Si-Si``), v4.9 ``type_0_0``;
    before v4.9 only the requested pairs (``atom i j``) or just ``#radius total``. Without labels
    the partial columns are named ``column_2``, ``column_3`` ... Each run appends its own label
    line and rows (averaged over that run), hence one block per run.
    """
    def check(width):
        return None if width >= 2 else f'expected at least 2 columns (r, g_total), got {width}'

    name, blocks, width = _scan_table(path, 'rdf.out row', reset_column=0, check_width=check)
    labels = None
    for block in blocks:
        found = block.header.get('radius')
        if found is None:
            continue
        found = ['radius'] + list(found)
        if len(found) != width:
            raise FormatError(
                f'{name}: line {block.first_line}: rdf.out label line names {len(found)} columns, '
                f'data rows have {width}'
            )
        if labels is not None and found != labels:
            raise FormatError(
                f'{name}: line {block.first_line}: rdf.out label line {found} differs from an '
                f'earlier block {labels}'
            )
        labels = found
    data, starts, headers = _assemble(blocks, width)
    pairs = labels[2:] if labels else [f'column_{i}' for i in range(2, width)]
    return {
        'r_A': data[:, 0].copy(),
        'g_total': data[:, 1].copy(),
        'g_partial': data[:, 2:].copy(),
        'pairs': pairs,
        'block_starts': starts,
        'headers': headers,
    }


# ------------------------------------------------------------------------------ dos.out, mvac.out


def _four_columns(width):
    return None if width == 4 else f'expected 4 columns, got {width}'


def _xyz_table(path, filename: str, first: str, xyz: str) -> dict:
    """A four-column table (``first`` then x y z), blocks restarting where column 0 does not increase."""
    _, blocks, width = _scan_table(path, f'{filename} row', reset_column=0, check_width=_four_columns)
    data, starts, headers = _assemble(blocks, width)
    return {first: data[:, 0].copy(), xyz: data[:, 1:4].copy(), 'block_starts': starts, 'headers': headers}


def read_dos(path) -> dict:
    """Read ``dos.out`` (``compute_dos``): phonon density of states from the mass-weighted VAC.

    Returns ``omega_THz`` (N,) **angular** frequency in THz (starts at ω_max/n, not 0),
    ``dos_per_THz`` (N, 3) x y z in 1/THz (∫dos_x dω/2π ≈ number of atoms), ``block_starts``,
    ``headers``. With ``group <gm> -1`` the groups' blocks follow each other without separator;
    they are split where ω does not increase (a block is a group or an appended run).
    """
    return _xyz_table(path, 'dos.out', 'omega_THz', 'dos_per_THz')


def read_mvac(path) -> dict:
    """Read ``mvac.out`` (``compute_dos``): mass-weighted velocity autocorrelation.

    Returns ``time_ps`` (N,) correlation time in ps, ``mvac`` (N, 3) x y z, **dimensionless**
    (normalised to 1 at t = 0, whatever the manual says about units), ``block_starts``, ``headers``.
    Blocks (groups or appended runs) start where the time does not increase.
    """
    return _xyz_table(path, 'mvac.out', 'time_ps', 'mvac')


# ------------------------------------------------------------------------------ hac.out, kappa.out

_KAPPA_COMPONENTS = ('x_in', 'x_out', 'y_in', 'y_out', 'z')


def _kappa_entries(prefix: str, unit: str, values: np.ndarray) -> dict:
    """Five components plus the in+out totals for x and y (what a 3D system needs)."""
    entries = {f'{prefix}_{c}_{unit}': values[:, i].copy() for i, c in enumerate(_KAPPA_COMPONENTS)}
    entries[f'{prefix}_x_total_{unit}'] = values[:, 0] + values[:, 1]
    entries[f'{prefix}_y_total_{unit}'] = values[:, 2] + values[:, 3]
    return entries


def read_hac(path) -> dict:
    """Read ``hac.out`` (``compute_hac``, Green–Kubo EMD).

    Returns ``time_ps`` (N,) — the *centre* of each output window, ``hac_<c>_eV3_per_amu`` and
    ``kappa_<c>_W_per_mK`` for c in ``x_in x_out y_in y_out z`` (N,) — HAC = ⟨J(0)J(t)⟩ and the
    running Green–Kubo integral κ(t) in W/(m·K) — plus ``hac_x_total``/``hac_y_total`` and
    ``kappa_x_total_W_per_mK``/``kappa_y_total_W_per_mK`` (in + out: the 3D value), ``block_starts``,
    ``headers``. in/out is GPUMD's in-plane/out-of-plane split meant for 2D systems. Only the
    potential (virial) part of the heat current is included. Blocks start where t does not
    increase.
    """
    def check(width):
        return None if width == 11 else f'expected 11 columns, got {width}'

    _, blocks, width = _scan_table(path, 'hac.out row', reset_column=0, check_width=check)
    data, starts, headers = _assemble(blocks, width)
    result = {'time_ps': data[:, 0].copy()}
    result.update(_kappa_entries('hac', 'eV3_per_amu', data[:, 1:6]))
    result.update(_kappa_entries('kappa', 'W_per_mK', data[:, 6:11]))
    result['block_starts'] = starts
    result['headers'] = headers
    return result


def read_kappa(path, window: int | None = None, *, time_per_row_ps: float | None = None) -> dict:
    """Read ``kappa.out`` (``compute_hnemd``) and average its rows.

    Each row of the file is the average of κ over **one** output window (``output_interval``
    steps), not a running average. Returned:

    * ``kappa_block_W_per_mK`` (N, 5): the rows as written, columns
      ``x_in x_out y_in y_out z`` (κ_μx_in κ_μx_out κ_μy_in κ_μy_out κ_μz with μ the direction of
      the driving force F_e);
    * ``kappa_<c>_W_per_mK`` (N,) for c in ``x_in x_out y_in y_out z`` and ``x_total``/``y_total``
      (in + out, the bulk value): the running average after each row. ``window=None`` (default)
      averages all rows from the first one (cumulative mean, κ(t) as in the GPUMD tutorials);
      ``window=k`` averages the last k rows (fewer at the start);
    * ``window_index`` (N,) 1, 2, ...: row i ends at step i·output_interval; ``time_ps`` (N,) only
      when ``time_per_row_ps`` (= output_interval × time step) is given;
    * ``components`` (the column names) and ``block_starts``/``headers`` (one block: appended runs
      cannot be detected in this headerless file without time column, so the running average runs
      across them — start each calculation in a clean directory).
    """
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f'window: expected a positive integer or None, got {window!r}')

    def check(width):
        return None if width == 5 else f'expected 5 columns, got {width}'

    _, blocks, width = _scan_table(path, 'kappa.out row', check_width=check)
    data, starts, headers = _assemble(blocks, width)
    n = len(data)
    cumulative = np.cumsum(data, axis=0)
    if window is None:
        running = cumulative / np.arange(1, n + 1)[:, None]
    else:
        shifted = np.zeros_like(cumulative)
        if window < n:
            shifted[window:] = cumulative[:n - window]
        counts = np.minimum(np.arange(1, n + 1), window)
        running = (cumulative - shifted) / counts[:, None]
    result = {'kappa_block_W_per_mK': data}
    result.update(_kappa_entries('kappa', 'W_per_mK', running))
    result['window_index'] = np.arange(1, n + 1)
    if time_per_row_ps is not None:
        result['time_ps'] = float(time_per_row_ps) * np.arange(1, n + 1)
    result['components'] = list(_KAPPA_COMPONENTS)
    result['block_starts'] = starts
    result['headers'] = headers
    return result


# ------------------------------------------------------------------------------------ viscosity.out

_VISCOSITY_COMPONENTS = ('xx', 'yy', 'zz', 'xy', 'xz', 'yz', 'yx', 'zx', 'zy')


def read_viscosity(path) -> dict:
    """Read ``viscosity.out`` (``compute_viscosity``, Green–Kubo shear viscosity).

    Returns ``time_ps`` (N,) correlation time in ps, ``sacf_eV2`` (N, 9) stress autocorrelations
    ⟨S_ab(0)S_ab(t)⟩ in eV² and ``viscosity_mPa_s`` (N, 9) their running integrals divided by k_B·T·V
    in mPa·s (GPUMD manual), both in the order of ``components`` (``xx yy zz xy xz yz yx zx zy``),
    plus ``block_starts`` and ``headers`` (v5.6 ``#`` header per run). Blocks (appended runs) start
    at a header or where the time does not increase.
    """
    def check(width):
        return None if width == 19 else f'expected 19 columns (time, 9 autocorrelations, 9 viscosities), got {width}'

    _, blocks, width = _scan_table(path, 'viscosity.out row', reset_column=0, check_width=check)
    data, starts, headers = _assemble(blocks, width)
    return {
        'time_ps': data[:, 0].copy(),
        'sacf_eV2': data[:, 1:10].copy(),
        'viscosity_mPa_s': data[:, 10:19].copy(),
        'components': list(_VISCOSITY_COMPONENTS),
        'block_starts': starts,
        'headers': headers,
    }


# ------------------------------------------------------------------------------------ shc.out


def read_shc(path) -> dict:
    """Read ``shc.out`` (``compute_shc``): spectral heat current.

    Each block (one per run, and one per group with ``group <gm> -1``) is (2·Nc − 1) correlation
    rows ``t K_in K_out`` with t from −(Nc−1)Δt to +(Nc−1)Δt, then ``num_omega`` spectral rows
    ``ω J_in J_out``. Returned:

    * ``time_ps`` (Nt,), ``K_in_A_eV_per_ps`` / ``K_out_A_eV_per_ps`` (Nt,) — correlation, Å·eV/ps;
    * ``omega_THz`` (Nw,) angular frequency in THz, ``shc_in_A_eV_per_ps_per_THz`` /
      ``shc_out_A_eV_per_ps_per_THz`` (Nw,);
    * ``correlation_block_starts`` / ``frequency_block_starts`` (row index of each block in the
      two arrays) and ``headers``.

    Row counts come from the v5.6 header (``num_correlation_rows``, ``num_frequency_rows``) when
    present. Without it they are inferred from the content: the correlation part is symmetric in t,
    so its length is 2·round(−t₀/Δt) + 1; the spectral part runs until the next negative time (the
    next block) or the end of the file. A block cut short raises :class:`FormatError`.
    """
    def check(width):
        return None if width == 3 else f'expected 3 columns, got {width}'

    # No reset column: blocks are cut by row counts, not by the time axis.
    with open_for_read(path) as handle:
        name = source_name(path, handle)
        lines = Lines(handle)
        records: list[tuple[int, dict, list[float]]] = []  # (line, header-at-start or {}, row)
        header: dict = {}
        header_open = False
        while (line := lines.next()) is not None:
            text = line.strip()
            if not text:
                continue
            where = f'{name}: line {lines.number}'
            if text.startswith('#'):
                if not header_open:
                    header, header_open = {}, True
                _parse_header_line(text, header, where)
                continue
            tokens = text.split()
            if len(tokens) != 3:
                raise FormatError(f'{where}: shc.out row: {check(len(tokens))}')
            try:
                row = [float(t) for t in tokens]
            except ValueError:
                bad = next(t for t in tokens if not _is_float(t))
                raise FormatError(f'{where}: shc.out row: non-numeric value {bad!r}') from None
            records.append((lines.number, header if header_open else {}, row))
            header_open = False
    if not records:
        raise FormatError(f'{name}: shc.out: no data rows')

    correlation, frequency, corr_starts, freq_starts, headers = [], [], [], [], []
    i = 0
    current_header: dict = {}
    while i < len(records):
        line_number, header, row = records[i]
        if header:
            current_header = header
        n_corr = current_header.get('num_correlation_rows')
        n_freq = current_header.get('num_frequency_rows')
        if n_corr is None:
            n_corr = _infer_correlation_rows(records, i, name)
        if i + n_corr > len(records):
            raise FormatError(
                f'{name}: line {line_number}: shc.out truncated: block needs {n_corr} correlation rows, '
                f'only {len(records) - i} rows follow'
            )
        for k in range(i + 1, i + n_corr):
            if records[k][1]:
                raise FormatError(f'{name}: line {records[k][0]}: shc.out: header inside a correlation block')
        block_corr = [records[k][2] for k in range(i, i + n_corr)]
        i += n_corr
        if n_freq is None:
            n_freq = 0
            while i + n_freq < len(records) and records[i + n_freq][2][0] > 0 and not records[i + n_freq][1]:
                n_freq += 1
        if n_freq == 0 or i + n_freq > len(records):
            where = records[i][0] if i < len(records) else lines.number
            raise FormatError(
                f'{name}: line {where}: shc.out truncated: correlation block starting on line {line_number} '
                f'is not followed by {n_freq or "any"} frequency rows'
            )
        block_freq = [records[k][2] for k in range(i, i + n_freq)]
        i += n_freq
        corr_starts.append(len(correlation))
        freq_starts.append(len(frequency))
        correlation.extend(block_corr)
        frequency.extend(block_freq)
        headers.append(current_header)
    corr = np.array(correlation)
    freq = np.array(frequency)
    return {
        'time_ps': corr[:, 0].copy(),
        'K_in_A_eV_per_ps': corr[:, 1].copy(),
        'K_out_A_eV_per_ps': corr[:, 2].copy(),
        'omega_THz': freq[:, 0].copy(),
        'shc_in_A_eV_per_ps_per_THz': freq[:, 1].copy(),
        'shc_out_A_eV_per_ps_per_THz': freq[:, 2].copy(),
        'correlation_block_starts': np.array(corr_starts, dtype=int),
        'frequency_block_starts': np.array(freq_starts, dtype=int),
        'headers': headers,
    }


def _infer_correlation_rows(records, i: int, name: str) -> int:
    line_number, _, row = records[i]
    t0 = row[0]
    if i + 1 >= len(records):
        raise FormatError(f'{name}: line {line_number}: shc.out truncated: a single correlation row')
    dt = records[i + 1][2][0] - t0
    if not t0 < 0 or not dt > 0:
        raise FormatError(
            f'{name}: line {line_number}: shc.out: a correlation block must start at t = -(Nc-1)dt < 0 '
            f'with increasing t, got t = {t0}, {records[i + 1][2][0]}'
        )
    half = round(-t0 / dt)
    return 2 * half + 1


# ------------------------------------------------------------------------------ outputs as array nodes

#: Output file of each ``run.in`` keyword -> (file name, reader name). ``compute_dos`` writes two files.
OUTPUT_FILES = {
    'dump_thermo': (('thermo', 'thermo.out', 'read_thermo'),),
    'compute_msd': (('msd', 'msd.out', 'read_msd'),),
    'compute_sdc': (('sdc', 'sdc.out', 'read_sdc'),),
    'compute_rdf': (('rdf', 'rdf.out', 'read_rdf'),),
    'compute_dos': (('dos', 'dos.out', 'read_dos'), ('mvac', 'mvac.out', 'read_mvac')),
    'compute_hac': (('hac', 'hac.out', 'read_hac'),),
    'compute_hnemd': (('kappa', 'kappa.out', 'read_kappa'),),
    'compute_shc': (('shc', 'shc.out', 'read_shc'),),
    'compute_viscosity': (('viscosity', 'viscosity.out', 'read_viscosity'),),
}

# Longest suffix first: ``_A2_per_ps`` must win over ``_ps``.
_UNIT_SUFFIXES = (
    ('_A_eV_per_ps_per_THz', 'Å·eV/ps/THz'), ('_A_eV_per_ps', 'Å·eV/ps'), ('_A2_per_ps2', 'Å²/ps²'),
    ('_A2_per_ps', 'Å²/ps'), ('_eV3_per_amu', 'eV³/amu'), ('_W_per_mK', 'W/(m·K)'), ('_mPa_s', 'mPa·s'),
    ('_per_THz', '1/THz'), ('_THz', 'THz (angular)'), ('_A2', 'Å²'), ('_eV2', 'eV²'), ('_GPa', 'GPa'),
    ('_eV', 'eV'), ('_ps', 'ps'), ('_fs', 'fs'), ('_K', 'K'), ('_A', 'Å'),
)
_COUNTS = {'block_starts', 'correlation_block_starts', 'frequency_block_starts', 'window_index', 'step', 'stage',
           'step_in_stage', 'segment'}


def unit_of(key: str) -> str:
    """The unit of a reader's array from its key (``msd_A2`` -> ``Å²``); ``1`` for dimensionless values
    (``g_total``, ``mvac``) and ``index`` for row indices and step counts."""
    if key in _COUNTS:
        return 'index'
    for suffix, unit in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            return unit
    return '1'


def _plain(value):
    """JSON-compatible copy (numpy scalars and arrays inside headers become Python numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def array_node_content(result: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Split a reader's result into the arrays of an ``ArrayData`` and its JSON attributes.

    Every numpy array becomes an array under the reader's key; everything else (``headers``,
    ``num_groups``, ``pairs``, ``components`` ...) an attribute. ``units`` (attribute) maps each array
    name to its unit, read from the key's suffix (:func:`unit_of`).
    """
    arrays, attributes = {}, {}
    for key, value in result.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            arrays[key] = value
        else:
            attributes[key] = _plain(value)
    attributes['units'] = {key: unit_of(key) for key in arrays}
    return arrays, attributes


_THERMO_ROW_ARRAYS = ('temperature_K', 'kinetic_energy_eV', 'potential_energy_eV', 'pressure_GPa',
                      'shear_pressure_GPa', 'cell_A')


def merge_thermo_segments(segments: list[dict]) -> dict:
    """One thermo record from the segments of a restarted MD, in simulation order.

    Each segment is ``{'arrays': <thermo arrays of one job, with 'step' and 'time_fs' from its own start>,
    'step_offset': <steps before it>, 'time_offset_fs': <fs before it>, 'cutoff_step': <last step kept, or None>}``.
    Rows after ``cutoff_step`` were redone by the next segment (which started from the restart written at that
    step) and are dropped. Returns the row arrays of :func:`read_thermo` (``shear_pressure_GPa`` only when every
    segment has it), ``step`` and ``time_fs`` counted from the start of the first segment, and ``segment`` (index
    of the segment each row comes from). Per-job stage indices are not kept: they refer to each job's own run.in.
    """
    if not segments:
        raise FormatError('segments: nothing to merge')
    keys = [k for k in _THERMO_ROW_ARRAYS if all(k in s['arrays'] for s in segments)]
    merged: dict[str, list] = {key: [] for key in (*keys, 'step', 'time_fs', 'segment')}
    for index, segment in enumerate(segments):
        arrays = segment['arrays']
        step = np.asarray(arrays['step'], dtype=int)
        keep = np.ones(len(step), dtype=bool)
        if segment.get('cutoff_step') is not None:
            keep = step <= int(segment['cutoff_step'])
        for key in keys:
            merged[key].append(np.asarray(arrays[key])[keep])
        merged['step'].append(step[keep] + int(segment.get('step_offset', 0)))
        merged['time_fs'].append(np.asarray(arrays['time_fs'], dtype=float)[keep]
                                 + float(segment.get('time_offset_fs', 0.0)))
        merged['segment'].append(np.full(int(keep.sum()), index, dtype=int))
    return {key: np.concatenate(values) for key, values in merged.items()}
