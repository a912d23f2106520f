"""What GPUMD's ``nep`` writes while it trains or predicts: ``loss.out``, the parity files and its stdout.

Pure functions (no AiiDA), following ``shared/docs/gpumd-formats.md`` §4 (``nep`` outputs) and §1 (stdout):

* :func:`read_loss` (10, 14 or 6 columns, ``#`` lines skipped) and :func:`read_parity` (``energy``/``force``/
  ``virial``/``stress``/``dipole``/``polarizability`` files: prediction columns then target columns; a missing
  target, written as -1e6 or, in ``stress_*.out`` before v4.9.1, about -4.5e6, becomes NaN);
* :func:`gpumd_batch_order`, :func:`match_train_order` and :func:`restore_train_order` put ``*_train.out`` rows
  back in ``train.xyz`` order when ``nep`` trained in batches; :func:`read_parity_set` reads every parity file of
  a split that way and checks it against the frames, and :func:`parity_rmse` gives the errors they imply;
* :func:`read_nep_stdout` reads the timings, progress and error blocks ``nep`` prints.

Used by the ``mlcampaign.nep.train`` parser. Errors are :class:`~aiida_mlcampaign.formats.frames.FormatError` (a
``ValueError``) naming the file, the line or row and the field.
"""

from __future__ import annotations

import io
import re

import numpy as np

from .frames import FormatError
from .gpumd_stdout import read_gpumd_stdout  # the banner and error-block layout are shared by both programs
from .textio import open_for_read

__all__ = [
    'LOSS_COLUMNS',
    'MISSING_TARGET_THRESHOLD',
    'PARITY_COMPONENTS',
    'PARITY_RMSE_UNITS',
    'gpumd_batch_order',
    'match_train_order',
    'parity_rmse',
    'read_loss',
    'read_nep_stdout',
    'read_parity',
    'read_parity_set',
    'restore_train_order',
]

#: A parity-file target at or below this value means "no reference value" (doc §4.4).
MISSING_TARGET_THRESHOLD = -1.0e5

#: The generation that starts a progress row of ``nep``'s stdout.
_INT_RE = re.compile(r'^[+-]?\d+$')

#: Column names of ``loss.out`` by column count: potential, qNEP (charges) and dipole/polarizability models.
LOSS_COLUMNS = {
    10: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_energy_train', 'rmse_force_train',
         'rmse_virial_train', 'rmse_energy_test', 'rmse_force_test', 'rmse_virial_test'),
    14: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_energy_train', 'rmse_force_train',
         'rmse_virial_train', 'rmse_charge_train', 'rmse_bec_train', 'rmse_energy_test', 'rmse_force_test',
         'rmse_virial_test', 'rmse_charge_test', 'rmse_bec_test'),
    6: ('generation', 'loss_total', 'loss_l1', 'loss_l2', 'rmse_tensor_train', 'rmse_tensor_test'),
}
_LOSS_KINDS = {10: 'potential', 14: 'charge', 6: 'tensor'}
#: Names in a ``# columns`` header (neppo writes GPUMD's short ones) -> the names of :data:`LOSS_COLUMNS`.
_LOSS_HEADER_NAMES = {'total': 'loss_total', 'L1': 'loss_l1', 'L2': 'loss_l2'}


def _numeric_rows(handle, what: str, hint: str = '') -> tuple[list[list[float]], list[int], list[str]]:
    """Rows of floats (``#`` and blank lines skipped), their line numbers and the ``#`` lines."""
    rows, numbers, comments = [], [], []
    for number, line in enumerate(handle, 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('#'):
            comments.append(stripped)
            continue
        try:
            row = [float(v) for v in stripped.split()]
        except ValueError:
            raise FormatError(f'{what} line {number}: expected numbers, got {stripped[:60]!r}{hint}') from None
        rows.append(row)
        numbers.append(number)
    return rows, numbers, comments


def _loss_kind_of(names) -> str:
    """The kind of a loss.out whose header names its columns (any count of them, e.g. neppo's)."""
    if any(name.startswith('rmse_charge') for name in names):
        return 'charge'
    if any(name.startswith(('rmse_dipole', 'rmse_polarizability', 'rmse_tensor')) for name in names):
        return 'tensor'
    return 'potential' if any(name.startswith('rmse_energy') for name in names) else 'custom'


def read_loss(path, kind: str | None = None) -> dict:
    """``loss.out``: ``{'kind', 'columns', 'data'}`` with ``data`` an (n_rows, n_columns) float array.

    ``kind`` is ``potential`` (10 columns), ``charge`` (qNEP, 14) or ``tensor`` (dipole/polarizability, 6),
    detected from the column count or checked when given. ``#`` lines are skipped; a ``# columns name ...``
    line, if present, names the columns (and allows other counts; ``total``/``L1``/``L2`` are read as
    ``loss_total``/``loss_l1``/``loss_l2``, and a header repeated per training stage is allowed). Every row must
    have the same number of columns: fixed-width fields that ran into each other are reported with their line
    number.
    """
    with open_for_read(path) as handle:
        rows, numbers, comments = _numeric_rows(
            handle, 'loss.out', ' (a value as wide as its fixed-width field runs into the next one)')
    names = None
    for comment in comments:
        words = comment.lstrip('#').split()
        if words and words[0] == 'columns':
            names = tuple(_LOSS_HEADER_NAMES.get(word, word) for word in words[1:])
    if not rows:
        raise FormatError('loss.out: no data rows')
    width = len(rows[0])
    if names is not None:
        if len(names) != width:
            raise FormatError(f'loss.out line {numbers[0]}: {width} columns but the "# columns" header names '
                              f'{len(names)}')
        detected = _LOSS_KINDS.get(width) or _loss_kind_of(names)
    else:
        if width not in LOSS_COLUMNS:
            raise FormatError(f'loss.out line {numbers[0]}: {width} columns; expected 10 (potential), 14 (qNEP) or '
                              '6 (dipole/polarizability) - fields may have run into each other')
        names = LOSS_COLUMNS[width]
        detected = _LOSS_KINDS[width]
    for row, number in zip(rows, numbers):
        if len(row) != width:
            raise FormatError(f'loss.out line {number}: {len(row)} columns instead of {width} (fixed-width fields '
                              'may have run into each other)')
    if kind is not None and kind != detected:
        raise FormatError(f'loss.out: kind {kind!r} expected but the file has {width} columns ({detected})')
    return {'kind': detected, 'columns': list(names), 'data': np.asarray(rows, dtype=float)}


#: Component names of each parity file kind (prediction columns come first, then the same for the target).
PARITY_COMPONENTS = {
    'energy': ('e',),
    'force': ('fx', 'fy', 'fz'),
    'virial': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
    'stress': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
    'dipole': ('x', 'y', 'z'),
    'polarizability': ('xx', 'yy', 'zz', 'xy', 'yz', 'zx'),
}
_SENTINEL_KINDS = ('virial', 'stress', 'dipole', 'polarizability')


def read_parity(path, kind: str) -> dict:
    """A parity file ``<kind>_{train,test}.out`` of ``nep``.

    Returns ``{'kind', 'components', 'prediction', 'target', 'missing', 'legacy_layout'}``: ``prediction`` and
    ``target`` are (n, k) arrays (k = 1 energy, 3 force/dipole, 6 virial/stress/polarizability; units of doc §4.4,
    stress in GPa with positive = compressed); a row whose target holds the "missing" sentinel (any component
    <= -1e5: -1e6 in virial files and in stress files since v4.9.1, -1e6*N/V*160.2 before) has NaN targets and
    ``missing`` True. The pre-v3.7 two-column layout of tensor files (all xx rows, then all yy, ...) is
    recognised and reshaped (``legacy_layout`` True). Row order follows train.xyz only for a single batch.
    """
    if kind not in PARITY_COMPONENTS:
        raise FormatError(f'kind: {kind!r} is not a parity file kind ({", ".join(PARITY_COMPONENTS)})')
    components = PARITY_COMPONENTS[kind]
    k = len(components)
    what = f'{kind} parity file'
    with open_for_read(path) as handle:
        rows, numbers, _ = _numeric_rows(handle, what)
    if not rows:
        raise FormatError(f'{what}: no data rows')
    width = len(rows[0])
    for row, number in zip(rows, numbers):
        if len(row) != width:
            raise FormatError(f'{what} line {number}: {len(row)} columns instead of {width}')
    data = np.asarray(rows, dtype=float)
    legacy = False
    if width == 2 * k:
        prediction, target = data[:, :k].copy(), data[:, k:].copy()
    elif width == 2 and k > 1 and kind != 'force':
        if len(rows) % k:
            raise FormatError(f'{what}: legacy two-column layout needs a multiple of {k} rows, got {len(rows)}')
        n = len(rows) // k
        prediction = data[:, 0].reshape(k, n).T.copy()
        target = data[:, 1].reshape(k, n).T.copy()
        legacy = True
    else:
        raise FormatError(f'{what} line {numbers[0]}: {width} columns; expected {2 * k} (prediction then target)')
    if kind in _SENTINEL_KINDS:
        missing = (target <= MISSING_TARGET_THRESHOLD).any(axis=1)
        target[missing] = np.nan
    else:
        missing = np.zeros(len(target), dtype=bool)
    return {
        'kind': kind,
        'components': list(components),
        'prediction': prediction,
        'target': target,
        'missing': missing,
        'legacy_layout': legacy,
    }


def gpumd_batch_order(energies_per_atom, batch_size: int) -> np.ndarray:
    """Which ``train.xyz`` frame each ``*_train.out`` row belongs to when ``nep`` trains in several batches.

    With ``batch`` < number of frames, ``nep`` (``src/main_nep/structure.cu``, ``reorder``) stable-sorts the frames
    by their single-precision energy per atom and deals them round-robin into ``(N-1)//batch + 1`` batches, the
    first ``N % n_batches`` batches one frame larger; the parity files follow that order. Returns ``order`` with
    row ``i`` = frame ``order[i]`` (the identity for a single batch).
    """
    energies = np.asarray(energies_per_atom, dtype=np.float32)
    n = len(energies)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise FormatError(f'batch: must be >= 1, got {batch_size}')
    if batch_size >= n:
        return np.arange(n)
    n_batches = (n - 1) // batch_size + 1
    by_energy = np.argsort(energies, kind='stable')
    minimal = n // n_batches
    order = []
    for b in range(n_batches):
        size = minimal + 1 if b + minimal * n_batches < n else minimal
        order.extend(int(by_energy[b + n_batches * c]) for c in range(size))
    return np.asarray(order, dtype=np.int64)


def _close(a, b) -> np.ndarray:
    """Equal within what ``%g`` (6 significant digits) of a single-precision value keeps."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b) <= 1e-5 + 2e-5 * np.abs(b)


def match_train_order(energy_targets, energies_per_atom, batch_size: int, prediction: bool = False
                      ) -> tuple[np.ndarray, str]:
    """The frame of each ``energy_train.out`` row, found from the file's own target column.

    Tried in turn: the order ``nep`` uses for this run (:func:`gpumd_batch_order`; ``train.xyz`` order in
    prediction mode or for one batch), the other of the two, then a match by value (older GPUMD shuffled the
    frames at random), which must be unambiguous. Returns ``(order, how)`` with ``how`` ``'train.xyz'``,
    ``'batches'`` or ``'matched'``; raises :class:`FormatError` when the targets do not fit the frames.
    """
    targets = np.asarray(energy_targets, dtype=float).reshape(-1)
    energies = np.asarray(energies_per_atom, dtype=float).reshape(-1)
    n = len(energies)
    if len(targets) != n:
        raise FormatError(f'energy_train.out: {len(targets)} rows but train.xyz has {n} frames')
    identity = np.arange(n)
    batches = gpumd_batch_order(energies, batch_size)
    candidates = [(identity, 'train.xyz'), (batches, 'batches')]
    if not prediction and not np.array_equal(batches, identity):
        candidates.reverse()
    for order, how in candidates:
        if _close(targets, energies[order]).all():
            return (order, 'train.xyz') if np.array_equal(order, identity) else (order, how)
    row_rank = np.argsort(targets, kind='stable')
    frame_rank = np.argsort(energies, kind='stable')
    if _close(targets[row_rank], energies[frame_rank]).all():
        sorted_energies = energies[frame_rank]
        if n < 2 or not _close(sorted_energies[1:], sorted_energies[:-1]).any():
            order = np.empty(n, dtype=np.int64)
            order[row_rank] = frame_rank
            return order, 'matched'
        raise FormatError('energy_train.out: rows are not in train.xyz order nor in GPUMD\'s batch order, and frames '
                          'with equal energies per atom make a match by value ambiguous')
    expected = candidates[0][0]
    bad = int(np.argmin(_close(targets, energies[expected])))
    raise FormatError(f'energy_train.out: the reference energies do not belong to the training set (row {bad + 1}: '
                      f'{targets[bad]:g} eV/atom; frame {int(expected[bad])} has {energies[expected][bad]:g})')


def restore_train_order(parity: dict, order, natoms) -> dict:
    """A :func:`read_parity` result with rows back in ``train.xyz`` order (``order`` from :func:`match_train_order`).

    Per-structure files have one row per frame; per-atom files (forces, per-atom tensors) one block of
    ``natoms`` rows per frame, in the same frame order.
    """
    order = np.asarray(order, dtype=np.int64)
    natoms = np.asarray(natoms, dtype=np.int64)
    rows = len(parity['prediction'])
    if rows == len(order):
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        index = inverse
    elif rows == int(natoms.sum()):
        internal_offsets = np.concatenate([[0], np.cumsum(natoms[order])])
        block_of_frame = np.empty_like(order)
        block_of_frame[order] = np.arange(len(order))
        index = np.concatenate([np.arange(internal_offsets[b], internal_offsets[b + 1])
                                for b in block_of_frame]) if len(order) else np.zeros(0, dtype=np.int64)
    else:
        raise FormatError(f'{parity["kind"]} parity file: {rows} rows, neither one per frame ({len(order)}) nor one '
                          f'per atom ({int(natoms.sum())})')
    out = dict(parity)
    for key in ('prediction', 'target', 'missing'):
        out[key] = np.asarray(parity[key])[index]
    return out


#: Unit and factor that turn each parity kind's RMSE into the unit it is reported in.
PARITY_RMSE_UNITS = {
    'energy': ('meV_per_atom', 1000.0),
    'force': ('meV_per_A', 1000.0),
    'virial': ('meV_per_atom', 1000.0),
    'stress': ('GPa', 1.0),
    'dipole': ('per_atom', 1.0),
    'polarizability': ('per_atom', 1.0),
}


def parity_rmse(parity: dict) -> tuple[float | None, int]:
    """RMSE over every component of the rows with a target, in the unit of :data:`PARITY_RMSE_UNITS`.

    Returns ``(rmse, rows_used)``; rows whose target is missing (NaN, the -1e6 sentinel) are left out, and
    ``rmse`` is None when no row has a target.
    """
    prediction = np.asarray(parity['prediction'], dtype=float)
    target = np.asarray(parity['target'], dtype=float)
    keep = np.isfinite(target).all(axis=1)
    if not keep.any():
        return None, 0
    factor = PARITY_RMSE_UNITS[parity['kind']][1]
    diff = prediction[keep] - target[keep]
    return float(np.sqrt(np.mean(diff ** 2)) * factor), int(keep.sum())


_NEP_FLOAT = r'[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)'
_NEP_TIMES = re.compile(rf'Time used for (initialization|training|predicting)\s*=\s*({_NEP_FLOAT})\s*s', re.IGNORECASE)
_NEP_COUNTS = {
    'num_devices': re.compile(r'Number of devices\s*=\s*(\d+)'),
    'num_batches': re.compile(r'Number of batches\s*=\s*(\d+)'),
}
_NEP_BATCH_CHANGE = re.compile(r'changed the batch_size from\s*(\d+)\s*to\s*(\d+)')


def read_nep_stdout(text) -> dict:
    """What ``nep`` prints (stdout, optionally with stderr appended), doc §1.

    Returns ``version`` (banner), ``time_initialization_s``, ``time_training_s``, ``time_predicting_s`` (None
    when not printed), ``num_devices``, ``num_batches``, ``batch_size`` (the size ``nep`` evened the batches
    to, when it said so), ``last_generation`` (first column of the last progress row under the ``Step
    Total-Loss`` header), ``progress_rows``, ``started_training``/``started_predicting``, ``finished``
    (``Finished running nep.``) and ``errors`` (``Input Error:`` blocks: ``kind``, ``file``, ``line``,
    ``text``), the last two read as for ``gpumd``.
    """
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    common = read_gpumd_stdout(text)
    result = {
        'version': common['version'],
        'time_initialization_s': None,
        'time_training_s': None,
        'time_predicting_s': None,
        'num_devices': None,
        'num_batches': None,
        'batch_size': None,
        'last_generation': None,
        'progress_rows': 0,
        'started_training': 'Started training.' in text,
        'started_predicting': 'Started predicting.' in text,
        'finished': 'Finished running nep.' in text,
        'errors': common['errors'],
    }
    in_progress = False
    for line in text.splitlines():
        if (match := _NEP_TIMES.search(line)) is not None:
            result[f'time_{match.group(1).lower()}_s'] = float(match.group(2))
            in_progress = False
            continue
        for key, pattern in _NEP_COUNTS.items():
            if (match := pattern.search(line)) is not None and result[key] is None:
                result[key] = int(match.group(1))
        if (match := _NEP_BATCH_CHANGE.search(line)) is not None:
            result['batch_size'] = int(match.group(2))
        tokens = line.split()
        if tokens[:2] == ['Step', 'Total-Loss']:
            in_progress = True
            continue
        if in_progress and tokens and _INT_RE.match(tokens[0]) and len(tokens) in LOSS_COLUMNS:
            result['last_generation'] = int(tokens[0])
            result['progress_rows'] += 1
    return result


def read_parity_set(texts: dict, split: str = 'train', *, natoms=None, energies_per_atom=None, forces=None,
                    batch_size: int | None = None, prediction: bool = False) -> dict:
    """Every parity file of one split (``'train'`` or ``'test'``), rows in the order of ``train.xyz``/``test.xyz``.

    ``texts`` maps file names (``energy_train.out`` ...) to their text or path; kinds without a file are skipped.
    With the frames' ``natoms`` and ``energies_per_atom`` (and optionally ``forces``, all in file order) the row
    counts are checked, the ``*_train.out`` order is recovered from the energy targets (:func:`match_train_order`;
    ``batch_size`` is the ``batch`` of ``nep.in``) and restored, and the force targets are compared with the
    frames' forces, so rows can never be paired with the wrong frame silently. ``*_test.out`` always follow
    ``test.xyz``. Returns ``{'kinds': {kind: parity}, 'order': how}`` (``how`` as in :func:`match_train_order`,
    ``'as written'`` without frame data); inconsistencies raise :class:`FormatError`.
    """
    if split not in ('train', 'test'):
        raise FormatError(f'split: expected "train" or "test", got {split!r}')
    kinds = {}
    for kind in PARITY_COMPONENTS:
        name = f'{kind}_{split}.out'
        if texts.get(name) is not None:
            source = texts[name]
            kinds[kind] = read_parity(io.StringIO(source) if isinstance(source, str) and '\n' in source else source,
                                      kind)
    how = 'as written'
    if natoms is None or not kinds:
        return {'kinds': kinds, 'order': how}
    natoms = np.asarray(natoms, dtype=np.int64)
    n_frames = len(natoms)
    if split == 'train' and energies_per_atom is not None:
        if 'energy' in kinds:
            order, how = match_train_order(kinds['energy']['target'][:, 0], energies_per_atom, batch_size or n_frames,
                                           prediction)
        else:
            order = gpumd_batch_order(energies_per_atom, batch_size or n_frames) if not prediction else \
                np.arange(n_frames)
            how = 'train.xyz' if np.array_equal(order, np.arange(n_frames)) else 'batches'
    else:
        order, how = np.arange(n_frames), f'{split}.xyz'
    for kind, parity in list(kinds.items()):
        rows = len(parity['prediction'])
        per_atom = kind == 'force' or (rows != n_frames and rows == int(natoms.sum()))
        expected = int(natoms.sum()) if per_atom else n_frames
        if rows != expected:
            raise FormatError(f'{kind}_{split}.out: {rows} rows, expected {expected} '
                              f'(one per {"atom" if per_atom else "frame"} of {split}.xyz)')
        kinds[kind] = restore_train_order(parity, order, natoms)
    if forces is not None and 'force' in kinds:
        reference = np.asarray(forces, dtype=float).reshape(-1, 3)
        close = _close(kinds['force']['target'], reference) | ~np.isfinite(reference)
        if not close.all():
            row = int(np.argmin(close.all(axis=1)))
            raise FormatError(f'force_{split}.out: the reference forces do not match {split}.xyz (atom row {row + 1} '
                              f'after restoring the {split}.xyz order)')
    return {'kinds': kinds, 'order': how}
