"""Shared by the hand-run benchmarks: peak-memory probes and rewriting one section of a results file."""

from __future__ import annotations

import pathlib


def rss_kib(field: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``...), in KiB."""
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset ``VmHWM`` so the next peak belongs to the timed section only (Linux; a no-op elsewhere)."""
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
    except OSError:
        pass


def replace_section(path: pathlib.Path, name: str, title: str, body: str, heading: str) -> None:
    """Put ``body`` under ``title`` between ``<!-- name:start/end -->`` markers, keeping the rest of the file."""
    start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else f'{heading}\n'
    block = f'{start}\n{title}\n\n{body}\n{end}'
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    path.write_text(text)
