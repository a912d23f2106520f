"""Committee uncertainty and trust-window selection, plain numpy (no AiiDA, no calorine).

Uncertainty of a frame: the largest per-atom force standard deviation across the committee, DP-GEN's
``max_devi_f``. For atom ``i`` with forces ``F_k,i`` from models ``k = 1..M`` and their mean
``<F_i>``::

    sigma_i = sqrt( (1/M) sum_k |F_k,i - <F_i>|^2 )        (population std of the vector, one number)
    deviation = max_i sigma_i                                (eV/Å)

The maximum, not the mean, because one badly described atom (a defect, a close contact) is what makes a
frame worth labelling, and it drowns in the mean of a large cell.

Selection (:func:`select_in_trust_window`): frames with ``lower <= deviation < upper`` are candidates.
Below ``lower`` the committee agrees (nothing to learn); at or above ``upper`` the frame is most likely
unphysical (a walker that left the sensible region), labelling it wastes DFT time - the usual DP-GEN trust
window. Within the window the most uncertain frame is taken first, then greedy farthest-point sampling in a
cheap structural descriptor picks frames unlike those already chosen, so that consecutive near-identical
frames of one MD walker do not fill the budget. Frames closer than ``min_separation`` (descriptor distance)
to a chosen frame are skipped as near-duplicates.

The default descriptor (:func:`structure_descriptor`) is model-independent: per species pair, the
Gaussian-smeared histogram of interatomic distances up to ``r_max`` per atom of the frame (so a supercell of
the same structure has the same descriptor), on a fixed grid; the distance between two descriptors is the L2
norm of the difference of these functions (integrated over ``r``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    'DEFAULT_MIN_SEPARATION',
    'TrustWindowSelection',
    'descriptor_distances',
    'max_force_deviation',
    'per_atom_force_deviation',
    'select_in_trust_window',
    'structure_descriptor',
    'structure_descriptors',
]

#: Descriptor distance under which two frames count as near-duplicates (see :func:`structure_descriptor`).
#: Measured on an 8-atom rocksalt PbTe cell with the default grid (tests/nep/test_committee.py checks the first
#: two): two independent 0.01 Å rattles are <= 0.01 apart, 0.05 Å rattles 0.13-0.22, frames 10 fs apart in a
#: 600 K Langevin run 0.05-0.12, a 2 % strain 2.6; a supercell of a frame is at distance 0.
DEFAULT_MIN_SEPARATION = 0.03

#: Descriptor grid: distances up to ``r_max`` (Å) on a grid of ``spacing`` (Å), smeared by ``width`` (Å).
DESCRIPTOR_DEFAULTS = {'r_max': 6.0, 'spacing': 0.05, 'width': 0.2}


# -------------------------------------------------------------------------------- uncertainty


def per_atom_force_deviation(forces) -> np.ndarray:
    """``sigma_i`` for every atom from forces of shape (n_models, natoms, 3); NaN if a force is not finite."""
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[2] != 3:
        raise ValueError(f'forces: expected shape (n_models, natoms, 3), got {forces.shape}')
    if forces.shape[0] < 2:
        raise ValueError(f'forces: a committee needs at least 2 models, got {forces.shape[0]}')
    with np.errstate(all='ignore'):
        mean = forces.mean(axis=0)
        sigma = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=2), axis=0))
    sigma[~np.all(np.isfinite(forces), axis=(0, 2))] = np.nan
    return sigma


def max_force_deviation(forces) -> float:
    """Largest ``sigma_i`` of a frame (eV/Å); NaN if any force is not finite, 0 for a frame without atoms."""
    sigma = per_atom_force_deviation(forces)
    if sigma.size == 0:
        return 0.0
    if not np.all(np.isfinite(sigma)):
        return math.nan
    return float(sigma.max())


# -------------------------------------------------------------------------------- descriptors


def structure_descriptor(symbols: Sequence[str], cell, positions, pbc, species: Sequence[str], *,
                         r_max: float = DESCRIPTOR_DEFAULTS['r_max'], spacing: float = DESCRIPTOR_DEFAULTS['spacing'],
                         width: float = DESCRIPTOR_DEFAULTS['width']) -> np.ndarray:
    """Concatenated per-pair distance histograms of one frame (pairs ``(a, b)`` with ``a <= b`` in ``species``
    order), smeared with Gaussians of ``width``, divided by the number of atoms and scaled by
    ``sqrt(spacing)`` so that the Euclidean distance of two descriptors is the L2 distance of the functions.

    Periodic images count (ASE's neighbour list), so small cells are described correctly.
    """
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    species = [str(s) for s in species]
    extra = sorted(set(symbols) - set(species))
    if extra:
        raise ValueError(f'symbols: {extra} are not in the species {species}')
    grid = np.arange(0.0, r_max + 3 * width + spacing / 2, spacing)
    pairs = [(a, b) for a in range(len(species)) for b in range(a, len(species))]
    natoms = len(symbols)
    histogram = np.zeros((len(pairs), len(grid)))
    if natoms:
        atoms = Atoms(list(symbols), positions=np.asarray(positions, dtype=float), cell=np.asarray(cell, dtype=float),
                      pbc=tuple(bool(p) for p in np.broadcast_to(pbc, (3,))))
        first, second, distance = neighbor_list('ijd', atoms, r_max)
        types = np.array([species.index(s) for s in symbols], dtype=int)
        ta, tb = np.minimum(types[first], types[second]), np.maximum(types[first], types[second])
        pair_index = {pair: n for n, pair in enumerate(pairs)}
        norm = 1.0 / (math.sqrt(2 * math.pi) * width) / natoms / 2  # each pair appears as i-j and j-i
        for n, pair in enumerate(pairs):
            mask = (ta == pair[0]) & (tb == pair[1])
            if not mask.any():
                continue
            d = distance[mask][:, None]
            histogram[pair_index[pair]] = norm * np.exp(-0.5 * ((grid[None, :] - d) / width) ** 2).sum(axis=0)
    return histogram.ravel() * math.sqrt(spacing)


def structure_descriptors(frames, species: Sequence[str], **options) -> np.ndarray:
    """:func:`structure_descriptor` of every frame (``Frame`` objects), shape (n_frames, dim)."""
    rows = [structure_descriptor(f.symbols, f.cell, f.positions, f.pbc, species, **options) for f in frames]
    if not rows:
        return np.zeros((0, 0))
    return np.array(rows)


def descriptor_distances(descriptors, index: int) -> np.ndarray:
    """Euclidean distance of every descriptor row to row ``index``."""
    descriptors = np.asarray(descriptors, dtype=float)
    return np.sqrt(np.sum((descriptors - descriptors[index]) ** 2, axis=1))


# -------------------------------------------------------------------------------- selection


@dataclasses.dataclass
class TrustWindowSelection:
    """What :func:`select_in_trust_window` chose and why.

    ``indices``: chosen frames in the order they were picked; ``reasons``: one sentence per chosen frame;
    ``rejected``: for every other frame, why not; ``counts``: ``below``, ``in_window``, ``above`` (incl. non-finite
    deviations), ``not_finite``, ``near_duplicates``, ``over_budget``, ``selected``.
    """

    indices: list[int]
    reasons: list[str]
    rejected: dict[int, str]
    counts: dict[str, int]

    def to_dict(self) -> dict:
        """JSON-friendly (string keys), for an AiiDA ``Dict``."""
        return {
            'indices': list(self.indices), 'reasons': list(self.reasons),
            'rejected': {str(k): v for k, v in sorted(self.rejected.items())}, 'counts': dict(self.counts),
        }


def _number(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{name}: must be a number, got {value!r}') from None
    if not math.isfinite(value):
        raise ValueError(f'{name}: must be finite, got {value!r}')
    return value


def select_in_trust_window(deviations, lower: float, upper: float, budget: int, descriptors=None,
                           min_separation: float = DEFAULT_MIN_SEPARATION) -> TrustWindowSelection:
    """Choose at most ``budget`` frames with ``lower <= deviation < upper``: the most uncertain first, then
    greedy farthest-point sampling on ``descriptors`` (rows = frames), skipping near-duplicates.

    :param deviations: one committee deviation per frame (eV/Å); NaN counts as above the window.
    :param descriptors: (n_frames, dim) array, or ``None`` to take the window's frames by decreasing deviation
        (no diversity criterion).
    :param min_separation: frames at a descriptor distance ``<= min_separation`` from a chosen frame are not
        taken (exact duplicates never are, even with 0).

    Farthest-point step: among the remaining window frames, the one whose distance to the nearest chosen
    frame is largest; equal distances go to the larger deviation, then the smaller index.
    """
    deviations = np.asarray(deviations, dtype=float).ravel()
    lower, upper = _number('lower', lower), _number('upper', upper)
    if lower < 0:
        raise ValueError(f'lower: must be >= 0, got {lower}')
    if not upper > lower:
        raise ValueError(f'upper: must be > lower ({lower}), got {upper}')
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f'budget: must be an integer >= 1, got {budget!r}')
    min_separation = _number('min_separation', min_separation)
    if min_separation < 0:
        raise ValueError(f'min_separation: must be >= 0, got {min_separation}')
    if descriptors is not None:
        descriptors = np.asarray(descriptors, dtype=float)
        if descriptors.ndim != 2 or len(descriptors) != len(deviations):
            raise ValueError(f'descriptors: expected shape ({len(deviations)}, dim), got {descriptors.shape}')
        if not np.all(np.isfinite(descriptors)):
            raise ValueError('descriptors: not all finite')

    rejected: dict[int, str] = {}
    window: list[int] = []
    counts = {'below': 0, 'in_window': 0, 'above': 0, 'not_finite': 0}
    for i, value in enumerate(deviations):
        if not math.isfinite(value):
            counts['above'] += 1
            counts['not_finite'] += 1
            rejected[i] = 'deviation is not finite (the committee failed on the frame)'
        elif value < lower:
            counts['below'] += 1
            rejected[i] = f'deviation {value:.4g} below the window [{lower:g}, {upper:g}): the committee agrees'
        elif value >= upper:
            counts['above'] += 1
            rejected[i] = f'deviation {value:.4g} at or above the window [{lower:g}, {upper:g}): likely unphysical'
        else:
            counts['in_window'] += 1
            window.append(i)

    # most uncertain first; equal deviations by index
    order = sorted(window, key=lambda i: (-deviations[i], i))
    indices: list[int] = []
    reasons: list[str] = []
    nearest = {}
    if order:
        seed = order[0]
        indices.append(seed)
        reasons.append(f'highest deviation in the window: {deviations[seed]:.4g} eV/Å')
        if descriptors is None:
            for i in order[1:budget]:
                indices.append(i)
                reasons.append(f'deviation {deviations[i]:.4g} eV/Å, rank {len(indices)} in the window')
        else:
            remaining = [i for i in order if i != seed]
            distance_to_seed = descriptor_distances(descriptors, seed)
            nearest = {i: (float(distance_to_seed[i]), seed) for i in remaining}
            while remaining and len(indices) < budget:
                eligible = [i for i in remaining if nearest[i][0] > min_separation]
                if not eligible:
                    break
                pick = min(eligible, key=lambda i: (-nearest[i][0], -deviations[i], i))
                indices.append(pick)
                reasons.append(f'farthest from the chosen frames: descriptor distance {nearest[pick][0]:.4g} to frame '
                               f'{nearest[pick][1]}, deviation {deviations[pick]:.4g} eV/Å')
                remaining.remove(pick)
                new = descriptor_distances(descriptors, pick)
                for i in remaining:
                    if new[i] < nearest[i][0]:
                        nearest[i] = (float(new[i]), pick)

    counts.update(near_duplicates=0, over_budget=0, selected=len(indices))
    chosen = set(indices)
    for i in window:
        if i in chosen:
            continue
        if i in nearest and nearest[i][0] <= min_separation:
            counts['near_duplicates'] += 1
            rejected[i] = (f'near-duplicate of chosen frame {nearest[i][1]} (descriptor distance '
                           f'{nearest[i][0]:.4g} <= min_separation {min_separation:g})')
        else:
            counts['over_budget'] += 1
            rejected[i] = f'in the window (deviation {deviations[i]:.4g}) but the budget of {budget} was used'
    return TrustWindowSelection(indices=indices, reasons=reasons, rejected=rejected, counts=counts)
