"""GPUMD ``model.xyz`` (the starting structure of ``gpumd``): a checked writer and a cheap header reader.

Pure functions (no AiiDA), following ``shared/docs/gpumd-formats.md`` §6: one extended-XYZ frame, line 2 with
``pbc="T T T" Lattice="ax ay az bx by bz cx cy cz" Properties=species:S:1:pos:R:3[:mass:R:1][:vel:R:3][:group:I:k]``.
Velocities are in Å/fs (ASE's are in Å per ASE time unit: multiply by :data:`ASE_VELOCITY_TO_A_PER_FS`). A
``restart.xyz`` has the same layout, so :func:`read_model_header` reads both.

Numbers are written with Python's shortest round-trip representation, so the file holds exactly the node's values
(GPUMD's own restart.xyz keeps only 6 significant digits).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .frames import FormatError
from .gpumd_xyz import _parse_comment

__all__ = ['ASE_VELOCITY_TO_A_PER_FS', 'model_xyz', 'read_model_header', 'write_model_xyz']

#: ``ase.units.fs``: an ASE velocity (Å per ASE time unit) times this is Å/fs.
ASE_VELOCITY_TO_A_PER_FS = 0.09822694788464063


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _finite_array(values, shape_tail: tuple, field: str, n: int | None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise FormatError(f'{field}: expected numbers') from None
    expected = ((n,) if n is not None else ()) + shape_tail
    if n is None:
        if array.ndim != len(shape_tail) + 1 or array.shape[1:] != shape_tail:
            raise FormatError(f'{field}: expected shape (N, {", ".join(map(str, shape_tail))}), got {array.shape}')
    elif array.shape != expected:
        raise FormatError(f'{field}: expected shape {expected} (one row per atom), got {array.shape}')
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        raise FormatError(f'{field}: not finite at row {int(bad[0][0])}')
    return array


def model_xyz(symbols, cell, positions, *, pbc=(True, True, True), masses=None, velocities=None,
              groups=None) -> str:
    """The text of a ``model.xyz``.

    ``symbols`` (N), ``cell`` (3, 3) Å with rows a b c, ``positions`` (N, 3) Å, ``pbc`` three booleans; optional
    ``masses`` (N) amu, ``velocities`` (N, 3) Å/fs and ``groups``: a sequence of grouping methods, each N
    non-negative integer labels (method k is grouping method k in ``run.in``). Bad input raises
    :class:`FormatError` naming the field (fewer than 2 atoms, which GPUMD refuses, included).
    """
    symbols = [str(s) for s in symbols]
    n = len(symbols)
    if n < 2:
        raise FormatError(f'symbols: GPUMD needs at least 2 atoms, got {n}')
    for index, symbol in enumerate(symbols):
        if not symbol or not symbol.isalpha():
            raise FormatError(f'symbols[{index}]: not an element symbol: {symbol!r}')
    cell = _finite_array(cell, (3,), 'cell', 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        raise FormatError('cell: the three vectors are linearly dependent (zero volume)')
    positions = _finite_array(positions, (3,), 'positions', n)
    pbc = tuple(bool(p) for p in pbc)
    if len(pbc) != 3:
        raise FormatError(f'pbc: expected three booleans, got {len(pbc)}')
    columns = [(symbols, None), (positions, None)]
    properties = ['species:S:1', 'pos:R:3']
    if masses is not None:
        masses = _finite_array(masses, (), 'masses', n)
        if (masses <= 0).any():
            raise FormatError(f'masses: must be > 0, got {masses[masses <= 0][0]:g} at row '
                              f'{int(np.argmax(masses <= 0))}')
        properties.append('mass:R:1')
        columns.append((masses[:, None], None))
    if velocities is not None:
        velocities = _finite_array(velocities, (3,), 'velocities', n)
        properties.append('vel:R:3')
        columns.append((velocities, None))
    if groups is not None:
        labels = []
        for method, values in enumerate(groups):
            values = list(values)
            if len(values) != n:
                raise FormatError(f'groups[{method}]: expected one label per atom ({n}), got {len(values)}')
            for atom, value in enumerate(values):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                        isinstance(value, float) and value.is_integer()):
                    raise FormatError(f'groups[{method}][{atom}]: expected an integer label, got {value!r}')
                if int(value) < 0:
                    raise FormatError(f'groups[{method}][{atom}]: labels must be >= 0, got {value}')
            labels.append([int(v) for v in values])
        if labels:
            properties.append(f'group:I:{len(labels)}')
            columns.append((np.array(labels, dtype=int).T, 'int'))
    lattice = ' '.join(_number(v) for v in cell.reshape(9))
    flags = ' '.join('T' if p else 'F' for p in pbc)
    lines = [str(n), f'pbc="{flags}" Lattice="{lattice}" Properties={":".join(properties)}']
    for atom in range(n):
        tokens = [symbols[atom]]
        for values, kind in columns[1:]:
            row = values[atom]
            tokens.extend(str(int(v)) if kind == 'int' else _number(v) for v in np.atleast_1d(row))
        lines.append(' '.join(tokens))
    return '\n'.join(lines) + '\n'


def write_model_xyz(path, *args, **kwargs) -> None:
    """Write :func:`model_xyz` to ``path``."""
    text = model_xyz(*args, **kwargs)
    with open(path, 'w', encoding='utf-8', newline='\n') as handle:
        handle.write(text)


def read_model_header(source) -> dict:
    """The first two lines of a ``model.xyz``/``restart.xyz`` (path or open text handle), without the atom lines.

    Returns ``num_atoms``, ``properties`` (list of ``(name, type, width)``, names lower-cased),
    ``has_velocities``, ``has_masses``, ``num_grouping_methods`` (width of the ``group`` column, 0 without),
    ``cell`` (3, 3) and ``pbc``. Cheap on multi-GB files: used to check inputs before submission.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding='utf-8') as handle:
            return read_model_header(handle)
    name = str(getattr(source, 'name', '<stream>'))
    first = source.readline()
    while first and not first.strip():
        first = source.readline()
    tokens = first.split()
    if len(tokens) != 1 or not tokens[0].isdigit():
        raise FormatError(f'{name}: line 1: atom count: expected one positive integer, got {first.strip()!r}')
    comment = source.readline()
    if not comment:
        raise FormatError(f'{name}: line 2: comment line (Lattice, Properties) missing')
    pairs = _parse_comment(comment, f'{name}: line 2')
    if 'properties' not in pairs:
        raise FormatError(f'{name}: line 2: Properties: missing')
    parts = pairs['properties'].split(':')
    if len(parts) % 3:
        raise FormatError(f'{name}: line 2: Properties: expected name:type:width triples')
    properties = []
    for prop, kind, width in zip(parts[0::3], parts[1::3], parts[2::3]):
        if not width.isdigit():
            raise FormatError(f'{name}: line 2: Properties: bad width in {prop}:{kind}:{width}')
        properties.append((prop.lower(), kind.upper(), int(width)))
    names = {p[0]: p for p in properties}
    for required in ('species', 'pos'):
        if required not in names:
            raise FormatError(f'{name}: line 2: Properties: {required} column missing')
    if 'lattice' not in pairs:
        raise FormatError(f'{name}: line 2: Lattice: missing')
    try:
        cell = np.array([float(v) for v in pairs['lattice'].split()])
    except ValueError:
        raise FormatError(f'{name}: line 2: Lattice: non-numeric value') from None
    if cell.size != 9 or not all(math.isfinite(v) for v in cell):
        raise FormatError(f'{name}: line 2: Lattice: expected 9 finite numbers')
    flags = pairs.get('pbc', 'T T T').split()
    return {
        'num_atoms': int(tokens[0]),
        'properties': properties,
        'has_velocities': 'vel' in names,
        'has_masses': 'mass' in names,
        'num_grouping_methods': names['group'][2] if 'group' in names else 0,
        'cell': cell.reshape(3, 3),
        'pbc': tuple(f.upper() == 'T' for f in flags),
    }
