"""Storing analysis results as nodes: shared by the ``mlcampaign.analysis.*`` calcfunctions."""

from __future__ import annotations

import io

import numpy as np
from aiida import orm


def figure_node(png: bytes, filename: str) -> orm.SinglefileData:
    """A PNG (from :func:`aiida_mlcampaign.analysis.figures.to_png`) as a node a calcfunction can return."""
    if not png:
        raise ValueError(f'{filename}: the figure is empty')
    return orm.SinglefileData(io.BytesIO(png), filename=filename)


def array_node(**arrays) -> orm.ArrayData:
    """An ArrayData of the given named arrays (converted with ``numpy.asarray``)."""
    node = orm.ArrayData()
    for name, values in arrays.items():
        node.set_array(name, np.asarray(values))
    return node
