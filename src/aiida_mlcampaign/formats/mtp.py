"""Moment Tensor Potential ``.mtp`` files (mlip-2 text format, version 1.1.0).

mlip-2 reads a ``.mtp`` file as a strict sequence of keys (see the shared ``docs/mtp-formats.md``
§2): ``MTP``, ``version = 1.1.0``, the optional ``potential_name`` and ``scaling``,
``species_count``, the optional ``potential_tag``, ``radial_basis_type`` with ``min_dist``,
``max_dist``, ``radial_basis_size``, ``radial_funcs_count``, the optional ``radial_coeffs``
blocks, the alpha tables and, for a trained potential, ``species_coeffs`` and ``moment_coeffs``.
A key is followed by exactly `` = ``; everything else is whitespace-insensitive.

* :func:`read_mtp` is liberal: CRLF or LF, any indentation, ``{...}`` lists, and the layout
  motep 0.2.0's ``motep train`` writes (``min``/``max``/``size`` instead of ``min_dist``/
  ``max_dist``/``radial_basis_size`` and ``radial_funcs_count`` after the coefficients, which
  neither mlip-2 nor motep itself can read back). Such a file is flagged ``motep_layout``.
* :func:`write_mtp` always writes mlip-2's own token order with full float precision and LF.
* :func:`check_mlip2_layout` lists what would stop mlip-2's reader (empty list = readable).

Only ``numpy`` and :mod:`.frames` are imported (no AiiDA, no motep).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import pathlib
import re
from collections.abc import Iterator

import numpy as np

from .frames import FormatError

__all__ = [
    'LEVELS',
    'TEMPLATE_DIR',
    'MtpFile',
    'available_levels',
    'check_mlip2_layout',
    'fix_motep_layout',
    'format_mtp',
    'initial_potential',
    'level_of',
    'parameter_count',
    'read_mtp',
    'template_path',
    'write_mtp',
]

#: Level -> (radial_funcs_count, alpha_moments_count, alpha_index_basic_count, alpha_index_times_count,
#: alpha_scalar_moments) of the standard level templates (docs/mtp-formats.md §2).
LEVELS: dict[int, tuple[int, int, int, int, int]] = {
    2: (1, 1, 1, 0, 1),
    4: (1, 2, 1, 1, 2),
    6: (2, 8, 5, 5, 5),
    8: (2, 18, 11, 14, 9),
    10: (3, 41, 25, 42, 16),
    12: (3, 84, 46, 117, 29),
    14: (4, 174, 81, 348, 52),
    16: (4, 350, 130, 969, 92),
    18: (5, 718, 201, 2634, 163),
    20: (5, 1352, 295, 6349, 288),
    22: (6, 2621, 421, 15431, 500),
    24: (6, 4991, 581, 36170, 864),
    26: (6, 9396, 706, 82520, 1464),
    28: (6, 17366, 866, 180069, 2445),
}

TEMPLATE_DIR = pathlib.Path(__file__).resolve().parent.parent / 'mtp' / 'templates'

RADIAL_BASIS_TYPES = ('RBChebyshev', 'RBChebyshev_repuls', 'RBShapeev', 'RBTaylor')

# mlip-2's key order; True = optional. ``radial_coeffs`` is the block keyword (no ``=``).
_ORDER: tuple[tuple[str, bool], ...] = (
    ('potential_name', True),
    ('scaling', True),
    ('species_count', False),
    ('potential_tag', True),
    ('radial_basis_type', False),
    ('min_dist', False),
    ('max_dist', False),
    ('radial_basis_size', False),
    ('radial_funcs_count', False),
    ('radial_coeffs', True),
    ('alpha_moments_count', False),
    ('alpha_index_basic_count', False),
    ('alpha_index_basic', False),
    ('alpha_index_times_count', False),
    ('alpha_index_times', False),
    ('alpha_scalar_moments', False),
    ('alpha_moment_mapping', False),
    ('species_coeffs', True),
    ('moment_coeffs', True),
)
_KNOWN_KEYS = {'version'} | {key for key, _ in _ORDER}
# Spellings of the radial-basis keys in motep 0.2.0's default writer (and the older min_val/max_val/basis_size).
_ALIASES = {
    'min': 'min_dist',
    'max': 'max_dist',
    'size': 'radial_basis_size',
    'min_val': 'min_dist',
    'max_val': 'max_dist',
    'basis_size': 'radial_basis_size',
}
_INT_KEYS = (
    'species_count', 'radial_basis_size', 'radial_funcs_count', 'alpha_moments_count', 'alpha_index_basic_count',
    'alpha_index_times_count', 'alpha_scalar_moments',
)
_FLOAT_KEYS = ('scaling', 'min_dist', 'max_dist')
_KEY_LINE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$')
_PAIR_LINE = re.compile(r'^\s*(\d+)\s*-\s*(\d+)\s*$')


# ----------------------------------------------------------------------------------------- data


@dataclasses.dataclass
class MtpFile:
    """An MTP potential (basis definition plus, if trained, its coefficients).

    ``radial_coeffs`` maps the ordered species pair ``(i, j)`` to an array of shape
    ``(radial_funcs_count, radial_basis_size)``; ``None`` for an untrained template. ``scaling``
    is ``None`` when the file has no ``scaling`` line (mlip-2 then uses 1). ``header`` keeps the
    scalar ``key = value`` lines as they appeared in the file (original spelling and order);
    ``layout_fixes`` says what :func:`read_mtp` had to normalise (empty for an mlip-2 layout).
    """

    species_count: int
    min_dist: float
    max_dist: float
    radial_basis_size: int
    radial_funcs_count: int
    alpha_moments_count: int
    alpha_index_basic: np.ndarray
    alpha_index_times: np.ndarray
    alpha_moment_mapping: np.ndarray
    radial_coeffs: dict[tuple[int, int], np.ndarray] | None = None
    species_coeffs: np.ndarray | None = None
    moment_coeffs: np.ndarray | None = None
    scaling: float | None = None
    version: str = '1.1.0'
    potential_name: str = 'MTP1m'
    potential_tag: str = ''
    radial_basis_type: str = 'RBChebyshev'
    header: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    layout_fixes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.alpha_index_basic = np.asarray(self.alpha_index_basic, dtype=np.int64).reshape(-1, 4)
        self.alpha_index_times = np.asarray(self.alpha_index_times, dtype=np.int64).reshape(-1, 4)
        self.alpha_moment_mapping = np.asarray(self.alpha_moment_mapping, dtype=np.int64).reshape(-1)
        if self.species_coeffs is not None:
            self.species_coeffs = np.asarray(self.species_coeffs, dtype=float).reshape(-1)
        if self.moment_coeffs is not None:
            self.moment_coeffs = np.asarray(self.moment_coeffs, dtype=float).reshape(-1)
        if self.radial_coeffs is not None:
            self.radial_coeffs = {
                (int(i), int(j)): np.asarray(block, dtype=float) for (i, j), block in self.radial_coeffs.items()
            }

    # counts derived from the tables, so they cannot disagree with them
    @property
    def alpha_index_basic_count(self) -> int:
        return len(self.alpha_index_basic)

    @property
    def alpha_index_times_count(self) -> int:
        return len(self.alpha_index_times)

    @property
    def alpha_scalar_moments(self) -> int:
        return len(self.alpha_moment_mapping)

    @property
    def is_trained(self) -> bool:
        """True when radial, species and moment coefficients are all present."""
        return self.radial_coeffs is not None and self.species_coeffs is not None and self.moment_coeffs is not None

    @property
    def motep_layout(self) -> bool:
        """True when the source used motep 0.2.0's broken layout (renamed keys or misplaced counts)."""
        return bool(self.layout_fixes)

    @property
    def level(self) -> int | None:
        return level_of(self)

    @property
    def parameter_count(self) -> int:
        return parameter_count(self)

    def radial_coeffs_array(self) -> np.ndarray | None:
        """Radial coefficients as one array ``(species, species, radial_funcs_count, radial_basis_size)``."""
        if self.radial_coeffs is None:
            return None
        n = self.species_count
        return np.array([[self.radial_coeffs[(i, j)] for j in range(n)] for i in range(n)])

    def problems(self) -> list[str]:
        """Inconsistencies that mlip-2 would reject or misread (empty = consistent)."""
        return _consistency_problems(self)

    def copy(self) -> MtpFile:
        return dataclasses.replace(
            self,
            alpha_index_basic=self.alpha_index_basic.copy(),
            alpha_index_times=self.alpha_index_times.copy(),
            alpha_moment_mapping=self.alpha_moment_mapping.copy(),
            radial_coeffs=None if self.radial_coeffs is None else {k: v.copy() for k, v in self.radial_coeffs.items()},
            species_coeffs=None if self.species_coeffs is None else self.species_coeffs.copy(),
            moment_coeffs=None if self.moment_coeffs is None else self.moment_coeffs.copy(),
            header=list(self.header),
            layout_fixes=list(self.layout_fixes),
        )


# ----------------------------------------------------------------------------------------- scanning


@dataclasses.dataclass
class _Entry:
    """One ``key = value`` line, the ``radial_coeffs`` block, or a line that is neither."""

    line: int  # 1-based line number
    key: str  # canonical key, 'radial_coeffs', or '' for an unrecognised line
    raw_key: str = ''
    value: str = ''
    text: str = ''  # the whole line (without indentation) for error messages
    blocks: list[tuple[str, int, list[str]]] = dataclasses.field(default_factory=list)  # (label, line, rows)


def _text_of(text_or_path) -> str:
    """Text from a str (content or path), ``pathlib.Path``, bytes or an open handle."""
    if isinstance(text_or_path, (bytes, bytearray)):
        return bytes(text_or_path).decode('utf-8')
    if hasattr(text_or_path, 'read'):
        content = text_or_path.read()
        return content.decode('utf-8') if isinstance(content, bytes) else content
    if isinstance(text_or_path, os.PathLike):
        return pathlib.Path(text_or_path).read_text(encoding='utf-8')
    if isinstance(text_or_path, str):
        if '\n' in text_or_path or '\r' in text_or_path:
            return text_or_path
        return pathlib.Path(text_or_path).read_text(encoding='utf-8')
    raise TypeError(f'expected text, a path or a file handle, got {type(text_or_path).__name__}')


def _lines(text: str) -> list[str]:
    return text.replace('\r\n', '\n').replace('\r', '\n').split('\n')


def _scan(lines: list[str], start: int) -> list[_Entry]:
    """Group lines from index ``start`` into entries; multi-line ``{...}`` values are joined."""
    entries: list[_Entry] = []
    i = start
    while i < len(lines):
        stripped = lines[i].strip()
        lineno = i + 1
        i += 1
        if not stripped:
            continue
        if stripped == 'radial_coeffs':
            entry = _Entry(lineno, 'radial_coeffs', 'radial_coeffs', text=stripped)
            while i < len(lines):
                row = lines[i].strip()
                if not row:
                    i += 1
                    continue
                if _PAIR_LINE.match(row):
                    entry.blocks.append((row, i + 1, []))
                elif row.startswith('{') and entry.blocks:
                    # a row may in principle be wrapped over several lines: join until braces balance
                    while row.count('{') > row.count('}') and i + 1 < len(lines):
                        i += 1
                        row += ' ' + lines[i].strip()
                    entry.blocks[-1][2].append(row)
                else:
                    break
                i += 1
            entries.append(entry)
            continue
        match = _KEY_LINE.match(stripped)
        if match is None:
            entries.append(_Entry(lineno, '', text=stripped))
            continue
        raw_key, value = match.group(1), match.group(2).strip()
        if value.startswith('{'):
            while value.count('{') > value.count('}') and i < len(lines):
                value += ' ' + lines[i].strip()
                i += 1
        entries.append(_Entry(lineno, _ALIASES.get(raw_key, raw_key), raw_key, value, stripped))
    return entries


_ROW = re.compile(r'\{([^{}]*)\}')
_ROWS = re.compile(r'\s*\{[^{}]*\}(?:\s*,\s*\{[^{}]*\})*\s*')


def _split_flat(inner: str, field: str) -> list[str]:
    if not inner.strip():
        return []
    items = [item.strip() for item in inner.split(',')]
    if any(not item for item in items):
        raise FormatError(f'{field}: empty list element')
    return items


def _split_list(text: str, field: str) -> list:
    """Parse ``{a, b}`` into a list of strings, ``{{a, b}, {c, d}}`` into a list of such lists."""
    text = text.strip()
    if not (text.startswith('{') and text.endswith('}')):
        raise FormatError(f'{field}: expected a {{...}} list, got {text[:60]!r}')
    inner = text[1:-1]
    if '{' not in inner and '}' not in inner:
        return _split_flat(inner, field)
    if not _ROWS.fullmatch(inner):
        raise FormatError(f'{field}: malformed nested {{...}} list')
    return [_split_flat(row, field) for row in _ROW.findall(inner)]


def _int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FormatError(f'{field}: expected an integer, got {text!r}') from None


def _float(text: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormatError(f'{field}: expected a number, got {text!r}') from None
    if not math.isfinite(value):
        raise FormatError(f'{field}: not a finite number ({text!r})')
    return value


def _int_rows(text: str, field: str) -> np.ndarray:
    rows = _split_list(text, field)
    out = []
    for k, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4:
            raise FormatError(f'{field}: row {k} must be a list of 4 integers, got {row!r}')
        out.append([_int(v, f'{field}[{k}]') for v in row])
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def _flat(text: str, field: str, convert) -> np.ndarray:
    values = _split_list(text, field)
    if any(isinstance(v, list) for v in values):
        raise FormatError(f'{field}: expected a flat list')
    return np.array([convert(v, f'{field}[{k}]') for k, v in enumerate(values)])


# ----------------------------------------------------------------------------------------- reading


def _parse(text: str) -> tuple[MtpFile, dict, list[_Entry]]:
    """Build an :class:`MtpFile`; raise :class:`FormatError` naming the field on unreadable content.

    Returns the object, the counts the file declared (to compare with the tables) and the entries.
    """
    lines = _lines(text)
    first = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].strip() != 'MTP':
        raise FormatError('MTP: the first line must be "MTP"')
    entries = _scan(lines, first + 1)
    values: dict[str, str] = {}
    header: list[tuple[str, str]] = []
    fixes: list[str] = []
    radial: _Entry | None = None
    for entry in entries:
        if entry.key == '':
            raise FormatError(f'line {entry.line}: cannot parse {entry.text[:60]!r}')
        if entry.key == 'radial_coeffs':
            if radial is not None:
                raise FormatError('radial_coeffs: appears twice')
            radial = entry
            continue
        if entry.key not in _KNOWN_KEYS:
            raise FormatError(f'{entry.raw_key}: unknown key (line {entry.line})')
        if entry.key in values:
            raise FormatError(f'{entry.key}: given twice (line {entry.line})')
        if entry.raw_key != entry.key:
            fixes.append(f'{entry.raw_key} -> {entry.key}')
        values[entry.key] = entry.value
        if not entry.value.startswith('{'):
            header.append((entry.raw_key, entry.value))
    if radial is not None and any(e.key == 'radial_funcs_count' and e.line > radial.line for e in entries):
        fixes.append('radial_funcs_count moved above radial_coeffs')

    required = [key for key, optional in _ORDER if not optional and key != 'radial_coeffs']
    missing = [key for key in required if key not in values]
    if missing:
        also = f' (also missing: {", ".join(missing[1:])})' if missing[1:] else ''
        raise FormatError(f'{missing[0]}: missing{also}')

    ints = {key: _int(values[key], key) for key in _INT_KEYS}
    floats = {key: _float(values[key], key) for key in _FLOAT_KEYS if key in values}
    basic = _int_rows(values['alpha_index_basic'], 'alpha_index_basic')
    times = _int_rows(values['alpha_index_times'], 'alpha_index_times')
    mapping = _flat(values['alpha_moment_mapping'], 'alpha_moment_mapping', _int).astype(np.int64)
    species_coeffs = moment_coeffs = None
    if 'species_coeffs' in values:
        species_coeffs = _flat(values['species_coeffs'], 'species_coeffs', _float).astype(float)
    if 'moment_coeffs' in values:
        moment_coeffs = _flat(values['moment_coeffs'], 'moment_coeffs', _float).astype(float)

    radial_coeffs = None
    if radial is not None:
        radial_coeffs = {}
        for label, line, rows in radial.blocks:
            i, j = (int(v) for v in _PAIR_LINE.match(label).groups())
            if (i, j) in radial_coeffs:
                raise FormatError(f'radial_coeffs: block {i}-{j} given twice (line {line})')
            parsed = [_flat(row, f'radial_coeffs {i}-{j} row {k}', _float) for k, row in enumerate(rows)]
            lengths = {len(row) for row in parsed}
            if len(lengths) > 1:
                raise FormatError(f'radial_coeffs: block {i}-{j} has rows of different lengths {sorted(lengths)}')
            radial_coeffs[(i, j)] = np.array(parsed, dtype=float).reshape(len(parsed), -1 if parsed else 0)

    mtp = MtpFile(
        species_count=ints['species_count'],
        min_dist=floats['min_dist'],
        max_dist=floats['max_dist'],
        radial_basis_size=ints['radial_basis_size'],
        radial_funcs_count=ints['radial_funcs_count'],
        alpha_moments_count=ints['alpha_moments_count'],
        alpha_index_basic=basic,
        alpha_index_times=times,
        alpha_moment_mapping=mapping,
        radial_coeffs=radial_coeffs,
        species_coeffs=species_coeffs,
        moment_coeffs=moment_coeffs,
        scaling=floats.get('scaling'),
        version=values.get('version', ''),
        potential_name=values.get('potential_name', ''),
        potential_tag=values.get('potential_tag', ''),
        radial_basis_type=values['radial_basis_type'],
        header=header,
        layout_fixes=fixes,
    )
    declared_keys = ('alpha_index_basic_count', 'alpha_index_times_count', 'alpha_scalar_moments')
    declared = {key: ints[key] for key in declared_keys}
    return mtp, declared, entries


def read_mtp(text_or_path) -> MtpFile:
    """Read an ``.mtp`` file (path, text, bytes or handle); raise :class:`FormatError` naming the field.

    Accepts the motep 0.2.0 layout and records it in ``layout_fixes``; counts that disagree with
    their tables, a wrong number of radial coefficients or ``min_dist >= max_dist`` are errors.
    """
    mtp, declared, _ = _parse(_text_of(text_or_path))
    problems = _declared_problems(mtp, declared) + _consistency_problems(mtp)
    if problems:
        raise FormatError('; '.join(problems))
    return mtp


def _declared_problems(mtp: MtpFile, declared: dict) -> list[str]:
    problems = []
    for key, table, actual in (
        ('alpha_index_basic_count', 'alpha_index_basic', mtp.alpha_index_basic_count),
        ('alpha_index_times_count', 'alpha_index_times', mtp.alpha_index_times_count),
        ('alpha_scalar_moments', 'alpha_moment_mapping', mtp.alpha_scalar_moments),
    ):
        if declared[key] != actual:
            problems.append(f'{key}: says {declared[key]} but {table} has {actual} entries')
    return problems


def _consistency_problems(mtp: MtpFile) -> list[str]:
    problems = []
    if mtp.version != '1.1.0':
        problems.append(f'version: must be 1.1.0, got {mtp.version!r}')
    if mtp.potential_name and len(mtp.potential_name.split()) != 1:
        problems.append(f'potential_name: must be one word (mlip-2 reads a single token), got {mtp.potential_name!r}')
    if mtp.radial_basis_type not in RADIAL_BASIS_TYPES:
        problems.append(f'radial_basis_type: {mtp.radial_basis_type!r} is not one of {", ".join(RADIAL_BASIS_TYPES)}')
    if mtp.species_count < 1:
        problems.append(f'species_count: must be at least 1, got {mtp.species_count}')
    if mtp.radial_basis_size < 1:
        problems.append(f'radial_basis_size: must be at least 1, got {mtp.radial_basis_size}')
    if mtp.radial_funcs_count < 1:
        problems.append(f'radial_funcs_count: must be at least 1, got {mtp.radial_funcs_count}')
    if not mtp.min_dist < mtp.max_dist:
        problems.append(f'min_dist: must be smaller than max_dist, got min_dist={mtp.min_dist} max_dist={mtp.max_dist}')
    if mtp.min_dist < 0:
        problems.append(f'min_dist: must not be negative, got {mtp.min_dist}')
    if mtp.scaling is not None and not mtp.scaling > 0:
        problems.append(f'scaling: must be positive, got {mtp.scaling}')
    basic, times, mapping = mtp.alpha_index_basic, mtp.alpha_index_times, mtp.alpha_moment_mapping
    if len(basic) and int(basic[:, 0].max()) != mtp.radial_funcs_count - 1:
        problems.append(
            f'radial_funcs_count: is {mtp.radial_funcs_count} but alpha_index_basic uses radial functions '
            f'0..{int(basic[:, 0].max())}'
        )
    if len(basic) and (basic < 0).any():
        problems.append('alpha_index_basic: negative entries')
    if mtp.alpha_index_basic_count > mtp.alpha_moments_count:
        problems.append(
            f'alpha_moments_count: {mtp.alpha_moments_count} is smaller than alpha_index_basic_count '
            f'{mtp.alpha_index_basic_count}'
        )
    moment_indices = times[:, [0, 1, 3]]
    if len(times) and ((moment_indices < 0).any() or (moment_indices >= mtp.alpha_moments_count).any()):
        problems.append(
            f'alpha_index_times: moment indices must be in 0..{mtp.alpha_moments_count - 1} '
            f'(alpha_moments_count = {mtp.alpha_moments_count})'
        )
    if len(mapping) and ((mapping < 0).any() or (mapping >= mtp.alpha_moments_count).any()):
        problems.append(
            f'alpha_moment_mapping: indices must be in 0..{mtp.alpha_moments_count - 1} '
            f'(alpha_moments_count = {mtp.alpha_moments_count})'
        )
    if mtp.radial_coeffs is not None:
        n = mtp.species_count
        expected = [(i, j) for i in range(n) for j in range(n)]
        if sorted(mtp.radial_coeffs) != expected:
            problems.append(
                f'radial_coeffs: expected {n * n} blocks (species_count^2: '
                f'{", ".join(f"{i}-{j}" for i, j in expected)}), got {len(mtp.radial_coeffs)} '
                f'({", ".join(f"{i}-{j}" for i, j in mtp.radial_coeffs)})'
            )
        elif list(mtp.radial_coeffs) != expected:
            problems.append('radial_coeffs: blocks must be in the order 0-0, 0-1, ..., as mlip-2 ignores the labels')
        shape = (mtp.radial_funcs_count, mtp.radial_basis_size)
        for (i, j), block in mtp.radial_coeffs.items():
            if block.shape != shape:
                problems.append(
                    f'radial_coeffs: block {i}-{j} has {block.shape[0]} rows of '
                    f'{block.shape[1] if block.ndim == 2 else 0} '
                    f'numbers, expected radial_funcs_count={shape[0]} rows of radial_basis_size={shape[1]} numbers'
                )
    if mtp.species_coeffs is not None and len(mtp.species_coeffs) != mtp.species_count:
        problems.append(
            f'species_coeffs: has {len(mtp.species_coeffs)} values, expected species_count={mtp.species_count}'
        )
    if mtp.moment_coeffs is not None and len(mtp.moment_coeffs) != mtp.alpha_scalar_moments:
        problems.append(
            f'moment_coeffs: has {len(mtp.moment_coeffs)} values, expected alpha_scalar_moments='
            f'{mtp.alpha_scalar_moments}'
        )
    if (mtp.species_coeffs is None) != (mtp.moment_coeffs is None):
        problems.append('species_coeffs: species_coeffs and moment_coeffs must be given together')
    return problems


# ----------------------------------------------------------------------------------------- layout check


def check_mlip2_layout(text) -> list[str]:
    """What would stop mlip-2's strict reader; an empty list means the file is readable.

    Checks the line-1/line-2 header, the exact key order (optional keys may be left out), the
    `` = `` separator, that every count matches its table, the number and shape of the radial
    coefficient blocks, the lengths of ``species_coeffs``/``moment_coeffs`` and
    ``min_dist < max_dist``. Accepts text, a path or a handle.
    """
    text = _text_of(text)
    problems: list[str] = []
    lines = _lines(text)
    if not lines or lines[0] != 'MTP':
        problems.append(f'MTP: line 1 must be exactly "MTP", got {lines[0][:40]!r}' if lines else 'MTP: empty file')
    if len(lines) < 2 or lines[1] != 'version = 1.1.0':
        problems.append(
            'version: line 2 must be exactly "version = 1.1.0"' + (f', got {lines[1][:40]!r}' if len(lines) > 1 else '')
        )
    try:
        mtp, declared, entries = _parse(text)
    except FormatError as exception:
        return problems + [str(exception)]
    problems += _order_problems(entries)
    for entry in entries:
        if entry.key in ('', 'radial_coeffs'):
            continue
        if not re.match(rf'^{re.escape(entry.raw_key)} =(\s|$)', entry.text):
            problems.append(
                f'{entry.raw_key}: line {entry.line} must read "{entry.raw_key} = ..." (one space before "=")'
            )
        elif entry.value.startswith('{') and not entry.text.startswith(f'{entry.raw_key} = {{'):
            problems.append(f'{entry.raw_key}: line {entry.line} must read "{entry.raw_key} = {{...}}"')
    return problems + _declared_problems(mtp, declared) + _consistency_problems(mtp)


def _order_problems(entries: list[_Entry]) -> list[str]:
    """The first place where the key sequence departs from mlip-2's order (its reader stops there)."""
    keys = [(e.line, 'radial_coeffs' if e.key == 'radial_coeffs' else e.raw_key) for e in entries]
    if keys and keys[0][1] == 'version':
        keys = keys[1:]  # its place (line 2) is checked separately
    position = 0
    for line, key in keys:
        index = position
        while index < len(_ORDER) and _ORDER[index][0] != key and _ORDER[index][1]:
            index += 1
        if index < len(_ORDER) and _ORDER[index][0] == key:
            position = index + 1
            continue
        if index >= len(_ORDER):
            return [f'{key}: not expected at line {line} (mlip-2 reads nothing after {_ORDER[position - 1][0]})']
        want = _ORDER[index][0]
        motep = key in _ALIASES or (key == 'radial_coeffs' and want == 'radial_funcs_count')
        hint = ' (motep 0.2.0 layout; fix_motep_layout() rewrites it)' if motep else ''
        earlier = [name for name, _ in _ORDER[:position]]
        if key in earlier and not motep:
            hint = f' ({key} must come before {earlier[-1]})'
        return [f'{want}: expected at line {line}, found {key!r}{hint}']
    required_left = [name for name, optional in _ORDER[position:] if not optional]
    if required_left:
        return [f'{required_left[0]}: missing at the end of the file']
    return []


# ----------------------------------------------------------------------------------------- writing


def _num(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise FormatError(f'not a finite number: {value}')
    return repr(value)


def _list(values) -> str:
    return '{' + ', '.join(values) + '}'


def format_mtp(mtp: MtpFile) -> str:
    """The text :func:`write_mtp` writes (mlip-2 order, repr floats, LF line endings)."""
    problems = _consistency_problems(mtp)
    if problems:
        raise FormatError('; '.join(problems))
    lines = ['MTP', 'version = 1.1.0', f'potential_name = {mtp.potential_name or "MTP1m"}']
    if mtp.scaling is not None:
        lines.append(f'scaling = {_num(mtp.scaling)}')
    lines.append(f'species_count = {int(mtp.species_count)}')
    lines.append(f'potential_tag = {mtp.potential_tag}')
    lines.append(f'radial_basis_type = {mtp.radial_basis_type}')
    lines.append(f'\tmin_dist = {_num(mtp.min_dist)}')
    lines.append(f'\tmax_dist = {_num(mtp.max_dist)}')
    lines.append(f'\tradial_basis_size = {int(mtp.radial_basis_size)}')
    lines.append(f'\tradial_funcs_count = {int(mtp.radial_funcs_count)}')
    if mtp.radial_coeffs is not None:
        lines.append('\tradial_coeffs')
        for i in range(mtp.species_count):
            for j in range(mtp.species_count):
                lines.append(f'\t\t{i}-{j}')
                lines += ['\t\t\t' + _list(_num(v) for v in row) for row in mtp.radial_coeffs[(i, j)]]
    lines.append(f'alpha_moments_count = {int(mtp.alpha_moments_count)}')
    lines.append(f'alpha_index_basic_count = {mtp.alpha_index_basic_count}')
    lines.append('alpha_index_basic = ' + _list(_list(str(int(v)) for v in row) for row in mtp.alpha_index_basic))
    lines.append(f'alpha_index_times_count = {mtp.alpha_index_times_count}')
    lines.append('alpha_index_times = ' + _list(_list(str(int(v)) for v in row) for row in mtp.alpha_index_times))
    lines.append(f'alpha_scalar_moments = {mtp.alpha_scalar_moments}')
    lines.append('alpha_moment_mapping = ' + _list(str(int(v)) for v in mtp.alpha_moment_mapping))
    if mtp.species_coeffs is not None:
        lines.append('species_coeffs = ' + _list(_num(v) for v in mtp.species_coeffs))
        lines.append('moment_coeffs = ' + _list(_num(v) for v in mtp.moment_coeffs))
    return '\n'.join(lines) + '\n'


def write_mtp(mtp: MtpFile, path_or_handle) -> None:
    """Write ``mtp`` in mlip-2's token order to a path or a text/binary handle (LF endings)."""
    text = format_mtp(mtp)
    with _open_for_write(path_or_handle) as (handle, binary):
        handle.write(text.encode('utf-8') if binary else text)


@contextlib.contextmanager
def _open_for_write(path_or_handle) -> Iterator[tuple]:
    if hasattr(path_or_handle, 'write'):
        yield path_or_handle, isinstance(path_or_handle, (io.RawIOBase, io.BufferedIOBase))
    else:
        with open(path_or_handle, 'w', encoding='utf-8', newline='\n') as handle:
            yield handle, False


def fix_motep_layout(text) -> str:
    """Rewrite motep 0.2.0's ``.mtp`` layout into mlip-2's (same as read + write).

    Renames ``min``/``max``/``size`` to ``min_dist``/``max_dist``/``radial_basis_size`` and puts
    ``radial_funcs_count`` above ``radial_coeffs``; every coefficient keeps its exact value.
    """
    return format_mtp(read_mtp(text))


# ----------------------------------------------------------------------------------------- levels


def level_of(mtp: MtpFile) -> int | None:
    """The level whose template has the same radial-function and alpha counts; ``None`` if none does."""
    key = (
        int(mtp.radial_funcs_count),
        int(mtp.alpha_moments_count),
        mtp.alpha_index_basic_count,
        mtp.alpha_index_times_count,
        mtp.alpha_scalar_moments,
    )
    for level, counts in LEVELS.items():
        if counts == key:
            return level
    return None


def parameter_count(mtp: MtpFile) -> int:
    """Fitted parameters: moment coefficients + species coefficients + radial coefficients."""
    n = int(mtp.species_count)
    return mtp.alpha_scalar_moments + n + n * n * int(mtp.radial_funcs_count) * int(mtp.radial_basis_size)


def available_levels() -> list[int]:
    """Levels with a shipped template (``mtp/templates/NN.mtp``)."""
    return sorted(int(path.stem) for path in TEMPLATE_DIR.glob('[0-9][0-9].mtp'))


def template_path(level) -> pathlib.Path:
    """Path of the shipped untrained template for ``level`` (int or ``'08'``)."""
    available = available_levels()
    names = ', '.join(f'{lv:02d}' for lv in available)
    try:
        number = int(level)
    except (TypeError, ValueError):
        raise ValueError(f'level: expected an even integer, got {level!r}; available levels: {names}') from None
    if (isinstance(level, float) and level != number) or number not in available:
        raise ValueError(f'level: no template for level {level!r}; available levels: {names}')
    return TEMPLATE_DIR / f'{number:02d}.mtp'


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def initial_potential(
    level, species_count: int, min_dist: float, max_dist: float, radial_basis_size: int = 8
) -> MtpFile:
    """An untrained potential from the shipped template of ``level`` with the given basis settings.

    ``min_dist`` (Å) should be a little below the shortest distance in the training set and
    ``max_dist`` (Å) is the cutoff. No coefficients are set; mlip-2 and motep initialise them.
    """
    path = template_path(level)
    if not _positive_int(species_count):
        raise ValueError(f'species_count: must be a positive integer, got {species_count!r}')
    if not _positive_int(radial_basis_size):
        raise ValueError(f'radial_basis_size: must be a positive integer, got {radial_basis_size!r}')
    for name, value in (('min_dist', min_dist), ('max_dist', max_dist)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f'{name}: must be a number, got {value!r}') from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f'{name}: must be a positive number of Å, got {value!r}')
    if float(min_dist) >= float(max_dist):
        raise ValueError(f'min_dist: must be smaller than max_dist, got min_dist={min_dist} max_dist={max_dist}')
    mtp = read_mtp(path)
    mtp.species_count = int(species_count)
    mtp.min_dist = float(min_dist)
    mtp.max_dist = float(max_dist)
    mtp.radial_basis_size = int(radial_basis_size)
    mtp.header = []
    return mtp
