"""GPUMD ``nep`` files, one module per file; this module re-exports their public names, so that
``from aiida_mlcampaign.formats.nep import ...`` keeps working and callers need not know the split.

* :mod:`.nep_in`: the ``nep.in`` control file: :func:`nep_in` (writer, every architecture keyword explicit,
  ``fine_tune`` checked against the foundation model), :func:`read_nep_in`, :func:`fill_nep_defaults` (the
  documented defaults of each GPUMD version), :data:`ARCHITECTURE_KEYWORDS`, :data:`ENGINES` (GPUMD's ``nep`` or
  neppo);
* :mod:`.nep_model`: the ``nep.txt`` header: :func:`read_nep_header`, :func:`nep_parameter_count` (the formula of
  doc §4.2) and :func:`architecture_from_header`;
* :mod:`.nep_outputs`: what a run writes: :func:`read_loss` (:data:`LOSS_COLUMNS`), :func:`read_parity`
  (:data:`PARITY_COMPONENTS`, :data:`MISSING_TARGET_THRESHOLD`), :func:`read_parity_set`, the ``*_train.out`` row
  order (:func:`gpumd_batch_order`, :func:`match_train_order`, :func:`restore_train_order`), :func:`parity_rmse`
  (:data:`PARITY_RMSE_UNITS`) and :func:`read_nep_stdout`;
* :mod:`.nep_restart`: runs that start from an existing model: :func:`read_nep_restart`,
  :func:`expected_parameter_count` and :func:`apply_architecture`;
* :mod:`.nep_common`: what several of them share: :data:`ELEMENTS` (GPUMD's element table),
  :func:`parse_gpumd_version` and the input helpers.

All follow ``shared/docs/gpumd-formats.md`` §2 (``nep.in``) and §4 (``nep`` outputs). Pure functions (no AiiDA);
errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` (a ``ValueError``) naming the keyword, field or
line.
"""

from __future__ import annotations

from .nep_common import ELEMENTS, Version, parse_gpumd_version  # noqa: F401  (ELEMENTS, Version: not in __all__)
from .nep_in import ARCHITECTURE_KEYWORDS, ENGINES, fill_nep_defaults, nep_in, read_nep_in
from .nep_model import architecture_from_header, nep_parameter_count, read_nep_header
from .nep_outputs import (
    LOSS_COLUMNS,
    MISSING_TARGET_THRESHOLD,
    PARITY_COMPONENTS,
    PARITY_RMSE_UNITS,
    gpumd_batch_order,
    match_train_order,
    parity_rmse,
    read_loss,
    read_nep_stdout,
    read_parity,
    read_parity_set,
    restore_train_order,
)
from .nep_restart import apply_architecture, expected_parameter_count, read_nep_restart

__all__ = [
    'ARCHITECTURE_KEYWORDS',
    'ENGINES',
    'LOSS_COLUMNS',
    'MISSING_TARGET_THRESHOLD',
    'PARITY_COMPONENTS',
    'PARITY_RMSE_UNITS',
    'apply_architecture',
    'architecture_from_header',
    'expected_parameter_count',
    'fill_nep_defaults',
    'gpumd_batch_order',
    'match_train_order',
    'nep_in',
    'nep_parameter_count',
    'parity_rmse',
    'parse_gpumd_version',
    'read_loss',
    'read_nep_header',
    'read_nep_in',
    'read_nep_restart',
    'read_nep_stdout',
    'read_parity',
    'read_parity_set',
    'restore_train_order',
]
