"""MaxVol active set, extrapolation grades and candidate selection the way mlip-2 does them.

Pure numpy: no AiiDA, no motep. The rows handed in here are what mlip-2 selects on: per
configuration the gradient of its energy with respect to the potential's parameters, divided by
its atom count (see :func:`aiida_mlcampaign.mtp.engine.energy_jacobians`); nothing below depends
on that meaning, any ``(n_rows, n_parameters)`` matrix works.

Definitions (shared ``docs/mtp-formats.md`` section 5):

* Active set: ``n`` rows (``n`` = number of columns) forming the square matrix ``A``. It starts as
  ``init_threshold * I``; those rows belong to no configuration ("regulariser" rows, label -1).
  Candidates are offered; while some candidate row ``b`` has a coefficient vector ``c`` with
  ``c @ A = b`` (``c = b @ inv(A)``) whose largest entry ``|c_j|`` exceeds the swap threshold, the
  candidate with the largest ``|c_j|`` overall replaces active row ``j``. Each swap multiplies
  ``|det A|`` by ``|c_j| > 1``, so the loop ends. Because of the regulariser the method works with
  fewer rows than parameters and with rank-deficient data (motep 0.2.0's configuration-mode grade
  does not, section 7.4/7.5): directions no configuration spans stay covered by a tiny row and
  give a huge grade to a configuration that moves along them.
* Grade: ``gamma = max_j |c_j|``. Rows of the matrix that built the active set get
  ``gamma <= swap_threshold`` (so ``<= 1`` up to the default ``1.0000001``), active rows exactly 1.

The replaced row of a swap goes back into the candidate pool (a regulariser row is dropped), so the
result is a local maximum-volume choice over everything offered, not only over the newcomers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    'ActiveSet',
    'GradeSelection',
    'grades',
    'maxvol',
    'min_distance_filter',
    'min_interatomic_distance',
    'select_add',
    'select_by_grade',
]

REGULARISER = -1
"""Label of an active row that still holds the ``init_threshold * I`` row (no configuration)."""

DEFAULT_INIT_THRESHOLD = 1e-5
DEFAULT_SWAP_THRESHOLD = 1.0000001


@dataclasses.dataclass
class ActiveSet:
    """Result of :func:`maxvol`.

    ``matrix`` is ``A`` (``n x n``), ``inverse`` its inverse, ``indices[j]`` the label of the row
    in position ``j`` (the row index in the matrix given to :func:`maxvol`, or the label passed in
    ``labels``), :data:`REGULARISER` (-1) where the initial ``init_threshold * I`` row was never
    replaced. ``swaps`` counts the swaps of the last :func:`maxvol` call.
    """

    matrix: np.ndarray
    inverse: np.ndarray
    indices: np.ndarray
    init_threshold: float = DEFAULT_INIT_THRESHOLD
    swaps: int = 0

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def selected(self) -> np.ndarray:
        """Labels of the active rows that hold a configuration, ascending."""
        return np.sort(self.indices[self.indices != REGULARISER])

    @property
    def n_regularisers(self) -> int:
        return int(np.count_nonzero(self.indices == REGULARISER))

    def grades(self, rows) -> np.ndarray:
        """Extrapolation grade of each row, see :func:`grades`."""
        return grades(self.inverse, rows)

    def copy(self) -> ActiveSet:
        return dataclasses.replace(
            self, matrix=self.matrix.copy(), inverse=self.inverse.copy(), indices=self.indices.copy()
        )


def _as_rows(rows, n_columns: int | None = None, name: str = 'rows') -> np.ndarray:
    array = np.asarray(rows, dtype=float)
    if array.ndim == 1 and n_columns is not None and array.size == n_columns:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f'{name}: expected a 2-d array (rows x parameters), got shape {array.shape}')
    if n_columns is not None and array.shape[1] != n_columns:
        raise ValueError(f'{name}: expected {n_columns} columns, got {array.shape[1]}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name}: contains non-finite numbers')
    return array


def grades(A_inverse, rows) -> np.ndarray:
    """``gamma_i = max_j |(rows @ A_inverse)_ij|`` for every row (mlip-2's MV_grade).

    ``c = b @ inv(A)`` is the solution of ``c @ A = b``: the coefficients that express ``b`` as a
    combination of the active rows.
    """
    A_inverse = np.asarray(A_inverse, dtype=float)
    if A_inverse.ndim != 2 or A_inverse.shape[0] != A_inverse.shape[1]:
        raise ValueError(f'A_inverse: expected a square matrix, got shape {A_inverse.shape}')
    rows = _as_rows(rows, A_inverse.shape[0])
    if rows.shape[0] == 0:
        return np.zeros(0)
    return np.max(np.abs(rows @ A_inverse), axis=1)


def maxvol(
    matrix,
    init: ActiveSet | None = None,
    init_threshold: float = DEFAULT_INIT_THRESHOLD,
    swap_threshold: float = DEFAULT_SWAP_THRESHOLD,
    max_swaps: int | None = None,
    labels: Sequence[int] | None = None,
) -> ActiveSet:
    """Offer the rows of ``matrix`` to an active set and swap until no grade exceeds the threshold.

    :param matrix: ``(m, n)`` candidate rows; ``n`` is the number of parameters (columns).
    :param init: start from this active set (not modified; a copy is updated). ``None`` starts from
        ``init_threshold * I`` with every row a regulariser.
    :param init_threshold: diagonal of the initial matrix (ignored when ``init`` is given).
    :param swap_threshold: a candidate enters only if its grade is above this (> 1). The default
        is mlip-2's near-1 value for building an active set; ``mlp select-add`` uses 1.1.
    :param max_swaps: stop after this many swaps (``None``: until converged).
    :param labels: label stored for each row of ``matrix`` (default ``0..m-1``); rows whose label
        is already active in ``init`` are not offered again.
    :returns: the final :class:`ActiveSet`; its ``indices`` are labels, -1 for regulariser rows.
    """
    if not swap_threshold > 1.0:
        raise ValueError(f'swap_threshold: must be > 1, got {swap_threshold}')
    if max_swaps is not None and max_swaps < 0:
        raise ValueError(f'max_swaps: must be >= 0, got {max_swaps}')

    if init is not None:
        state = init.copy()
        n = state.size
    else:
        if not init_threshold > 0:
            raise ValueError(f'init_threshold: must be positive, got {init_threshold}')
        n = np.asarray(matrix).shape[-1] if np.asarray(matrix).ndim == 2 else None
        if n is None:
            raise ValueError(f'matrix: expected a 2-d array, got shape {np.asarray(matrix).shape}')
        state = ActiveSet(
            matrix=init_threshold * np.eye(n),
            inverse=np.eye(n) / init_threshold,
            indices=np.full(n, REGULARISER, dtype=int),
            init_threshold=float(init_threshold),
        )
    rows = _as_rows(matrix, n, 'matrix')
    m = rows.shape[0]
    labels = np.arange(m) if labels is None else np.asarray(labels, dtype=int)
    if labels.shape != (m,):
        raise ValueError(f'labels: expected {m} labels, got shape {labels.shape}')
    if np.any(labels < 0):
        raise ValueError('labels: must be >= 0 (-1 marks regulariser rows)')

    offered = ~np.isin(labels, state.indices)
    pool = rows[offered].copy()
    pool_labels = labels[offered].copy()
    A, A_inv, active = state.matrix, state.inverse, state.indices
    C = pool @ A_inv

    swaps = 0
    refresh_every = max(n, 16)  # recompute inv(A) now and then against round-off drift
    while pool.shape[0] and (max_swaps is None or swaps < max_swaps):
        i, j = np.unravel_index(np.argmax(np.abs(C)), C.shape)
        c = C[i].copy()
        if not abs(c[j]) > swap_threshold:
            break
        # Sherman-Morrison for A <- A + e_j (b - a_j): since a_j @ inv(A) = e_j,
        # inv(A) <- inv(A) - inv(A)[:, j] (c - e_j) / c_j, and every c of the pool likewise.
        row = c.copy()
        row[j] -= 1.0
        A_inv -= np.outer(A_inv[:, j], row) / c[j]
        C -= np.outer(C[:, j], row) / c[j]
        old_row, old_label = A[j].copy(), int(active[j])
        A[j] = pool[i]
        active[j] = pool_labels[i]
        swaps += 1
        if swaps % refresh_every == 0:
            A_inv[...] = np.linalg.inv(A)
        if old_label == REGULARISER:
            keep = np.arange(pool.shape[0]) != i
            pool, pool_labels, C = pool[keep], pool_labels[keep], C[keep]
        else:
            pool[i], pool_labels[i] = old_row, old_label
        if swaps % refresh_every == 0:
            C = pool @ A_inv
        elif old_label != REGULARISER:
            C[i] = old_row @ A_inv

    state.inverse = np.linalg.inv(A)
    state.swaps = swaps
    return state


def select_add(
    train_rows,
    candidate_rows,
    select_threshold: float = 1.1,
    budget: int | None = None,
    init_threshold: float = DEFAULT_INIT_THRESHOLD,
) -> np.ndarray:
    """What ``mlp select-add`` does: which candidates enlarge the training set's active set.

    1. Build the active set from ``train_rows`` (regulariser start, swap threshold
       :data:`DEFAULT_SWAP_THRESHOLD`).
    2. Offer the candidates together with the non-active training rows and swap with
       ``select_threshold`` (mlip-2's ``--select-threshold``, default 1.1).
    3. The candidates that end in the final active set are the selection. A candidate identical
       to one already selected has grade 1 against it and is never taken twice.

    With ``budget`` only the ``budget`` selected candidates with the highest grade against the
    *training* active set (step 1) are kept. The result is ordered by that grade, highest first
    (ties by index), and holds indices into ``candidate_rows``.
    """
    if budget is not None and budget < 0:
        raise ValueError(f'budget: must be >= 0, got {budget}')
    train = np.asarray(train_rows, dtype=float)
    candidates = np.asarray(candidate_rows, dtype=float)
    if candidates.ndim != 2:
        raise ValueError(f'candidate_rows: expected a 2-d array, got shape {candidates.shape}')
    n = candidates.shape[1]
    if train.size == 0:
        train = np.zeros((0, n))
    train = _as_rows(train, n, 'train_rows')
    candidates = _as_rows(candidates, n, 'candidate_rows')
    n_train = train.shape[0]

    base = maxvol(train, init_threshold=init_threshold)
    final = maxvol(
        np.vstack([train, candidates]),
        init=base,
        swap_threshold=select_threshold,
        labels=np.arange(n_train + candidates.shape[0]),
    )
    chosen = final.indices[final.indices >= n_train] - n_train
    if chosen.size == 0:
        return np.zeros(0, dtype=int)
    gamma = base.grades(candidates[chosen])
    order = np.lexsort((chosen, -gamma))
    chosen = chosen[order]
    if budget is not None:
        chosen = chosen[:budget]
    return chosen.astype(int)


class GradeSelection(NamedTuple):
    """Masks over a sequence of grades (see :func:`select_by_grade`)."""

    selected: np.ndarray
    """``gamma > select``: frames mlip-2 would append to ``select:save-selected``."""
    breaking: np.ndarray
    """``gamma > break_``: frames at which mlip-2 stops the run (exit code 8 from LAMMPS)."""
    reliable: np.ndarray
    """``gamma <= select``: frames the potential interpolates."""
    first_break: int | None
    """Index of the first breaking frame, ``None`` if there is none."""
    selected_until_break: np.ndarray
    """``selected`` restricted to frames up to and including ``first_break`` (time-ordered input)."""


def select_by_grade(grades, select: float = 2.1, break_: float = 10.0) -> GradeSelection:
    """Classify frames by grade the way mlip-2's selection during MD does (doc section 5).

    A frame with ``gamma > select`` is saved as a candidate; a frame with ``gamma > break_`` is
    *also* saved (mlip-2 saves before it checks the break threshold) and then the walker stops.
    So ``breaking`` is a subset of ``selected``. When ``grades`` is a trajectory in time order,
    ``selected_until_break`` is what a real mlip-2 run would have written: nothing after the first
    breaking frame exists. ``break_ = 0`` or ``inf`` disables breaking (mlip-2 treats 0 as "off").
    """
    gamma = np.asarray(grades, dtype=float).reshape(-1)
    if np.any(np.isnan(gamma)):
        raise ValueError('grades: contains NaN')
    if not select >= 0:
        raise ValueError(f'select: must be >= 0, got {select}')
    if break_ and break_ < select:
        raise ValueError(f'break_ ({break_}) must not be below select ({select})')
    selected = gamma > select
    breaking = gamma > break_ if break_ else np.zeros_like(selected)
    hits = np.flatnonzero(breaking)
    first_break = int(hits[0]) if hits.size else None
    until = selected.copy()
    if first_break is not None:
        until[first_break + 1:] = False
    return GradeSelection(selected, breaking, ~selected, first_break, until)


# ------------------------------------------------------------------------------------ distances


def min_interatomic_distance(cell, positions, pbc=(True, True, True)) -> float:
    """Shortest distance between two atoms, periodic images (and an atom's own images) included.

    Image ranges are derived from the interplanar spacings, so skewed cells are handled exactly.
    Returns ``inf`` for a single atom without periodicity.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    natoms = positions.shape[0]
    if natoms == 0:
        return float('inf')

    # Upper bound for the answer: any in-cell pair, or any periodic lattice vector (self image).
    bound = np.inf
    if natoms > 1:
        bound = float(np.linalg.norm(positions[1] - positions[0]))
    for k in range(3):
        if pbc[k]:
            bound = min(bound, float(np.linalg.norm(cell[k])))
    if not np.isfinite(bound):
        return float('inf')

    ranges = []
    if np.any(pbc):
        volume = abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
        if volume < 1e-12:
            raise ValueError('cell: periodic directions need a non-degenerate cell')
        fractional = np.linalg.solve(cell.T, positions.T).T
        fractional[:, pbc] -= np.floor(fractional[:, pbc])  # wrap into the cell
        positions = fractional @ cell
    for k in range(3):
        if pbc[k]:
            spacing = volume / float(np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])))
            reach = int(np.ceil(bound / spacing)) + 1
            ranges.append(np.arange(-reach, reach + 1))
        else:
            ranges.append(np.zeros(1, dtype=int))

    best = bound
    diff = positions[None, :, :] - positions[:, None, :]  # r_j - r_i
    for n0 in ranges[0]:
        for n1 in ranges[1]:
            for n2 in ranges[2]:
                shift = n0 * cell[0] + n1 * cell[1] + n2 * cell[2]
                distances = np.linalg.norm(diff + shift, axis=-1)
                if n0 == 0 and n1 == 0 and n2 == 0:
                    np.fill_diagonal(distances, np.inf)
                best = min(best, float(distances.min()))
    return best


def _structure_min_distance(structure) -> float:
    """Duck-typed: ``ase.Atoms`` (``get_cell``/``get_positions``/``pbc``) or a Frame-like object."""
    if hasattr(structure, 'get_positions'):
        return min_interatomic_distance(
            np.asarray(structure.get_cell()), structure.get_positions(), structure.get_pbc()
        )
    return min_interatomic_distance(structure.cell, structure.positions, structure.pbc)


def min_distance_filter(structures_or_distances, min_distance: float) -> np.ndarray:
    """Boolean mask: ``True`` where the shortest interatomic distance is ``>= min_distance``.

    Accepts a sequence of structures (``ase.Atoms`` or objects with ``cell``, ``positions`` and
    ``pbc`` such as :class:`~aiida_mlcampaign.formats.frames.Frame`) or an array of precomputed
    shortest distances (one per structure). Use it to drop exploration frames with unphysically
    close atoms before they are sent to DFT.
    """
    items = structures_or_distances
    if isinstance(items, np.ndarray) or (
        len(items) and all(isinstance(x, (int, float, np.integer, np.floating)) for x in items)
    ):
        distances = np.asarray(items, dtype=float).reshape(-1)
    else:
        distances = np.array([_structure_min_distance(s) for s in items], dtype=float)
    return distances >= min_distance
