"""Structure variants for training pools: rattling, strain, supercells, and distance checks.

Pure ASE/numpy; no AiiDA import. Every function returns a new ``ase.Atoms`` and leaves its input
untouched. Validation errors are ``ValueError`` whose message starts with the name of the field at fault.

Strain convention: a strain ``eps`` deforms every lattice vector and every Cartesian position as
``v -> (I + eps) v``. ASE stores lattice vectors as the rows of ``cell``, so the new cell is
``cell @ (I + eps).T`` and the volume scales by ``det(I + eps)``. A 6-vector is read in Voigt order
``(xx, yy, zz, yz, xz, xy)`` with *engineering* shear components (``gamma_yz = 2 eps_yz``), the
convention of ``ase.constraints.voigt_6_to_full_3x3_strain``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ase import Atoms
from ase.build import make_supercell
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

__all__ = [
    'rattle',
    'species_rattle_amplitudes',
    'nearest_neighbour_distances',
    'check_per_species',
    'strain',
    'strain_matrix',
    'random_strains',
    'supercell',
    'minimum_distance',
    'closest_pair',
    'check_structure',
]


def _check_atoms(field: str, atoms) -> None:
    if not isinstance(atoms, Atoms):
        raise ValueError(f'{field}: expected an ase.Atoms, got {type(atoms).__name__}')


def _check_seed(field: str, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f'{field}: expected a non-negative integer, got {seed!r}')
    return int(seed)


def _check_real(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'{field}: expected a real number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{field}: must be finite, got {value}')
    return value


def rattle(atoms: Atoms, stdev, seed: int) -> Atoms:
    """Copy of ``atoms`` with independent Gaussian displacements N(0, stdev^2) on every Cartesian component.

    ``stdev`` (Å) is one number for every atom, or a sequence of ``len(atoms)`` numbers, one per atom
    (see :func:`species_rattle_amplitudes` for an amplitude per species). Deterministic per ``seed``
    (``numpy.random.default_rng(seed)``): the same seed draws the same standard normals whatever the
    amplitudes, so atom ``i`` moves by ``stdev[i]`` times the displacement a unit ``stdev`` would give it.
    0 gives an unchanged copy (of that atom). The mean displacement length is ``stdev * sqrt(8 / pi)``
    (about 1.596 stdev).
    """
    _check_atoms('atoms', atoms)
    n = len(atoms)
    per_atom = not isinstance(stdev, numbers.Real) or isinstance(stdev, bool)
    if per_atom:
        try:
            values = np.asarray(stdev, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f'stdev: expected a number or one number per atom, got {stdev!r}') from None
        if values.shape != (n,):
            raise ValueError(f'stdev: expected a number or {n} numbers (one per atom), got shape {values.shape}')
        if not np.all(np.isfinite(values)):
            raise ValueError('stdev: every value must be finite')
        if np.any(values < 0):
            raise ValueError(f'stdev: every value must be non-negative, got {float(values.min())}')
    else:
        stdev = _check_real('stdev', stdev)
        if stdev < 0:
            raise ValueError(f'stdev: must be non-negative, got {stdev}')
    seed = _check_seed('seed', seed)
    rng = np.random.default_rng(seed)
    new = atoms.copy()
    if per_atom:
        # numpy draws loc + scale * standard_normal in the same order as for a scalar scale.
        new.positions = atoms.positions + rng.normal(0.0, values[:, None], size=(n, 3))
    else:
        new.positions = atoms.positions + rng.normal(0.0, stdev, size=(n, 3))
    return new


def nearest_neighbour_distances(atoms: Atoms) -> np.ndarray:
    """Per atom, the distance (Å) to its nearest other atom, minimum image; ``inf`` where there is none.

    Periodic images count, an atom's own image included (it is a neighbour in the crystal).
    """
    _check_atoms('atoms', atoms)
    n = len(atoms)
    nearest = np.full(n, math.inf)
    periodic = bool(np.any(atoms.pbc))
    if n == 0 or (n == 1 and not periodic):
        return nearest
    if periodic:
        lengths = [np.linalg.norm(v) for v, p in zip(atoms.cell, atoms.pbc) if p]
        if min(lengths) < 1e-8:
            raise ValueError('atoms: a periodic direction has a zero-length cell vector')
        limit = min(lengths) * 1.0001  # every atom has its own image within this
    else:
        span = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
        limit = float(np.linalg.norm(span)) * 1.0001 + 1e-6
    cutoff = min(3.0, limit)
    while True:
        i, d = neighbor_list('id', atoms, cutoff, self_interaction=False)
        nearest[:] = math.inf
        np.minimum.at(nearest, i, d)
        if np.all(np.isfinite(nearest)) or cutoff >= limit:
            return nearest
        cutoff = min(cutoff * 2.0, limit)


def species_rattle_amplitudes(atoms: Atoms, amplitude: float, per_species: dict | None = None,
                              bond_fraction: float = 0.035) -> dict[str, float]:
    """Rattle amplitude (stdev, Å) per species: ``{element: stdev}`` for every species of ``atoms``.

    A species in ``per_species`` gets the value given there (Å, > 0). Any other species gets
    ``min(amplitude, bond_fraction * d_min)``, with ``d_min`` the shortest distance from an atom of that
    species to any other atom (minimum image, periodic images included; ``amplitude`` if there is none).

    Why: rattling displaces the two atoms of a bond independently, so their relative displacement along
    the bond has stdev ``sqrt(2) * sigma``. Keeping three such stdevs under about 15 % of the bond,
    ``3 * sqrt(2) * sigma <= 0.15 d``, gives ``sigma <= 0.035 d``, which keeps rattled bonds physical.
    One amplitude for every atom does not: 0.05 Å is harmless for a 2.3 Å Cu-S contact but, in a
    thiophosphate, the stiff 2.05 Å P-S bond then reaches 1.74 Å in a few hundred rattled copies.
    Here P (d_min 2.05 Å) gets 0.072 Å at most, while ``amplitude`` still caps every species.

    :param amplitude: the largest stdev (Å, >= 0), used as is where bonds are long enough.
    :param per_species: ``{element: stdev}`` (Å, > 0) overriding the rule; every key must be a species
        of ``atoms`` (``ValueError`` naming ``per_species.<element>`` otherwise).
    :param bond_fraction: ``sigma / d_min`` of the rule (> 0).
    """
    _check_atoms('atoms', atoms)
    amplitude = _check_real('amplitude', amplitude)
    if amplitude < 0:
        raise ValueError(f'amplitude: must be non-negative, got {amplitude}')
    bond_fraction = _check_real('bond_fraction', bond_fraction)
    if not bond_fraction > 0:
        raise ValueError(f'bond_fraction: must be positive, got {bond_fraction}')
    symbols = np.array(atoms.get_chemical_symbols())
    species = list(dict.fromkeys(symbols.tolist()))
    given = check_per_species(per_species, species)
    nearest = nearest_neighbour_distances(atoms) if set(species) - set(given) else None
    result = {}
    for element in species:
        if element in given:
            result[element] = given[element]
            continue
        d_min = float(nearest[symbols == element].min())
        result[element] = amplitude if not math.isfinite(d_min) else min(amplitude, bond_fraction * d_min)
    return result


def check_per_species(per_species, species, field: str = 'per_species') -> dict[str, float]:
    """``per_species`` (``{element: stdev in Å}``, or None) validated against ``species``; a plain ``dict``.

    Every key must be one of ``species`` and every value a finite number > 0, else ``ValueError`` naming
    ``<field>.<element>``.
    """
    if per_species is None:
        return {}
    if not isinstance(per_species, dict):
        raise ValueError(f'{field}: expected a mapping element -> stdev (Å), got {type(per_species).__name__}')
    result = {}
    for element, value in per_species.items():
        if element not in species:
            raise ValueError(f'{field}.{element}: {element!r} is not a species of the structure '
                             f'({", ".join(sorted(species))})')
        value = _check_real(f'{field}.{element}', value)
        if not value > 0:
            raise ValueError(f'{field}.{element}: must be positive (Å), got {value}')
        result[str(element)] = value
    return result


def strain_matrix(value, field: str = 'strain') -> np.ndarray:
    """A 3x3 strain from a 3x3 matrix (used as given) or a Voigt 6-vector (engineering shear)."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f'{field}: expected a 3x3 matrix or a Voigt 6-vector of numbers, got {value!r}') from None
    if arr.shape == (6,):
        xx, yy, zz, yz, xz, xy = arr
        arr = np.array([[xx, xy / 2, xz / 2], [xy / 2, yy, yz / 2], [xz / 2, yz / 2, zz]])
    elif arr.shape != (3, 3):
        raise ValueError(f'{field}: expected a 3x3 matrix or a Voigt 6-vector, got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ValueError(f'{field}: all components must be finite')
    if not np.linalg.det(np.eye(3) + arr) > 1e-6:
        raise ValueError(f'{field}: det(I + strain) must be positive (the strain inverts or collapses the cell)')
    return arr


def random_strains(n: int, max_strain: float, seed: int) -> np.ndarray:
    """``n`` random symmetric strain tensors, shape (n, 3, 3).

    Every independent tensor component (3 normal, 3 shear) is drawn uniformly from
    ``[-max_strain, max_strain]``; deterministic per ``seed``. ``max_strain`` must lie in [0, 0.5).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f'n: expected a non-negative integer, got {n!r}')
    max_strain = _check_real('max_strain', max_strain)
    if not 0 <= max_strain < 0.5:
        raise ValueError(f'max_strain: must be in [0, 0.5), got {max_strain}')
    seed = _check_seed('seed', seed)
    rng = np.random.default_rng(seed)
    upper = rng.uniform(-max_strain, max_strain, size=(int(n), 6))
    out = np.zeros((int(n), 3, 3))
    rows, cols = (0, 1, 2, 1, 0, 0), (0, 1, 2, 2, 2, 1)
    for k, (r, c) in enumerate(zip(rows, cols)):
        out[:, r, c] = upper[:, k]
        out[:, c, r] = upper[:, k]
    return out


def strain(atoms: Atoms, strain_voigt_or_matrix, seed: int | None = None) -> Atoms:
    """Copy of ``atoms`` deformed by ``I + eps``, atoms moving with the cell (``scale_atoms=True``).

    ``strain_voigt_or_matrix`` is a 3x3 strain, a Voigt 6-vector (see the module docstring), or a
    single number ``max_strain``. A number means one random strain from
    ``random_strains(1, max_strain, seed)``, and then ``seed`` is required. Otherwise ``seed`` is not used.
    """
    _check_atoms('atoms', atoms)
    if isinstance(strain_voigt_or_matrix, numbers.Real) and not isinstance(strain_voigt_or_matrix, bool):
        if seed is None:
            raise ValueError('seed: required when the strain is given as a scalar max_strain')
        eps = random_strains(1, strain_voigt_or_matrix, seed)[0]
    else:
        eps = strain_matrix(strain_voigt_or_matrix)
    if np.any(atoms.pbc) and abs(atoms.cell.volume) < 1e-12:
        raise ValueError('atoms: a periodic structure needs a non-degenerate cell to be strained')
    new = atoms.copy()
    new.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps).T, scale_atoms=True)
    if not np.any(atoms.pbc) and abs(atoms.cell.volume) < 1e-12:
        # No cell to scale with: deform the Cartesian positions directly.
        new.positions = atoms.positions @ (np.eye(3) + eps).T
    return new


def supercell(atoms: Atoms, matrix) -> Atoms:
    """Supercell ``P @ cell`` for an integer matrix ``P``: one integer, three integers (diagonal) or 3x3.

    ``det(P)`` must be positive; the result has ``det(P) * len(atoms)`` atoms. Diagonal matrices use
    :meth:`ase.Atoms.repeat` (atom order: copies of the whole cell one after another); general
    matrices use :func:`ase.build.make_supercell`.
    """
    _check_atoms('atoms', atoms)
    try:
        arr = np.asarray(matrix)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise TypeError
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f'matrix: expected integers, got {matrix!r}') from None
    if arr.shape == ():
        arr = np.eye(3) * float(arr)
    elif arr.shape == (3,):
        arr = np.diag(arr)
    elif arr.shape != (3, 3):
        raise ValueError(f'matrix: expected an integer, 3 integers or a 3x3 integer matrix, got shape {arr.shape}')
    if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
        raise ValueError(f'matrix: all entries must be integers, got {arr.tolist()}')
    p = np.round(arr).astype(int)
    det = int(round(np.linalg.det(p)))
    if det <= 0:
        raise ValueError(f'matrix: the determinant must be positive, got {det}')
    if not np.all(atoms.pbc):
        raise ValueError('atoms: a supercell needs a structure periodic in all three directions')
    if np.count_nonzero(p - np.diag(np.diag(p))) == 0:
        return atoms.repeat(tuple(int(x) for x in np.diag(p)))
    return make_supercell(atoms, p)


def closest_pair(atoms: Atoms) -> tuple[float, int, int]:
    """``(distance, i, j)`` of the closest pair of atoms, minimum-image for any (also triclinic) cell.

    Periodic images count, including an atom's own image (then ``i == j``). Uses
    :func:`ase.neighborlist.neighbor_list` with a growing cutoff, so it scales to large cells.
    Returns ``(inf, -1, -1)`` if there is no pair (one atom, no periodicity).
    """
    _check_atoms('atoms', atoms)
    n = len(atoms)
    periodic = bool(np.any(atoms.pbc))
    if n == 0 or (n == 1 and not periodic):
        return (math.inf, -1, -1)
    if periodic:
        lengths = [np.linalg.norm(v) for v, p in zip(atoms.cell, atoms.pbc) if p]
        if min(lengths) < 1e-8:
            raise ValueError('atoms: a periodic direction has a zero-length cell vector')
        # An atom's own image along the shortest periodic cell vector bounds the closest pair.
        limit = min(lengths) * 1.0001
    else:
        span = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
        limit = float(np.linalg.norm(span)) * 1.0001 + 1e-6  # the diameter of the cluster
    cutoff = min(3.0, limit)
    while True:
        i, j, d = neighbor_list('ijd', atoms, cutoff, self_interaction=False)
        if len(d):
            k = int(np.argmin(d))
            a, b = int(i[k]), int(j[k])
            return (float(d[k]), min(a, b), max(a, b))
        if cutoff >= limit:
            return (math.inf, -1, -1)
        cutoff = min(cutoff * 2.0, limit)


def minimum_distance(atoms: Atoms) -> float:
    """Smallest interatomic distance in Å (minimum-image, periodic self-images included); ``inf`` if none."""
    return closest_pair(atoms)[0]


def check_structure(atoms: Atoms, min_distance: float = 0.5, field: str = 'structure') -> float:
    """Validate ``atoms`` and return its minimum distance; raise ``ValueError`` naming ``field`` otherwise.

    Checks: at least one atom, real element symbols (no ``X`` dummies), finite positions and cell,
    a non-degenerate cell along periodic directions, and no two atoms (or an atom and its own periodic
    image) closer than ``min_distance`` Å, e.g. ``structure: atoms 3 and 7 are 0.31 Å apart (< 0.5 Å)``.
    """
    if not isinstance(atoms, Atoms):
        raise ValueError(f'{field}: expected an ase.Atoms, got {type(atoms).__name__}')
    min_distance = _check_real('min_distance', min_distance)
    if min_distance < 0:
        raise ValueError(f'min_distance: must be non-negative, got {min_distance}')
    if len(atoms) == 0:
        raise ValueError(f'{field}: contains no atoms')
    for index, number in enumerate(atoms.numbers):
        if not 1 <= number < len(chemical_symbols):
            raise ValueError(f'{field}: atom {index} has an unknown element (atomic number {number})')
    if not np.all(np.isfinite(atoms.positions)):
        raise ValueError(f'{field}: positions must be finite')
    cell = np.asarray(atoms.cell)
    if not np.all(np.isfinite(cell)):
        raise ValueError(f'{field}: cell must be finite')
    if np.all(atoms.pbc) and abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError(f'{field}: the cell is degenerate (zero volume) but the structure is periodic')
    for axis, (vector, periodic) in enumerate(zip(cell, atoms.pbc)):
        if periodic and np.linalg.norm(vector) < 1e-8:
            raise ValueError(f'{field}: cell vector {axis} has zero length but is periodic')
    distance, i, j = closest_pair(atoms)
    if distance < min_distance:
        if i == j:
            raise ValueError(
                f'{field}: atom {i} is {distance:.2f} Å from its own periodic image (< {min_distance:g} Å)'
            )
        raise ValueError(f'{field}: atoms {i} and {j} are {distance:.2f} Å apart (< {min_distance:g} Å)')
    return distance
