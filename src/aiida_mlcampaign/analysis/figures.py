"""Rendering figures to PNG bytes without a screen: the one place the matplotlib backend is chosen.

Analyses return figures as bytes so the calcfunctions can store them as nodes and the pure functions
stay testable without AiiDA. The Agg canvas is used directly (no ``pyplot`` state machine), so a
figure made in a daemon worker never touches a GUI backend or leaks between calls.
"""

from __future__ import annotations

import io
import typing as t

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ['new_figure', 'to_png']


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.5, height: float = 3.5,
               **subplot_kw: t.Any) -> tuple[Figure, t.Any]:
    """A figure with an Agg canvas and its axes (an array when there is more than one panel)."""
    figure = Figure(figsize=(width * ncols, height * nrows), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=True, subplot_kw=subplot_kw or None)
    return figure, axes


def to_png(figure: Figure, dpi: int = 120) -> bytes:
    """PNG bytes of ``figure``; raises if matplotlib produced nothing (an empty file is never a result)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=dpi)
    data = buffer.getvalue()
    if not data.startswith(b'\x89PNG'):
        raise RuntimeError('matplotlib did not produce a PNG')
    return data
