"""What every text-format reader and writer here shares: paths or handles, line numbers for errors."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile

import numpy as np


@contextlib.contextmanager
def open_for_write(handle_or_path):
    """Yield a text handle. A path is written through a temporary file beside it and renamed into place only when
    writing succeeded: a failed write leaves neither a half file nor loses a file that was already there."""
    if not isinstance(handle_or_path, (str, os.PathLike)):
        yield handle_or_path
        return
    path = os.fspath(handle_or_path)
    directory, name = os.path.split(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f'.{name}.', suffix='.part', dir=directory)
    try:
        with open(descriptor, 'w', encoding='utf-8', newline='\n') as handle:
            yield handle
        if os.path.exists(path):
            shutil.copymode(path, temporary)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def open_for_read(handle_or_path):
    if isinstance(handle_or_path, (str, os.PathLike)):
        with open(handle_or_path, encoding='utf-8') as handle:
            yield handle
    else:
        yield handle_or_path


class Lines:
    """Line iterator that remembers the 1-based number of the last line returned, for error messages."""

    def __init__(self, handle):
        self._iterator = iter(handle)
        self.number = 0

    def next(self) -> str | None:
        line = next(self._iterator, None)
        if line is None:
            return None
        self.number += 1
        return line.rstrip('\r\n')

    def next_nonblank(self) -> str | None:
        while (line := self.next()) is not None:
            if line.strip():
                return line
        return None


def iter_records(lines: Lines, read_record):
    """``read_record(lines, first_line, index)`` for every record of a multi-record file, a record starting at each
    non-blank line where the previous one ended (xyz frames, cfg blocks): one record in memory at a time."""
    index = 0
    while (first := lines.next_nonblank()) is not None:
        yield read_record(lines, first, index)
        index += 1


def source_name(source, handle) -> str:
    """The name errors give for what a reader was passed: the path, else the handle's ``name``, else ``<stream>``."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(handle, 'name', '<stream>'))


def cell_volume(cell: np.ndarray) -> float:
    """Same triple product as ``Frame.volume`` so virial <-> stress conversions invert exactly."""
    return abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))


def read_text_input(file, what: str = 'file') -> tuple[str, str | None]:
    """Text and a default file name from a path, a handle, bytes or the text itself (a str with a newline).

    Potential nodes accept all four, so a user can pass whatever a program or another node gave them.
    """
    if isinstance(file, (bytes, bytearray)):
        return bytes(file).decode('utf-8'), None
    if hasattr(file, 'read'):
        content = file.read()
        name = getattr(file, 'name', None)
        name = os.path.basename(name) if isinstance(name, str) and name else None
        return (content.decode('utf-8') if isinstance(content, bytes) else content), name
    if isinstance(file, str) and ('\n' in file or '\r' in file):
        return file, None
    if isinstance(file, (str, os.PathLike)):
        path = pathlib.Path(file)
        if not path.is_file():
            raise ValueError(f'file: {str(path)!r} is not an existing file (text must contain a newline)')
        return path.read_bytes().decode('utf-8'), path.name
    raise TypeError(f'file: expected a path, a handle or the {what} text, got {type(file).__name__}')
