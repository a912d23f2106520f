"""What every text-format reader and writer here shares: paths or handles, line numbers for errors."""

from __future__ import annotations

import contextlib
import os

import numpy as np


@contextlib.contextmanager
def open_for_write(handle_or_path):
    """Yield a text handle; a file this opened is removed again if writing fails, so no half file is left."""
    if not isinstance(handle_or_path, (str, os.PathLike)):
        yield handle_or_path
        return
    path = os.fspath(handle_or_path)
    try:
        with open(path, 'w', encoding='utf-8', newline='\n') as handle:
            yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise


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


def cell_volume(cell: np.ndarray) -> float:
    """Same triple product as ``Frame.volume`` so virial <-> stress conversions invert exactly."""
    return abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
