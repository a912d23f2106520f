"""GPUMD's extended-XYZ frames: ``dump.xyz`` (``dump_xyz``, ``dump_exyz``, ``movie.xyz``) and ``restart.xyz``.

Pure functions (no AiiDA). :func:`iter_dump_xyz` streams the frames of a trajectory one at a time (multi-GB files
are never held in memory), :func:`read_restart_xyz` reads the single frame of a ``restart.xyz``/``model.xyz`` and
:func:`frame_from_dump` turns a frame into a :class:`~aiida_mlcampaign.formats.frames.Frame` with ASE's units and
signs. Frames are plain dicts of numpy arrays with GPUMD's units (Å, Å/fs, eV, amu) and sign conventions, because
analyses need what GPUMD wrote (groups, unwrapped positions, per-atom virials ...) and not only what a Frame keeps.

The comment line (line 2) is read with :func:`.extxyz.parse_comment_line`, the parser of the training-set reader,
so that one line means the same in both readers (either kind of quotes, backslash escapes, bare flags); keys are
lower-cased, as GPUMD lower-cases line 2 before it searches it. Errors are
:class:`~aiida_mlcampaign.formats.frames.FormatError` naming the file, the 1-based line, the 0-based frame index and
the field.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .extxyz import parse_comment_line
from .frames import FormatError, Frame
from .textio import Lines, cell_volume, iter_records, open_for_read, source_name

__all__ = ['frame_from_dump', 'iter_dump_xyz', 'read_restart_xyz']

_COLUMN_NAMES = {
    'species': 'species', 'pos': 'positions', 'vel': 'velocities', 'force': 'forces',
    'forces': 'forces', 'mass': 'masses', 'group': 'groups',
}


def _parse_comment(text: str, where: str) -> dict[str, str]:
    """Line 2 as lower-cased key -> value, read by :func:`.extxyz.parse_comment_line` (errors start with ``where``).

    Keys are lower-cased because GPUMD lower-cases line 2 before it searches it; quoted values are unquoted and
    unescaped, and a bare key (a flag) reads ``'T'``, as in the training-set reader.
    """
    return {key: value for key, (_, value, _) in parse_comment_line(text, where).items()}


def _numbers(text: str, field: str, where: str, size: int) -> np.ndarray:
    tokens = text.split()
    if len(tokens) != size:
        raise FormatError(f'{where}: {field}: expected {size} numbers, got {len(tokens)}')
    try:
        return np.array([float(t) for t in tokens])
    except ValueError:
        raise FormatError(f'{where}: {field}: non-numeric value in {text!r}') from None


def _read_xyz_frame(lines: Lines, count_line: str, name: str, index: int) -> dict:
    where = f'{name}: line {lines.number}'
    tokens = count_line.split()
    if len(tokens) != 1 or not tokens[0].isdigit() or int(tokens[0]) < 1:
        raise FormatError(
            f'{where}: frame {index}: atom count: expected one positive integer, got {count_line.strip()!r}'
        )
    natoms = int(tokens[0])
    comment = lines.next()
    where = f'{name}: line {lines.number}'
    if comment is None:
        raise FormatError(f'{where}: frame {index}: truncated: comment line (Lattice, Properties) missing')
    pairs = _parse_comment(comment, f'{where}: frame {index}')

    if 'properties' not in pairs:
        raise FormatError(f'{where}: frame {index}: Properties: missing')
    parts = pairs['properties'].split(':')
    if len(parts) % 3:
        raise FormatError(f'{where}: frame {index}: Properties: expected name:type:width triples')
    columns = []  # (name, kind, start, width)
    start = 0
    for prop, kind, size in zip(parts[0::3], parts[1::3], parts[2::3]):
        if kind.upper() not in ('S', 'R', 'I', 'L') or not size.isdigit() or int(size) < 1:
            raise FormatError(f'{where}: frame {index}: Properties: bad entry {prop}:{kind}:{size}')
        columns.append((prop.lower(), kind.upper(), start, int(size)))
        start += int(size)
    width = start
    names = [c[0] for c in columns]
    for required, size in (('species', 1), ('pos', 3)):
        if required not in names:
            raise FormatError(f'{where}: frame {index}: Properties: {required} column missing')
        if columns[names.index(required)][3] != size:
            raise FormatError(f'{where}: frame {index}: Properties: {required} must have width {size}')

    frame: dict = {}
    if 'lattice' not in pairs:
        raise FormatError(f'{where}: frame {index}: Lattice: missing')
    frame['cell'] = _numbers(pairs['lattice'], 'Lattice', where, 9).reshape(3, 3)
    pbc = (True, True, True)
    if 'pbc' in pairs:
        flags = pairs['pbc'].split()
        if len(flags) != 3 or any(f.upper() not in ('T', 'F') for f in flags):
            raise FormatError(f'{where}: frame {index}: pbc: expected three T/F flags, got {pairs["pbc"]!r}')
        pbc = tuple(f.upper() == 'T' for f in flags)
    frame['pbc'] = pbc
    if 'time' in pairs:
        frame['time'] = float(_numbers(pairs['time'], 'Time', where, 1)[0])
    if 'energy' in pairs:
        frame['energy'] = float(_numbers(pairs['energy'], 'energy', where, 1)[0])
    for key in ('virial', 'stress'):
        if key in pairs:
            frame[key] = _numbers(pairs[key], key, where, 9).reshape(3, 3)
    frame['info'] = {
        k: v for k, v in pairs.items()
        if k not in ('lattice', 'pbc', 'time', 'energy', 'virial', 'stress', 'properties')
    }

    raw: list[list[str]] = []
    for i in range(natoms):
        line = lines.next()
        if line is None:
            raise FormatError(
                f'{name}: line {lines.number}: frame {index}: truncated: '
                f'file ends after {i} of {natoms} atom lines'
            )
        values = line.split()
        if len(values) != width:
            raise FormatError(
                f'{name}: line {lines.number}: frame {index}: atom line has {len(values)} columns, '
                f'Properties declares {width}'
            )
        raw.append(values)
    first_atom_line = lines.number - natoms + 1
    table = np.array(raw, dtype=object).reshape(natoms, width)
    arrays = {}
    for prop, kind, begin, size in columns:
        block = table[:, begin:begin + size]
        if kind == 'S':
            value = [str(s) for s in block[:, 0]] if size == 1 else block.astype(str)
        else:
            value = _convert_column(block, kind, prop, name, first_atom_line, index)
            if size == 1 and prop not in ('group',):
                value = value[:, 0]
        key = _COLUMN_NAMES.get(prop)
        if key is not None and key not in frame:
            frame[key] = value
        else:
            arrays[prop] = value
    frame['arrays'] = arrays
    for key in ('velocities', 'forces', 'masses', 'groups'):
        frame.setdefault(key, None)
    return frame


def _convert_column(block, kind: str, prop: str, name: str, first_line: int, index: int) -> np.ndarray:
    try:
        if kind == 'I':
            return block.astype(int)
        if kind == 'L':
            return np.vectorize(lambda s: s.upper() in ('T', 'TRUE', '1'))(block)
        return block.astype(float)
    except ValueError:
        for row, values in enumerate(block):
            for token in values:
                try:
                    int(token) if kind == 'I' else float(token)
                except ValueError:
                    raise FormatError(
                        f'{name}: line {first_line + row}: frame {index}: {prop}: '
                        f'non-numeric value {token!r}'
                    ) from None
        raise


def iter_dump_xyz(path) -> Iterator[dict]:
    """Yield the frames of a ``dump.xyz`` (``dump_xyz``/``dump_exyz``/``movie.xyz``) one at a time.

    A generator: only the current frame's lines are read before it is yielded, so multi-GB
    trajectories stream. Each frame is a dict:

    * ``species`` (list of str), ``positions`` (N, 3) Å (wrapped), ``cell`` (3, 3) Å rows a b c,
      ``pbc`` (3 bools; default all periodic);
    * ``velocities`` (N, 3) Å/fs, ``forces`` (N, 3) eV/Å, ``masses`` (N,) amu, ``groups`` (N, k)
      int — each ``None`` when the column is absent;
    * ``time`` (fs, cumulative simulation time), ``energy`` (eV, total potential energy),
      ``virial`` (3, 3) eV (total potential virial, row-major), ``stress`` (3, 3) eV/Å³ — present
      only when the comment line has them. GPUMD's ``stress`` is the pressure tensor
      (virial + kinetic)/V with **positive = compressed**, the opposite of ASE's sign: use
      :func:`frame_from_dump` to get a :class:`Frame` with ASE conventions;
    * ``arrays``: other per-atom columns by their property name (``charge``, ``bec`` (N, 9),
      ``energy_atom``, ``unwrapped_position``, per-atom ``virial`` (N, 9) ...);
      ``info``: other comment keys as raw strings.

    Keys and property names are matched case-insensitively. A truncated last frame raises
    :class:`FormatError` naming the file and line.
    """
    with open_for_read(path) as handle:
        name = source_name(path, handle)
        yield from iter_records(Lines(handle), lambda lines, text, index: _read_xyz_frame(lines, text, name, index))


def frame_from_dump(frame: dict) -> Frame:
    """A :class:`Frame` (ASE units and signs) from one :func:`iter_dump_xyz` frame.

    The stress label is taken from the **potential virial** when present (ASE stress
    = −virial/V, i.e. what a potential is trained on), else from GPUMD's ``stress`` with the sign
    flipped (that one includes the kinetic part). ``time`` (fs) goes to ``info['time_fs']``.
    """
    stress = None
    if frame.get('virial') is not None:
        volume = cell_volume(frame['cell'])
        if volume < 1e-12:
            raise FormatError('virial: cell volume is zero, cannot convert to stress')
        stress = -np.asarray(frame['virial']) / volume
    elif frame.get('stress') is not None:
        stress = -np.asarray(frame['stress'])
    info = {}
    if frame.get('time') is not None:
        info['time_fs'] = frame['time']
    return Frame(
        symbols=frame['species'],
        cell=frame['cell'],
        positions=frame['positions'],
        pbc=frame.get('pbc', (True, True, True)),
        energy=frame.get('energy'),
        forces=frame.get('forces'),
        stress=stress,
        info=info,
    )


def read_restart_xyz(path) -> dict:
    """Read ``restart.xyz`` (``dump_restart``) or a ``model.xyz`` — one extended-XYZ frame.

    Returns the dict of :func:`iter_dump_xyz`: ``species``, ``positions`` (N, 3) Å, ``cell``
    (3, 3) Å, ``pbc``, ``velocities`` (N, 3) **Å/fs** (``vel:R:3``; ``None`` in a model.xyz
    without velocities; ASE velocities are ``velocities / ase.units.fs``), ``masses`` (N,) amu or
    ``None``, ``groups`` (N, k) int (one label per grouping method) or ``None``, ``forces`` when a
    ``force(s):R:3`` column is present, ``arrays``, ``info``. restart.xyz numbers carry only 6
    significant digits (``%g``). More than one frame raises :class:`FormatError`; so does a frame
    with fewer atom lines than its count line (e.g. a restart.xyz cut short by a crash).
    """
    with open_for_read(path) as handle:
        name = source_name(path, handle)
        lines = Lines(handle)
        text = lines.next_nonblank()
        if text is None:
            raise FormatError(f'{name}: empty file')
        frame = _read_xyz_frame(lines, text, name, 0)
        extra = lines.next_nonblank()
        if extra is not None:
            raise FormatError(
                f'{name}: line {lines.number}: more than one frame (restart.xyz/model.xyz hold one)'
            )
    return frame

