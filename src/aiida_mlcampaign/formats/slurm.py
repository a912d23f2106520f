"""SLURM GPU requests in job scripts: write one, and find (and check) the ones already there.

Pure functions (no AiiDA) shared by the GPU CalcJobs (``gpumd``, ``nep``). Two spellings request GPUs per node:
``#SBATCH --gpus-per-node=<n>`` (SLURM >= 19.05, "gpus" style) and ``#SBATCH --gres=gpu[:<type>]:<n>`` (generic
resources, every SLURM; some sites only configure this one). SLURM reads ``#SBATCH`` lines only up to the first
command of the script, and a later line for the same option wins over an earlier one; mixing the two spellings in
one job is handled differently by different SLURM versions, so only one is written. See ``docs/gpu-clusters.md``.
"""

from __future__ import annotations

import re

from .frames import FormatError

__all__ = ['find_gpu_requests', 'gpu_directive']

_REQUEST = re.compile(
    r'(?:--gres[= ](?P<gres>\S*)|--gpus(?P<kind>-per-node|-per-task|-per-socket)?[= ](?P<gpus>\S+)|-G\s*(?P<short>\S+))'
)


def gpu_directive(gpus: int, *, gres_syntax: bool = False) -> str:
    """``#SBATCH --gpus-per-node=<gpus>`` (or ``--gres=gpu:<gpus>`` with ``gres_syntax``); ``gpus`` must be >= 1."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise FormatError(f'gpus: expected a positive number of GPUs per node, got {gpus!r}')
    return f'#SBATCH --gres=gpu:{gpus}' if gres_syntax else f'#SBATCH --gpus-per-node={gpus}'


def _count(value: str, line: str) -> int:
    """The GPU count at the end of ``[type:]count``; a bare ``gpu`` gres means one."""
    last = value.split(':')[-1].split(',')[0]
    if not re.fullmatch(r'[+-]?\d+', last):
        raise FormatError(f'cannot read the number of GPUs in {line.strip()!r}')
    return int(last)


def find_gpu_requests(text: str | None) -> list[dict]:
    """The GPU requests among the ``#SBATCH`` lines of ``text`` that SLURM would read.

    Returns one ``{'line', 'style', 'gpus'}`` per request (``style`` ``'gres'`` or ``'gpus'``). Lines after the first
    command are ignored (SLURM ignores them). A request for zero or a negative number of GPUs, or one whose count
    cannot be read, raises :class:`FormatError` quoting the line.
    """
    found: list[dict] = []
    for line in (text or '').splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith('#'):
            break  # SLURM stops reading directives at the first command
        if not stripped.startswith('#SBATCH'):
            continue
        for match in _REQUEST.finditer(stripped):
            if match.group('gres') is not None:
                for item in match.group('gres').split(','):
                    if item == 'gpu' or item.startswith('gpu:'):
                        count = 1 if item == 'gpu' else _count(item, line)
                        found.append({'line': stripped, 'style': 'gres', 'gpus': count})
            else:
                value = match.group('gpus') or match.group('short')
                found.append({'line': stripped, 'style': 'gpus', 'gpus': _count(value, line)})
    for request in found:
        if request['gpus'] < 1:
            raise FormatError(f'{request["line"]!r} requests {request["gpus"]} GPUs: ask for at least one, or drop '
                              'the line for a CPU-only job')
    return found
