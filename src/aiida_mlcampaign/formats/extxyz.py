"""Extended XYZ in the dialect GPUMD's ``nep`` reads as ``train.xyz`` / ``test.xyz``.

The writer emits only what GPUMD needs and nothing it could misread: ``Lattice``, total
``energy``, total ``virial`` (eV, positive = compressed, i.e. ``-V * stress``), ``weight``,
``config_type`` and ``Properties=species:S:1:pos:R:3:force:R:3``, with shortest-round-trip
floats so a write/read cycle is lossless. The reader accepts the wider dialect GPUMD and ASE
accept (any key case, ``stress=`` or ``virial=``, ``forces:R:3``, extra columns) and streams
frame by frame, because training sets of several GB must not be held as text in memory.

Only ``numpy`` and :mod:`.frames` are imported so the module works without AiiDA.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

import numpy as np

from .frames import FormatError, Frame, voigt_or_matrix_to_matrix
from .textio import Lines, cell_volume, iter_records, open_for_read, open_for_write

__all__ = ['CONVENTIONS', 'parse_comment_line', 'read_extxyz', 'write_extxyz']

#: ``gpumd``: what ``nep`` trains on (energy and forces mandatory, ``virial=``, 0 < weight <= 100).
#: ``ase``: labels optional, ``stress=`` and ``forces:R:3`` so ``ase.io.read`` attaches both to the
#: calculator (ASE leaves ``virial=`` in ``atoms.info`` and ``force:R:3`` in ``atoms.arrays``).
CONVENTIONS = ('gpumd', 'ase')

# Keys the writer produces itself; info entries with these names (any case) are not repeated.
_RESERVED = {'lattice', 'energy', 'virial', 'stress', 'weight', 'pbc', 'properties', 'config_type'}
_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_.\-]*$')
_BARE_STRING = re.compile(r'^[A-Za-z0-9_.+\-/:@]+$')
_PAIR = re.compile(
    r"""\s*([^\s="']+)"""  # key
    r"""(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([^\s"']+)))?"""  # optional value
)
_TRUE = {'t', 'true'}
_FALSE = {'f', 'false'}


# ----------------------------------------------------------------------------------------- writer


def write_extxyz(frames: Iterable[Frame], handle_or_path, *, convention: str = 'gpumd') -> int:
    """Write ``frames`` and return how many were written.

    Each frame is formatted completely before anything is written, so a frame GPUMD could not use
    raises :class:`FormatError` (prefixed with its index) instead of leaving half a frame behind; a
    file opened here is removed again on error.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f'convention: expected one of {CONVENTIONS}, got {convention!r}')
    count = 0
    with open_for_write(handle_or_path) as handle:
        for index, frame in enumerate(frames):
            try:
                text = _format_frame(frame, convention)
            except FormatError as exc:
                raise FormatError(f'frame {index}: {exc}') from None
            handle.write(text)
            count += 1
    return count


def _format_frame(frame: Frame, convention: str) -> str:
    gpumd = convention == 'gpumd'
    _check_labels(frame, gpumd)
    pairs = [('Lattice', _quoted_numbers(frame.cell.ravel()))]
    if frame.energy is not None:
        pairs.append(('energy', _number(frame.energy)))
    if frame.stress is not None:
        if gpumd:
            pairs.append(('virial', _quoted_numbers(frame.virial.ravel())))
        else:
            pairs.append(('stress', _quoted_numbers(frame.stress.ravel())))
    pairs.append(('weight', _number(frame.weight)))
    pairs.append(('pbc', '"' + ' '.join('T' if p else 'F' for p in frame.pbc) + '"'))
    pairs.extend(_info_pairs(frame.info))
    # GPUMD's canonical column is ``force``; ASE only attaches ``forces`` to the calculator
    # (``force`` lands in ``atoms.arrays['force']`` and ``get_forces()`` fails).
    force_name = 'force' if gpumd else 'forces'
    properties = 'species:S:1:pos:R:3' + (f':{force_name}:R:3' if frame.forces is not None else '')
    pairs.append(('Properties', properties))

    lines = [str(frame.natoms), ' '.join(f'{key}={value}' for key, value in pairs)]
    for i, symbol in enumerate(frame.symbols):
        row = [f'{symbol:<2}'] + [_number(x) for x in frame.positions[i]]
        if frame.forces is not None:
            row += [_number(x) for x in frame.forces[i]]
        lines.append(' '.join(row))
    return '\n'.join(lines) + '\n'


def _check_labels(frame: Frame, gpumd: bool) -> None:
    """Refuse what GPUMD would reject or silently mistrain on, naming the field."""
    for name in ('positions', 'forces', 'stress'):
        value = getattr(frame, name)
        if value is not None and not np.all(np.isfinite(value)):
            raise FormatError(f'{name}: contains a non-finite value')
    if not np.all(np.isfinite(frame.cell)):
        raise FormatError('Lattice: contains a non-finite value')
    if not gpumd:
        return
    if frame.energy is None:
        raise FormatError('energy: missing; GPUMD training needs the total energy of every frame')
    if frame.forces is None:
        raise FormatError('forces: missing; GPUMD training needs forces on every atom')
    if not 0 < frame.weight <= 100:
        raise FormatError(f'weight: GPUMD accepts 0 < weight <= 100, got {frame.weight}')
    if frame.volume < 1e-12:
        raise FormatError('Lattice: cell volume is zero; GPUMD needs a periodic box for every frame')


def _info_pairs(info: dict) -> list[tuple[str, str]]:
    """``origin`` becomes ``config_type`` (GPUMD's grouping key); other scalars follow.

    Non-scalar entries (lists, arrays, dicts) are skipped: GPUMD reads no such metadata and a
    quoted vector under an unknown key would only risk a misparse.
    """
    pairs = []
    origin = info.get('origin', info.get('config_type'))
    if origin is not None:
        pairs.append(('config_type', _scalar('config_type', origin)))
    for key, value in info.items():
        if key == 'origin' or str(key).lower() in _RESERVED or not _is_scalar(value):
            continue
        if not _KEY.match(str(key)):
            raise FormatError(f'info key {key!r}: must be one word of letters, digits, _ . -')
        pairs.append((str(key), _scalar(key, value)))
    return pairs


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_))


def _scalar(key, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return 'T' if value else 'F'
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise FormatError(f'{key}: not a finite number')
        return _number(value)
    return _string(key, str(value))


def _string(key, text: str) -> str:
    """Strings GPUMD tokenises on spaces; a ``"`` or ``=`` inside could be taken for another key."""
    if '"' in text or '=' in text:
        raise FormatError(f'{key}: string value may not contain \'"\' or \'=\': {text!r}')
    escaped = text.replace('\\', '\\\\').replace('\n', '\\n')
    if _BARE_STRING.match(escaped) and _convert_bare(escaped) == escaped:
        return escaped
    # Quoted so that the reader keeps it a string (e.g. "300" or "T" stay strings).
    return f'"{escaped}"'


def _number(value) -> str:
    """Shortest string that reads back to the same double (Python's repr)."""
    return repr(float(value))


def _quoted_numbers(values) -> str:
    return '"' + ' '.join(_number(v) for v in values) + '"'




# ----------------------------------------------------------------------------------------- reader


def read_extxyz(handle_or_path) -> Iterator[Frame]:
    """Yield one :class:`Frame` per frame, reading only that frame's lines at a time.

    ``config_type`` is returned as ``info['origin']`` (the writer's inverse); other unknown keys
    keep their spelling in ``info``. Errors name the field, the 0-based frame index and the
    1-based line number.
    """
    with open_for_read(handle_or_path) as handle:
        yield from iter_records(Lines(handle), _read_frame)




def _read_frame(lines: Lines, count_line: str, index: int) -> Frame:
    where = f'frame {index} (line {lines.number})'
    tokens = count_line.split()
    if len(tokens) != 1 or not tokens[0].isdigit() or int(tokens[0]) < 1:
        raise FormatError(f'{where}: atom count: expected one positive integer, got {count_line.strip()!r}')
    natoms = int(tokens[0])

    comment = lines.next()
    where = f'frame {index} (line {lines.number})'
    if comment is None:
        raise FormatError(f'{where}: truncated file: comment line (Lattice, Properties) missing')
    header = parse_comment_line(comment, where)
    columns, width = _parse_properties(header, where)
    kwargs = _frame_labels(header, where)

    symbols, positions, forces = [], np.empty((natoms, 3)), None
    force_column = columns.get('force', columns.get('forces'))
    if force_column is not None:
        forces = np.empty((natoms, 3))
    for i in range(natoms):
        line = lines.next()
        at = f'frame {index} (line {lines.number})'
        if line is None:
            raise FormatError(f'frame {index}: truncated file: expected {natoms} atom lines, got {i}')
        values = line.split()
        if len(values) != width:
            raise FormatError(
                f'{at}: atom line has {len(values)} columns, Properties declares {width}'
            )
        symbols.append(values[columns['species'][0]])
        positions[i] = _floats(values, columns['pos'], 'pos', at)
        if forces is not None:
            forces[i] = _floats(values, force_column, 'force', at)

    try:
        frame = Frame(symbols=symbols, positions=positions, forces=forces, **kwargs)
    except FormatError as exc:
        raise FormatError(f'frame {index}: {exc}') from None
    return frame


def parse_comment_line(text: str, where: str) -> dict[str, tuple[str, str, bool]]:
    """The ``key=value`` pairs of an extended-XYZ comment line: lower-cased key -> (key as written, value, quoted).

    Values may be bare, ``"double"`` or ``'single'`` quoted (quoted ones are unescaped: ``\\n`` is a newline,
    ``\\x`` is ``x``); a key without ``=`` is a flag and reads ``'T'``, as in ASE. A later key replaces an earlier
    one of the same (lower-cased) name. Errors are :class:`FormatError` starting with ``where`` (file, line, frame).
    Public because :mod:`.gpumd_xyz` reads GPUMD's frames with it: one grammar for every extended-XYZ line here.
    """
    header = {}
    text = text.strip()
    position = 0
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None or match.end() == position:
            near = text[position:position + 30]
            raise FormatError(f'{where}: comment line: cannot parse key=value pairs near {near!r}')
        key, double, single, bare = match.groups()
        if double is not None or single is not None:
            value, quoted = _unescape(double if double is not None else single), True
        elif bare is not None:
            value, quoted = bare, False
        else:
            value, quoted = 'T', False  # a bare key is a flag, as in ASE
        header[key.lower()] = (key, value, quoted)
        position = match.end()
        if position < len(text) and not text[position].isspace():
            raise FormatError(f'{where}: comment line: expected a space after {key!r}')
    return header


def _unescape(text: str) -> str:
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), text)


def _parse_properties(header, where) -> tuple[dict[str, tuple[int, int]], int]:
    """Columns as name -> (start, width); unknown columns are kept only to be skipped."""
    if 'properties' not in header:
        raise FormatError(f'{where}: Properties: missing')
    parts = header['properties'][1].strip().split(':')
    if len(parts) % 3:
        got = header['properties'][1]
        raise FormatError(f'{where}: Properties: expected name:type:width triples, got {got!r}')
    columns, start = {}, 0
    for name, kind, width in zip(parts[0::3], parts[1::3], parts[2::3]):
        if kind.upper() not in ('S', 'R', 'I', 'L') or not width.isdigit() or int(width) < 1:
            raise FormatError(f'{where}: Properties: bad entry {name}:{kind}:{width}')
        columns.setdefault(name.lower(), (start, int(width)))
        start += int(width)
    for name, width in (('species', 1), ('pos', 3)):
        if name not in columns:
            raise FormatError(f'{where}: Properties: {name} column missing')
        if columns[name][1] != width:
            raise FormatError(f'{where}: Properties: {name} must have width {width}')
    for name in ('force', 'forces'):
        if name in columns and columns[name][1] != 3:
            raise FormatError(f'{where}: Properties: {name} must have width 3')
    return columns, start


def _frame_labels(header, where) -> dict:
    """Cell, pbc, energy, stress, weight and info from the comment line."""
    if 'lattice' not in header:
        raise FormatError(f'{where}: Lattice: missing (GPUMD requires it)')
    cell = np.array(_number_list(header['lattice'][1], 'Lattice', where, (9,))).reshape(3, 3)
    kwargs = {'cell': cell, 'info': {}}
    if 'pbc' in header:
        kwargs['pbc'] = _pbc(header['pbc'][1], where)
    if 'energy' in header:
        kwargs['energy'] = _number_list(header['energy'][1], 'energy', where, (1,))[0]
    if 'weight' in header:
        kwargs['weight'] = _number_list(header['weight'][1], 'weight', where, (1,))[0]
    if 'virial' in header:  # GPUMD: virial wins over stress
        virial = voigt_or_matrix_to_matrix(_number_list(header['virial'][1], 'virial', where, (9, 6)))
        volume = cell_volume(cell)
        if volume < 1e-12:
            raise FormatError(f'{where}: virial: cell volume is zero, cannot convert to stress')
        kwargs['stress'] = -virial / volume
    elif 'stress' in header:
        kwargs['stress'] = _number_list(header['stress'][1], 'stress', where, (9, 6))
    for lower, (key, value, quoted) in header.items():
        if lower == 'config_type':
            kwargs['info']['origin'] = value
        elif lower not in _RESERVED:
            kwargs['info'][key] = _convert_quoted(value) if quoted else _convert_bare(value)
    return kwargs


def _number_list(text: str, field: str, where: str, sizes: tuple[int, ...]) -> list[float]:
    tokens = text.split()
    if len(tokens) not in sizes:
        expected = ' or '.join(str(s) for s in sizes)
        raise FormatError(f'{where}: {field}: expected {expected} numbers, got {len(tokens)}')
    try:
        numbers = [float(t) for t in tokens]
    except ValueError:
        raise FormatError(f'{where}: {field}: non-numeric value in {text!r}') from None
    if not all(math.isfinite(v) for v in numbers):
        raise FormatError(f'{where}: {field}: non-finite value in {text!r}')
    return numbers


def _pbc(text: str, where: str) -> tuple[bool, ...]:
    flags = []
    for token in text.split():
        if token.lower() in _TRUE:
            flags.append(True)
        elif token.lower() in _FALSE:
            flags.append(False)
        else:
            raise FormatError(f'{where}: pbc: expected T or F, got {token!r}')
    if len(flags) not in (1, 3):
        raise FormatError(f'{where}: pbc: expected 1 or 3 flags, got {len(flags)}')
    return tuple(flags * 3 if len(flags) == 1 else flags)


def _floats(values: list[str], column: tuple[int, int], field: str, where: str) -> list[float]:
    start, width = column
    try:
        numbers = [float(v) for v in values[start:start + width]]
    except ValueError:
        raise FormatError(f'{where}: {field}: non-numeric value in {values[start:start + width]}') from None
    if not all(math.isfinite(v) for v in numbers):
        # A NaN force would otherwise drop every force label of the frame downstream (energy-only training).
        raise FormatError(f'{where}: {field}: non-finite value in {values[start:start + width]}')
    return numbers


def _convert_bare(text: str):
    """Unquoted values: int, float or T/F flag where they parse as such, else the string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text in ('T', 'True'):
        return True
    if text in ('F', 'False'):
        return False
    return text


def _convert_quoted(text: str):
    """Quoted values stay strings, except a list of several numbers (e.g. ``dipole="1 2 3"``)."""
    tokens = text.split()
    if len(tokens) > 1:
        try:
            return [float(t) for t in tokens]
        except ValueError:
            pass
    return text




