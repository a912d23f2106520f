"""What GPUMD's ``gpumd`` prints: version banner, time and speed of each ``run``, error blocks.

A pure function (no AiiDA) on the text of stdout (or stdout and stderr merged). Its own module because ``nep``
prints the same banner and error blocks: :func:`.nep_outputs.read_nep_stdout` builds on :func:`read_gpumd_stdout`
without importing the table and frame readers of :mod:`.gpumd`, which re-exports it.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ['read_gpumd_stdout']

_FLOAT = r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)'
_VERSION = re.compile(r'^[\s*]*version\s+v?(\d+(?:\.\d+)*)', re.IGNORECASE | re.MULTILINE)
_RUN_TIME = re.compile(
    rf'Time used for this (?:REMD production )?run\s*=\s*({_FLOAT})\s*(?:s|second)', re.IGNORECASE
)
_SPEED = re.compile(rf'Speed of this (?:REMD )?run\s*=\s*({_FLOAT})\s*atom\*step/second', re.IGNORECASE)
_TOTAL_TIME = re.compile(rf'^\s*Time used\s*=\s*({_FLOAT})\s*s', re.IGNORECASE | re.MULTILINE)
_ERROR_START = re.compile(r'^\s*(Input Error|CUDA Error|Standard exception):?\s*$', re.MULTILINE)
_ERROR_FIELD = re.compile(r'^\s*(File|Line|Error code|Error text|Error message)\s*:\s*(.*)$')


def read_gpumd_stdout(text: str) -> dict:
    """Parse what ``gpumd`` prints (stdout, or stdout + stderr merged).

    Returns:

    * ``version``: ``'3.9.1'`` / ``'5.6'`` from the banner line (``*  Version 3.9.1  *`` or
      ``version 5.6``), else ``None``;
    * ``runs``: one dict per completed ``run`` in order, ``{'time_s', 'speed_atom_step_per_s'}``
      (either may be ``None`` if its line is missing); ``time_per_run_s`` and
      ``speed_atom_step_per_s`` as arrays (NaN for a missing value); REMD runs
      (``Speed of this REMD run``) count as runs;
    * ``total_time_s`` (``Time used = <s> s.``) or ``None``;
    * ``finished_commands`` (``Finished executing the commands in run.in.``) and ``finished``
      (``Finished running GPUMD.``);
    * ``errors``: GPUMD error blocks (``Input Error:``, ``CUDA Error:``, ``Standard exception:``),
      each ``{'kind', 'file', 'line', 'text'}`` — they go to stderr, so they appear only if stderr
      was merged or is passed here too.

    Very old versions prefix lines with ``INFO:`` and print ``= <s> s.`` instead of ``second.``;
    both are accepted. ``inf`` speeds (a zero-duration run) are kept as ``inf``.
    """
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    match = _VERSION.search(text)
    version = match.group(1) if match else None

    runs: list[dict] = []
    for line in text.splitlines():
        if (m := _RUN_TIME.search(line)) is not None:
            runs.append({'time_s': float(m.group(1)), 'speed_atom_step_per_s': None})
        elif (m := _SPEED.search(line)) is not None:
            if runs and runs[-1]['speed_atom_step_per_s'] is None:
                runs[-1]['speed_atom_step_per_s'] = float(m.group(1))
            else:
                runs.append({'time_s': None, 'speed_atom_step_per_s': float(m.group(1))})
    total = _TOTAL_TIME.search(text)

    errors = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        start = _ERROR_START.match(line)
        if start is None:
            continue
        error = {'kind': start.group(1), 'file': None, 'line': None, 'text': None}
        for following in lines[number + 1:number + 6]:
            field = _ERROR_FIELD.match(following)
            if field is None:
                break
            key, value = field.group(1).lower(), field.group(2).strip()
            if key == 'file':
                error['file'] = value
            elif key == 'line':
                error['line'] = int(value) if value.isdigit() else value
            elif key in ('error text', 'error message'):
                error['text'] = value
            elif key == 'error code' and error['text'] is None:
                error['text'] = f'error code {value}'
        errors.append(error)

    def column(key):
        return np.array([np.nan if r[key] is None else r[key] for r in runs], dtype=float)

    return {
        'version': version,
        'runs': runs,
        'time_per_run_s': column('time_s'),
        'speed_atom_step_per_s': column('speed_atom_step_per_s'),
        'total_time_s': float(total.group(1)) if total else None,
        'finished_commands': 'Finished executing the commands in run.in' in text,
        'finished': 'Finished running GPUMD' in text,
        'errors': errors,
    }
