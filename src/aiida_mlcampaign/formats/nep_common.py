"""What the ``nep`` file modules share: GPUMD's element table, its version numbers and two input helpers.

Pure functions (no AiiDA). :func:`parse_gpumd_version` turns ``'5.6'``, ``'v3.9.5'``, ``(4, 0)`` or ``'master'``
into the tuple that the version-dependent limits and defaults of ``nep.in`` (:mod:`.nep_in`) and the resume checks
(:mod:`.nep_restart`) compare with. ``_read_text`` takes a path, a handle, bytes or the text itself; ``_symbols``
checks a species list against GPUMD's table, because both ``nep.in`` (``type``) and the ``nep.txt`` header carry
one. They live here rather than in one of those modules so that the modules depend on this one and never on each
other in a cycle. Errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` naming the keyword or field.
"""

from __future__ import annotations

import os
import pathlib

from ase.data import chemical_symbols

from .frames import FormatError

__all__ = [
    'ELEMENTS',
    'Version',
    'parse_gpumd_version',
]

#: GPUMD's element table: H ... Pu (94 elements); ``type`` symbols must be among them, case-sensitive.
ELEMENTS = tuple(chemical_symbols[1:95])

#: ``model_type`` of ``nep.in`` -> the model kind a ``nep.txt`` tag names (and back).
_MODEL_TYPES = {0: 'potential', 1: 'dipole', 2: 'polarizability', 3: 'temperature'}
_MODEL_TYPE_OF_KIND = {v: k for k, v in _MODEL_TYPES.items()}

Version = tuple[int, ...]


def parse_gpumd_version(version) -> Version:
    """``'5.6'``, ``'v3.9.5'``, ``(4, 0)``, ``5.2`` -> a tuple of ints; ``'master'`` -> (5, 6, 99) (after v5.6)."""
    if isinstance(version, tuple):
        parts = version
    else:
        text = str(version).strip().lower()
        if text in ('master', 'latest'):
            return (5, 6, 99)
        text = text.removeprefix('v')
        parts = text.split('.')
    try:
        parsed = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise FormatError(f'version: cannot read GPUMD version {version!r} (expected e.g. "5.6")') from None
    if not parsed or parsed < (3, 5):
        raise FormatError(f'version: GPUMD {version!r} is not supported (nep.in writing needs v3.5 or newer)')
    return parsed


def _read_text(text_or_path, what: str) -> str:
    """The text of a path, a handle, bytes or the text itself (a str with a newline); errors name ``what``."""
    if isinstance(text_or_path, bytes):
        return text_or_path.decode('utf-8')
    if hasattr(text_or_path, 'read'):
        content = text_or_path.read()
        return content.decode('utf-8') if isinstance(content, bytes) else content
    if isinstance(text_or_path, str) and ('\n' in text_or_path or '\r' in text_or_path):
        return text_or_path
    if isinstance(text_or_path, (str, os.PathLike)):
        path = pathlib.Path(text_or_path)
        if not path.is_file():
            raise FormatError(f'{what}: {str(path)!r} is not an existing file (text must contain a newline)')
        return path.read_text(encoding='utf-8')
    raise TypeError(f'{what}: expected a path, a handle or the text, got {type(text_or_path).__name__}')


def _symbols(key: str, values: list) -> list[str]:
    symbols = [str(v) for v in values]
    if not 1 <= len(symbols) <= len(ELEMENTS):
        raise FormatError(f'{key}: between 1 and {len(ELEMENTS)} species are allowed, got {len(symbols)}')
    for symbol in symbols:
        if symbol not in ELEMENTS:
            raise FormatError(f'{key}: {symbol!r} is not an element of GPUMD\'s table (H ... Pu, case-sensitive)')
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise FormatError(f'{key}: species listed twice: {duplicates}')
    return symbols
