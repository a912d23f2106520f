"""mlip-2 text ``.cfg`` configuration databases (``BEGIN_CFG`` ... ``END_CFG`` blocks).

The writer reproduces the block layout ``mlp`` itself writes (same keywords, header lines and
indentation) so the files pass through every ``mlp`` command, but prints numbers with Python's
shortest round-trip repr instead of mlp's 6-decimal fixed point: a write/read cycle must not
lose precision, and mlp parses any float syntax. It never writes the ``nbh_grades`` column
(motep/MLIP-3 add it; mlip-2 stops with "Unknown AtomData field"). The reader is as liberal as
mlip-2's own loader and additionally ignores ``nbh_grades``, and streams block by block.

Units: Å, eV, eV/Å; ``PlusStress`` is the virial in eV, ``-V * stress`` with ASE's stress sign,
Voigt order xx yy zz yz xz xy. Only ``numpy`` and :mod:`.frames` are imported (no AiiDA).
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .frames import FormatError, Frame, matrix_to_voigt
from .textio import Lines, cell_volume, iter_records, open_for_read, open_for_write

__all__ = ['read_cfg', 'write_cfg']

_ATOMDATA_HEADER = ' AtomData:  id type       cartes_x      cartes_y      cartes_z'
_FORCE_HEADER = '           fx          fy          fz'
_PLUSSTRESS_HEADER = ' PlusStress:  xx          yy          zz          yz          xz          xy'
_VOIGT = ('xx', 'yy', 'zz', 'yz', 'xz', 'xy')
_VOIGT_INDEX = {'xx': (0, 0), 'yy': (1, 1), 'zz': (2, 2), 'yz': (1, 2), 'xz': (0, 2), 'xy': (0, 1)}
_POSITION_COLUMNS = {'cartes_x', 'cartes_y', 'cartes_z', 'direct_x', 'direct_y', 'direct_z'}
_KNOWN_COLUMNS = _POSITION_COLUMNS | {'id', 'type', 'fx', 'fy', 'fz', 'site_en', 'charge', 'nbh_grades'}
# Feature keys with a meaning in Frame rather than free text.
_MV_GRADE, _WEIGHT = 'MV_grade', 'weight'


# ----------------------------------------------------------------------------------------- writer


def write_cfg(frames: Iterable[Frame], handle_or_path, species_order: Sequence[str]) -> int:
    """Write ``frames`` as mlp-layout blocks and return how many were written.

    ``type`` is the 0-based index into ``species_order`` (the order of the ``.mtp`` species), so
    the same list must be passed to :func:`read_cfg`. Scalar ``info`` entries become ``Feature``
    lines (``mv_grade`` as ``MV_grade``; a weight other than 1 as ``Feature weight``, which mlp
    ignores); non-scalar entries are dropped because a Feature value is one line of text.
    """
    species_order = list(species_order)
    count = 0
    with open_for_write(handle_or_path) as handle:
        for index, frame in enumerate(frames):
            try:
                text = _format_block(frame, species_order)
            except FormatError as exc:
                raise FormatError(f'block {index}: {exc}') from None
            handle.write(text)
            count += 1
    return count


def _format_block(frame: Frame, species_order: list[str]) -> str:
    types = []
    for symbol in frame.symbols:
        if symbol not in species_order:
            raise FormatError(f'species_order: element {symbol!r} is not in {species_order}')
        types.append(species_order.index(symbol))
    lines = ['BEGIN_CFG', ' Size', f'    {frame.natoms:2d}']
    lines += _supercell_lines(frame)
    lines += _atom_lines(frame, types)
    if frame.energy is not None:
        lines += [' Energy', f'    {_number(frame.energy):>20}']
    if frame.stress is not None:
        if frame.volume < 1e-12:
            raise FormatError('stress: a frame without a periodic cell cannot carry PlusStress')
        plus = matrix_to_voigt(frame.virial)
        lines += [_PLUSSTRESS_HEADER, '    ' + ' '.join(f'{_number(v):>11}' for v in plus)]
    lines += _feature_lines(frame)
    lines += ['END_CFG', '']
    return '\n'.join(lines) + '\n'


def _supercell_lines(frame: Frame) -> list[str]:
    """mlp writes only the periodic lattice vectors, and they must be the leading rows."""
    periodic = sum(frame.pbc)
    if tuple(frame.pbc) != (True,) * periodic + (False,) * (3 - periodic):
        raise FormatError(f'pbc: mlip-2 can only express leading periodic directions, got {frame.pbc}')
    if periodic == 0:
        return []
    rows = [' Supercell']
    for vector in frame.cell[:periodic]:
        rows.append('    ' + ' '.join(f'{_number(x):>13}' for x in vector))
    return rows


def _atom_lines(frame: Frame, types: list[int]) -> list[str]:
    header = _ATOMDATA_HEADER + (_FORCE_HEADER if frame.forces is not None else '')
    rows = [header]
    for i, (type_, position) in enumerate(zip(types, frame.positions)):
        row = f'    {i + 1:>10} {type_:>4} ' + ' '.join(f'{_number(x):>14}' for x in position)
        if frame.forces is not None:
            row += ' ' + ' '.join(f'{_number(x):>11}' for x in frame.forces[i])
        rows.append(row)
    return rows


def _feature_lines(frame: Frame) -> list[str]:
    """``EFS_by`` first as mlp writes it; multi-line values become repeated Feature lines."""
    info = dict(frame.info)
    items = []
    if 'EFS_by' in info:
        items.append(('EFS_by', info.pop('EFS_by')))
    if 'mv_grade' in info:
        items.append((_MV_GRADE, info.pop('mv_grade')))
    items += list(info.items())
    if frame.weight != 1.0:
        items.append((_WEIGHT, frame.weight))
    lines = []
    for key, value in items:
        if not isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
            continue
        key = str(key)
        if not key or any(c.isspace() for c in key):
            raise FormatError(f'info key {key!r}: a Feature key must be one word')
        for part in _feature_text(value).split('\n'):
            lines.append(f' Feature   {key}\t{part}')
    return lines


def _feature_text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return 'True' if value else 'False'
    if isinstance(value, (float, np.floating)):
        return _number(value)
    return str(value)


def _number(value) -> str:
    """Shortest positional string that reads back to the same double.

    Never scientific notation: motep 0.2.0's cfg reader raises on ``1e-05``, mlip-2 writes fixed point too.
    """
    value = float(value)
    if not np.isfinite(value):
        raise FormatError(f'value: non-finite number {value}')
    return np.format_float_positional(value, unique=True, trim='0')




# ----------------------------------------------------------------------------------------- reader


def read_cfg(handle_or_path, species_order: Sequence[str]) -> Iterator[Frame]:
    """Yield one :class:`Frame` per ``BEGIN_CFG`` block, reading one block at a time.

    ``Feature`` lines land in ``info`` under their own key (repeated keys joined with newlines,
    numeric values converted), ``MV_grade`` as float ``info['mv_grade']``. Errors name the field,
    the 0-based block index and the 1-based line number.
    """
    species_order = list(species_order)
    def block(lines, line, index):
        if line.split()[0] != 'BEGIN_CFG':
            raise FormatError(f'block {index} (line {lines.number}): BEGIN_CFG expected, got {line.strip()!r}')
        return _read_block(lines, index, species_order)

    with open_for_read(handle_or_path) as handle:
        yield from iter_records(Lines(handle), block)




class _Block:
    """Fields collected while reading one block, before they are checked and turned into a Frame."""

    def __init__(self, index: int, lines: Lines):
        self.index = index
        self.lines = lines
        self.size = None
        self.cell_rows = []
        self.atoms = None  # dict column -> list of str
        self.energy = None
        self.plus_stress = None  # 3x3, eV
        self.virial_keyword = False  # ``Virial:`` values are divided by |det(cell)| as mlip-2 does
        self.features = {}

    def error(self, message: str) -> FormatError:
        return FormatError(f'block {self.index} (line {self.lines.number}): {message}')

    def required(self, field: str) -> str:
        line = self.lines.next()
        if line is None:
            raise self.error(f'END_CFG: missing (file ends inside {field})')
        return line


def _read_block(lines: Lines, index: int, species_order: list[str]) -> Frame:
    block = _Block(index, lines)
    pending = None  # a line read ahead while collecting Supercell rows
    while True:
        line = pending if pending is not None else lines.next()
        pending = None
        if line is None:
            raise block.error('END_CFG: missing (file ends inside the block)')
        if not line.strip():
            continue
        keyword = line.split()[0]
        if keyword == 'END_CFG':
            return _build_frame(block, species_order)
        if keyword == 'Size':
            block.size = _parse_size(block)
        elif keyword in ('Supercell', 'SuperCell'):
            pending = _parse_supercell(block)
        elif keyword in ('AtomData:', 'Atomic_data:'):
            block.atoms = _parse_atom_data(block, line.split()[1:])
        elif keyword == 'Energy':
            block.energy = _single_float(block, block.required('Energy'), 'Energy')
        elif keyword in ('PlusStress:', 'Virial:'):
            block.plus_stress = _parse_stress(block, line.split()[1:], keyword[:-1])
            block.virial_keyword = keyword == 'Virial:'
        elif keyword == 'Stress:':
            raise block.error('Stress: old negative-stress keyword; mlip-2 rejects it, write PlusStress')
        elif keyword == 'Feature':
            _parse_feature(block, line)
        else:
            raise block.error(f'unknown field {keyword!r}')


def _parse_size(block: _Block) -> int:
    text = block.required('Size').strip()
    if not text.isdigit():
        raise block.error(f'Size: expected a non-negative integer, got {text!r}')
    return int(text)


def _parse_supercell(block: _Block) -> str | None:
    """Read 1 to 3 rows of 3 numbers; return the first line that is not a row."""
    while True:
        line = block.lines.next()
        if line is None:
            return None
        tokens = line.split()
        if len(block.cell_rows) == 3 or not tokens or not _is_float(tokens[0]):
            if not block.cell_rows:
                raise block.error('Supercell: expected at least one row of 3 numbers')
            return line
        if len(tokens) != 3 or not all(_is_float(t) for t in tokens):
            raise block.error(f'Supercell: expected 3 numbers per row, got {line.strip()!r}')
        block.cell_rows.append([float(t) for t in tokens])


def _parse_atom_data(block: _Block, columns: list[str]) -> dict[str, list[str]]:
    if block.size is None:
        raise block.error('Size: AtomData appears before Size')
    for name in columns:
        if name not in _KNOWN_COLUMNS:
            raise block.error(f'AtomData: unknown column {name!r}')
    if len(set(columns)) != len(columns):
        raise block.error(f'AtomData: repeated column in {columns}')
    data = {name: [] for name in columns}
    for _ in range(block.size):
        line = block.required('AtomData')
        values = _fields(line, len(columns))
        if len(values) != len(columns):
            raise block.error(
                f'AtomData: row has {len(values)} values for {len(columns)} columns '
                f'(Size {block.size} but fewer rows?)'
            )
        for name, value in zip(columns, values):
            data[name].append(value)
    return data


_NUMBER = re.compile(r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?')


def _fields(line: str, expected: int) -> list[str]:
    """The whitespace-separated fields of ``line``, or, when they are not ``expected`` many, its numbers read one
    after the other: mlip-2 and motep write fixed-width columns (``%14.5f``), and a value too wide for its column
    (the stress of a young potential, 1e5 eV) runs into its neighbour (``97870.10277-189990.43589``)."""
    values = line.split()
    if len(values) != expected:
        numbers = _NUMBER.findall(line)
        if len(numbers) == expected and ''.join(numbers) == ''.join(values):
            return numbers
    return values


def _parse_stress(block: _Block, names: list[str], field: str) -> np.ndarray:
    if sorted(names) != sorted(_VOIGT):
        raise block.error(f'{field}: expected the six names xx yy zz yz xz xy, got {names}')
    values = _fields(block.required(field), 6)
    if len(values) != 6 or not all(_is_float(v) for v in values):
        raise block.error(f'{field}: expected 6 numbers, got {values}')
    matrix = np.zeros((3, 3))
    for name, value in zip(names, values):
        i, j = _VOIGT_INDEX[name]
        matrix[i, j] = matrix[j, i] = float(value)
    return matrix


def _parse_feature(block: _Block, line: str) -> None:
    """As mlip-2: key is the next word, the value is the rest after one separator character."""
    rest = line.lstrip()[len('Feature'):].lstrip()
    if not rest:
        raise block.error('Feature: key missing')
    key = rest.split()[0]
    value = rest[len(key) + 1:]
    if key in block.features:
        block.features[key] += '\n' + value
    else:
        block.features[key] = value


def _build_frame(block: _Block, species_order: list[str]) -> Frame:
    if block.atoms is None:
        if block.size:
            raise block.error('AtomData: missing')
        block.atoms = {}
    cell, pbc = _cell(block)
    positions = _positions(block, cell)
    symbols = _symbols(block, species_order)
    forces = _columns(block, ('fx', 'fy', 'fz'), 'fx fy fz')
    stress = None
    if block.plus_stress is not None:
        volume = cell_volume(cell)
        if volume < 1e-12:
            raise block.error('PlusStress: needs a Supercell with non-zero volume')
        plus = block.plus_stress / volume if block.virial_keyword else block.plus_stress
        stress = -plus / volume
    info, weight = _info(block)
    try:
        return Frame(symbols=symbols, cell=cell, positions=positions, pbc=pbc, energy=block.energy,
                     forces=forces, stress=stress, weight=weight, info=info)
    except FormatError as exc:
        raise block.error(str(exc)) from None


def _cell(block: _Block) -> tuple[np.ndarray, tuple[bool, bool, bool]]:
    cell = np.zeros((3, 3))
    for i, row in enumerate(block.cell_rows):
        cell[i] = row
    periodic = len(block.cell_rows)
    return cell, tuple(i < periodic for i in range(3))


def _positions(block: _Block, cell: np.ndarray) -> np.ndarray:
    cartesian = _columns(block, ('cartes_x', 'cartes_y', 'cartes_z'), 'cartes_x/y/z')
    direct = _columns(block, ('direct_x', 'direct_y', 'direct_z'), 'direct_x/y/z')
    if cartesian is not None and direct is not None:
        raise block.error('AtomData: both cartes_* and direct_* columns given')
    if direct is not None:
        if cell_volume(cell) < 1e-12:
            raise block.error('AtomData: direct_x/y/z need a Supercell with non-zero volume')
        return direct @ cell
    if cartesian is None:
        if block.size:
            raise block.error('AtomData: no cartes_x/y/z or direct_x/y/z columns')
        return np.zeros((0, 3))
    return cartesian


def _symbols(block: _Block, species_order: list[str]) -> list[str]:
    n = block.size or 0
    if 'id' in block.atoms:
        if [_int(block, v, 'id') for v in block.atoms['id']] != list(range(1, n + 1)):
            raise block.error(f'id: must run 1..{n} in order')
    raw = block.atoms.get('type', ['0'] * n)
    symbols = []
    for value in raw:
        type_ = _int(block, value, 'type')
        if not 0 <= type_ < len(species_order):
            raise block.error(f'type: {type_} is out of range of species_order {species_order}')
        symbols.append(species_order[type_])
    return symbols


def _columns(block: _Block, names: tuple[str, str, str], field: str) -> np.ndarray | None:
    present = [name in block.atoms for name in names]
    if not any(present):
        return None
    if not all(present):
        raise block.error(f'AtomData: {field} must be given together')
    try:
        return np.array([[float(v) for v in block.atoms[name]] for name in names]).T.reshape(-1, 3)
    except ValueError:
        raise block.error(f'AtomData: non-numeric value in {field}') from None


def _info(block: _Block) -> tuple[dict, float]:
    info, weight = {}, 1.0
    for key, value in block.features.items():
        if key == _MV_GRADE:
            info['mv_grade'] = _single_float(block, value, 'MV_grade')
        elif key == _WEIGHT:
            weight = _single_float(block, value, 'Feature weight')
        else:
            info[key] = _convert(value)
    return info, weight


def _convert(text: str):
    """Feature values are text; numbers and True/False come back typed so info round-trips."""
    if '\n' in text:
        return text
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {'True': True, 'False': False}.get(text, text)


def _single_float(block: _Block, text: str, field: str) -> float:
    tokens = text.split()
    if len(tokens) != 1 or not _is_float(tokens[0]):
        raise block.error(f'{field}: expected one number, got {text.strip()!r}')
    return float(tokens[0])


def _int(block: _Block, text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise block.error(f'{field}: expected an integer, got {text!r}') from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True




