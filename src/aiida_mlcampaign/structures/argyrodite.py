"""Ordered conventional-cell model of the cubic argyrodites A7BX6 (Cu7PS6 by default) and A6BX5Y (Li6PS5Cl).

Pure ASE/numpy; no AiiDA import.

Prototype
---------
High-temperature argyrodite, space group F-43m (No. 216), origin as in the Cu7PS6 / Ag8GeS6
literature (e.g. Kuhs, Nitsche & Scheunemann, Mater. Res. Bull. 14 (1979) 241; Gaudin et al.,
Acta Cryst. B56 (2000), doi:10.1107/S0108768199016614, for gamma-Cu7PSe6). Four formula units per conventional cell:

====================  =======  ======================  ===========================================
species               Wyckoff  coordinates             role
====================  =======  ======================  ===========================================
B (``center``, P)     4b       (1/2, 1/2, 1/2)         centre of the BX4 tetrahedra
X (``anion``, S)      16e      (x, x, x), x = 0.62     the four X of each BX4 tetrahedron
X (``free_anions[0]``) 4a      (0, 0, 0)               "free" X2- not bonded to B
X (``free_anions[1]``) 4c      (1/4, 1/4, 1/4)         "free" X2- not bonded to B
A (``mobile``, Cu)    mixed    see below               28 of the partially occupied cation sites
====================  =======  ======================  ===========================================

In Cu7PS6 (= Cu7(PS4)S2) and Ag8GeS6 both free-anion sites (4a and 4c) hold S; for a
Li6PS5Cl model pass ``mobile='Li', free_anions=('Cl', 'S'), n_mobile=24``.

Mobile-cation sites (Cu, Ag)
----------------------------
In the disordered high-temperature phase the A cations are smeared over three kinds of voids of
the anion framework. The candidate pool used here for Cu, Ag and every element but Li (for Li see
"Which sites the mobile cation takes" below) puts one site at the centre of each void (the
values below are for the default x(16e) = 0.62; distances at a = 9.65 Å):

* 24g (x, 1/4, 1/4), x = 0.02: centre of the triangle S(4c) + 2 S(16e); trigonal planar,
  A-X = 2.22, 2.23, 2.23 Å. (The older model in the shared notes used x = 0.04, which puts A
  only 2.03 Å from S(4c); x = 0.02 balances the three bonds.)
* 48h (x, x, z), x = 0.32, z = 0.02: the tetrahedron S(4c) + S(4a) + 2 S(16e) sharing its faces
  with two 24g triangles; A-X = 2.42-2.46 Å.
* 16e (x, x, x), x = 0.86 (= -0.14): the tetrahedron 3 S(16e) + S(4a); A-X = 2.33 (x3), 2.34 Å.
  (The older model's 4 extra Cu at (0.15, 0.15, 0.85) sit on this orbit with x = 0.85.)

The pool has 24 + 48 + 16 = 88 sites, many of them < 1 Å apart, so only an ordered subset can be
filled. ``n_mobile`` (28) sites are chosen to **maximise the minimum A-A distance** (lexicographic
tie-break: fewest pairs at that minimum), by a deterministic seeded multi-start farthest-point
construction followed by a tabu search (:func:`select_mobile_sites`). The search works on fractional
coordinates of the cubic cell, so the selection is independent of ``a`` and of the species.

With the defaults every seed tried gives 12 Cu on 24g (trigonal, Cu-S 2.22-2.23 Å), 12 on 48h
(tetrahedral, 2.42-2.46 Å) and 4 on 16e (tetrahedral, 2.33-2.34 Å); S(4a) has 4 Cu neighbours,
S(4c) 6 and S(16e) 3 or 4, all within 2.5 Å. The minimum Cu-Cu is 0.28879 a (2.787 Å at a = 9.65 Å,
12 pairs). An exact branch-and-bound (run offline, ~4 min) found no 28-site subset of this pool
with all pairs at or above the next candidate distance (0.30066 a = 2.901 Å), so this is the
optimum for the pool. Keeping the face-centring translations would cap it at 2.18 Å, so the
ordering breaks them: the cell is a genuine 56-atom cell, not 4 copies of a 14-atom one.

Minimum distances of the default Cu7PS6 model (a = 9.65 Å, seed 0), per pair:

=======  ========  =========================================
pair     min (Å)   threshold max(1.8, 0.8 x sum of radii)
=======  ========  =========================================
Cu-Cu    2.787     2.112
Cu-P     3.417     1.912
Cu-S     2.220     1.896
P-S      2.006     1.800
S-S      3.275     1.800
P-P      6.824     1.800
=======  ========  =========================================

P has exactly four S at 2.006 Å (regular PS4 tetrahedra; P-X = sqrt(3) (x(16e) - 1/2) a, so raise
x(16e) or ``a`` for a longer bond).

Which sites the mobile cation takes (``mobile_sites``)
-------------------------------------------------------
The pool above is right for Cu and Ag, which sit in the trigonal 24g sites as well as in the
tetrahedra (Cu7PS6, Ag8GeS6: 24g/48h mixed, see the references above). It is wrong for Li: in the Li
argyrodites Li6PS5X (X = Cl, Br, I), Li occupies the **48h** tetrahedra (x, x, z),
x ~ 0.18, z ~ 0.02 (Deiseroth et al., Angew. Chem. Int. Ed. 47 (2008) 755; Kraft et al., J. Am.
Chem. Soc. 139 (2017) 10909), 24 Li on 48 sites in Li6PS5X. The 24g site is the shared face of a 48h
pair, the saddle point of the Li jump between them, and a max-min search over the whole pool puts all
24 Li there (Li-S 2.27 Å, 3-coordinate): a transition-state structure, not the ground state. The
candidate sites are therefore chosen per element (:data:`DEFAULT_MOBILE_SITES`, overridable with
``mobile_sites``): Li -> 48h only, with (x, z) = (0.317, 0.024) (:data:`DEFAULT_48H_PARAMETERS`, the
orbit of the literature's (0.183, 0.183, 0.024)); every other element -> 24g + 48h + 16e as above.
The two sites of a 48h pair are 0.19 a (1.87 Å) apart, so 24 Li take exactly one site of each pair.

Li6PS5Cl (``build_argyrodite(9.86, mobile='Li', free_anions=('Cl', 'S'), n_mobile=24)``), minimum
distances per pair involving Li (Å); every Li is tetrahedral: S(4c) 2.42, 2 S(16e) 2.49, Cl(4a) 2.56:

=======  ========
pair     min (Å)
=======  ========
Li-Li    2.217
Li-S     2.416
Li-Cl    2.563
Li-P     3.617
P-S      2.049
=======  ========

28 Li (Li7PS6) cannot all be on 48h without doubling a pair (Li-Li 1.89 Å, refused by the distance
check); ``mobile_sites=('48h', '16e')`` gives 20 on 48h and 8 on 16e, Li-Li 2.25 Å at a = 9.99 Å.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.spacegroup import Spacegroup

__all__ = [
    'build_argyrodite',
    'select_mobile_sites',
    'pair_minimum_distances',
    'pair_threshold',
    'check_pair_distances',
]

SPACEGROUP = 216  # F-43m

DEFAULT_SITE_PARAMETERS = {
    'x_16e': 0.62,  # anion 16e (x, x, x) of the BX4 tetrahedra
    'x_24g': 0.02,  # mobile 24g (x, 1/4, 1/4), trigonal
    'xz_48h': (0.32, 0.02),  # mobile 48h (x, x, z), tetrahedral
    'x_16e_mobile': 0.86,  # mobile 16e (x, x, x), tetrahedral around the 4a anion
}

#: The mobile-cation sites a builder can fill, in pool order.
MOBILE_SITES = ('24g', '48h', '16e')
#: Mobile sites when ``mobile_sites`` is not given: per element, else :data:`MOBILE_SITES` (all three).
#: Li: the 48h tetrahedra only (Li6PS5X: Li on 48h, x ~ 0.18, z ~ 0.02 in the 4a/4c-anion setting
#: used here ~ (0.32, 0.32, 0.02); Deiseroth et al., Angew. Chem. Int. Ed. 47 (2008) 755; Kraft et al.,
#: J. Am. Chem. Soc. 139 (2017) 10909); 24g is the trigonal saddle between two 48h, a transition state for Li.
#: Cu, Ag and the rest: the 24g/48h/16e pool of the Cu/Ag argyrodites (Kuhs et al. 1979; Gaudin et al. 2000).
DEFAULT_MOBILE_SITES = {'Li': ('48h',)}
#: 48h parameters (x, z) when ``xz_48h`` is not given: per element, else ``DEFAULT_SITE_PARAMETERS['xz_48h']``.
#: Li: (0.317, 0.024), the same orbit as the literature's (0.183, 0.183, 0.024) of Li6PS5Cl.
DEFAULT_48H_PARAMETERS = {'Li': (0.317, 0.024)}


def _validate_symbol(field: str, symbol) -> str:
    if not isinstance(symbol, str) or symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
        raise ValueError(f'{field}: unknown element symbol {symbol!r}')
    return symbol


def _validate_fraction(field: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{field}: expected a number, got {value!r}') from None
    if not math.isfinite(value):
        raise ValueError(f'{field}: must be finite, got {value}')
    return value


def _validate_mobile_sites(sites) -> tuple[str, ...]:
    """``sites`` as a tuple in pool order (:data:`MOBILE_SITES`); ``ValueError`` naming ``mobile_sites``."""
    if (isinstance(sites, str) or not isinstance(sites, (list, tuple)) or not sites
            or not all(isinstance(site, str) for site in sites)):
        raise ValueError(f'mobile_sites: expected a non-empty list of sites out of {list(MOBILE_SITES)}, '
                         f'got {sites!r}')
    unknown = [site for site in sites if site not in MOBILE_SITES]
    if unknown:
        raise ValueError(f'mobile_sites: unknown site(s) {unknown}; known: {list(MOBILE_SITES)}')
    if len(set(sites)) != len(sites):
        raise ValueError(f'mobile_sites: a site is repeated in {list(sites)}')
    return tuple(site for site in MOBILE_SITES if site in sites)


def _orbit(position) -> np.ndarray:
    """All positions in the conventional F-43m cell equivalent to ``position`` (fractional, [0, 1))."""
    sites, _ = Spacegroup(SPACEGROUP).equivalent_sites([position], symprec=1e-4)
    return np.mod(np.round(sites, 12), 1.0)


def _cubic_distance_matrix(frac_a: np.ndarray, frac_b: np.ndarray | None = None) -> np.ndarray:
    """Minimum-image distances in units of the cubic lattice parameter."""
    other = frac_a if frac_b is None else frac_b
    delta = frac_a[:, None, :] - other[None, :, :]
    delta -= np.round(delta)
    return np.sqrt((delta**2).sum(-1))


_TOL = 1e-9


def _key(selected: np.ndarray, dist: np.ndarray) -> tuple[float, int]:
    """Quality of a site set: (minimum pair distance, minus the number of pairs at that distance)."""
    sub = dist[np.ix_(selected, selected)]
    dmin = sub.min()
    return (round(float(dmin), 9), -int(np.count_nonzero(sub < dmin + _TOL)) // 2)


def _farthest_point(start: int, n: int, dist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Greedy construction: repeatedly add the site farthest from those already chosen (random tie-break)."""
    chosen = [start]
    nearest = dist[start].copy()
    for _ in range(n - 1):
        nearest[chosen] = -1.0
        ties = np.flatnonzero(nearest > nearest.max() - _TOL)
        pick = int(ties[rng.integers(len(ties))])
        chosen.append(pick)
        nearest = np.minimum(nearest, dist[pick])
    return np.sort(np.array(chosen))


def _tabu_search(selected: np.ndarray, dist: np.ndarray, rng: np.random.Generator, max_steps: int,
                 patience: int, tenure: int = 5) -> tuple[tuple[float, int], np.ndarray]:
    """Best-move tabu search on :func:`_key`.

    A move takes one site of a closest pair out and puts a free, non-tabu site in; the best move by
    key is always made, even when it does not improve (the removed site is then tabu for
    ``tenure`` steps), so the search walks across plateaus. Stops after ``patience`` steps without
    improvement. Returns the best (key, sorted indices) seen.
    """
    n_pool = len(dist)
    sel = np.sort(selected)
    best_key, best_sel, since = _key(sel, dist), sel.copy(), 0
    tabu_until = np.full(n_pool, -1)
    for step in range(max_steps):
        sub = dist[np.ix_(sel, sel)]
        critical = np.unique(np.nonzero(sub < sub.min() + _TOL)[0])
        in_set = np.zeros(n_pool, dtype=bool)
        in_set[sel] = True
        free = np.flatnonzero(~in_set & (tabu_until < step))
        if len(free) == 0:
            break
        move_min, move_count, move_out, move_in = [], [], [], []
        for ci in critical:
            rest = np.delete(sel, ci)
            rest_sub = np.delete(np.delete(sub, ci, 0), ci, 1)
            rest_min = rest_sub.min()
            rest_count = np.count_nonzero(rest_sub < rest_min + _TOL) // 2
            to_rest = dist[np.ix_(free, rest)]
            new_min = to_rest.min(axis=1)
            new_count = np.count_nonzero(to_rest < new_min[:, None] + _TOL, axis=1)
            total_min = np.minimum(rest_min, new_min)
            total_count = np.where(
                new_min < rest_min - _TOL,
                new_count,
                np.where(new_min > rest_min + _TOL, rest_count, rest_count + new_count),
            )
            move_min.append(np.round(total_min, 9))
            move_count.append(total_count)
            move_out.append(np.full(len(free), sel[ci]))
            move_in.append(free)
        move_min, move_count = np.concatenate(move_min), np.concatenate(move_count)
        move_out, move_in = np.concatenate(move_out), np.concatenate(move_in)
        top = move_min.max()
        mask = move_min == top
        fewest = move_count[mask].min()
        candidates = np.flatnonzero(mask & (move_count == fewest))
        pick = candidates[rng.integers(len(candidates))]
        sel = np.sort(np.append(sel[sel != move_out[pick]], move_in[pick]))
        tabu_until[move_out[pick]] = step + tenure
        key = (float(top), -int(fewest))
        if key > best_key:
            best_key, best_sel, since = key, sel.copy(), 0
        else:
            since += 1
            if since >= patience:
                break
    return best_key, best_sel


@functools.lru_cache(maxsize=64)
def _select_cached(pool_key: tuple, n_mobile: int, seed: int, n_starts: int, max_steps: int) -> tuple[int, ...]:
    pool = np.array(pool_key, dtype=float).reshape(-1, 3)
    dist = _cubic_distance_matrix(pool)
    np.fill_diagonal(dist, np.inf)
    rng = np.random.default_rng(seed)
    best_key, best_sel = None, None
    for _ in range(n_starts):
        start = _farthest_point(int(rng.integers(len(pool))), n_mobile, dist, rng)
        key, sel = _tabu_search(start, dist, rng, max_steps=max_steps, patience=max(1, max_steps // 3))
        if best_key is None or key > best_key or (key == best_key and tuple(sel) < tuple(best_sel)):
            best_key, best_sel = key, sel
    return tuple(int(i) for i in best_sel)


def select_mobile_sites(pool: np.ndarray, n_mobile: int, *, seed: int = 0, n_starts: int = 8,
                        max_steps: int = 200) -> np.ndarray:
    """Indices of ``n_mobile`` pool sites (fractional, cubic cell) maximising the minimum pair distance.

    Deterministic for a given ``seed``: ``n_starts`` seeded farthest-point constructions, each
    improved by a best-move tabu search (:func:`_tabu_search`) on the key (minimum distance, fewest
    pairs at that distance); the best key wins, the lexicographically smallest index set among equal
    keys. Results are cached per (pool, n_mobile, seed). Returned indices are sorted.

    For the default argyrodite pool and 28 sites, 150 of 150 independent runs reached the same key
    (min 0.28879 a, 12 pairs at it), and an exact branch-and-bound showed that no 28-site set has
    a minimum above it; different seeds give different, equally good orderings.
    """
    pool = np.asarray(pool, dtype=float)
    if pool.ndim != 2 or pool.shape[1] != 3:
        raise ValueError(f'pool: expected an (N, 3) array of fractional positions, got shape {pool.shape}')
    if isinstance(n_mobile, bool) or not isinstance(n_mobile, (int, np.integer)):
        raise ValueError(f'n_mobile: expected an integer, got {n_mobile!r}')
    if not 1 <= n_mobile <= len(pool):
        raise ValueError(f'n_mobile: must be between 1 and the pool size {len(pool)}, got {n_mobile}')
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed: expected a non-negative integer, got {seed!r}')
    if n_mobile == 1:
        return np.array([0])
    key = tuple(np.round(np.mod(pool, 1.0), 10).ravel().tolist())
    return np.array(_select_cached(key, int(n_mobile), int(seed), int(n_starts), int(max_steps)))


def pair_minimum_distances(atoms: Atoms) -> dict[tuple[str, str], float]:
    """Minimum-image minimum distance per unordered species pair (symbols sorted), in Å.

    Self-image distances (an atom and its own periodic copy) count for the like-species pair.
    """
    from ase.geometry import get_distances

    symbols = np.array(atoms.get_chemical_symbols())
    _, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    np.fill_diagonal(dist, np.inf)
    if atoms.pbc.any():
        lattice = np.array([np.linalg.norm(v) for v, p in zip(atoms.cell, atoms.pbc) if p])
        self_image = lattice.min() if len(lattice) else np.inf
    else:
        self_image = np.inf
    result = {}
    species = sorted(set(symbols))
    for ia, sa in enumerate(species):
        for sb in species[ia:]:
            sub = dist[np.ix_(symbols == sa, symbols == sb)]
            value = float(sub.min()) if sub.size else np.inf
            if sa == sb:
                value = min(value, float(self_image))
            result[(str(sa), str(sb))] = value
    return result


def pair_threshold(symbol_a: str, symbol_b: str, factor: float = 0.8, floor: float = 1.8) -> float:
    """``max(floor, factor * (r_cov(a) + r_cov(b)))`` with ASE covalent radii, in Å."""
    radii = covalent_radii[atomic_numbers[symbol_a]] + covalent_radii[atomic_numbers[symbol_b]]
    return max(float(floor), float(factor) * float(radii))


def check_pair_distances(atoms: Atoms, factor: float = 0.8, floor: float = 1.8) -> dict[tuple[str, str], float]:
    """Raise ``ValueError`` if any pair is closer than :func:`pair_threshold`; return the per-pair minima."""
    minima = pair_minimum_distances(atoms)
    for (sa, sb), value in minima.items():
        threshold = pair_threshold(sa, sb, factor, floor)
        if value < threshold:
            raise ValueError(
                f'structure: minimum {sa}-{sb} distance {value:.3f} Å is below the threshold {threshold:.3f} Å '
                f'(max({floor}, {factor} x sum of covalent radii)); check the lattice parameter, the site parameters '
                f'and the mobile sites'
            )
    return minima


def build_argyrodite(
    a: float = 9.65,
    *,
    mobile: str = 'Cu',
    center: str = 'P',
    anion: str = 'S',
    free_anions: tuple[str, str] | None = None,
    n_mobile: int = 28,
    x_16e: float = DEFAULT_SITE_PARAMETERS['x_16e'],
    x_24g: float = DEFAULT_SITE_PARAMETERS['x_24g'],
    xz_48h: tuple[float, float] | None = None,
    x_16e_mobile: float = DEFAULT_SITE_PARAMETERS['x_16e_mobile'],
    mobile_sites: tuple[str, ...] | None = None,
    seed: int = 0,
    distance_factor: float = 0.8,
    distance_floor: float = 1.8,
) -> Atoms:
    """Ordered conventional-cell argyrodite ``mobile``7 ``center`` ``anion``6 (Cu28P4S24 by default).

    :param a: cubic lattice parameter in Å (Cu7PS6: ~9.65 Å; Ag7PSe6: ~10.9 Å; Cu7PSe6: ~10.1 Å).
    :param mobile: species of the mobile cation A, ordered over ``mobile_sites`` (see module docstring).
    :param center: species B on 4b, centre of the BX4 tetrahedra.
    :param anion: species X on 16e (the BX4 tetrahedra); also the default free anion.
    :param free_anions: species on (4a, 4c); default ``(anion, anion)``.
    :param n_mobile: number of A atoms in the cell (28 for A7BX6, 24 for Li6PS5Cl-like A6BX5Y; 32 would be
        A8BX6 and usually fails the distance check with this pool).
    :param x_16e, x_24g, xz_48h, x_16e_mobile: free Wyckoff parameters. ``xz_48h`` defaults per element
        (:data:`DEFAULT_48H_PARAMETERS`: Li (0.317, 0.024)), else (0.32, 0.02).
    :param mobile_sites: the Wyckoff sites the A atoms may occupy, a subset of ``('24g', '48h', '16e')``.
        Default per element (:data:`DEFAULT_MOBILE_SITES`): Li ``('48h',)``, the tetrahedral sites of the
        Li argyrodites (24g, the face between two 48h tetrahedra, is the saddle of Li hopping); every other
        element the three-site pool of the Cu/Ag argyrodites. With 48h only, 24 A atoms take one site of
        each 48h pair (the pair is 0.19 a apart); more (Li7PS6: 28) must double some pairs and fail the
        distance check: pass e.g. ``mobile_sites=('48h', '16e')``.
    :param seed: seed of the deterministic ordering search; different seeds may give different,
        equally good orderings.
    :param distance_factor, distance_floor: every pair must be at least
        ``max(distance_floor, distance_factor * (r_cov_i + r_cov_j))`` apart, else ``ValueError``.
    :returns: ``ase.Atoms`` with a cubic cell, ``pbc=True``, atoms in the order A, B, X(16e), X(4a),
        X(4c), and a per-atom string array ``'wyckoff'`` naming the site of each atom.
    """
    a = _validate_fraction('a', a)
    if not a > 0:
        raise ValueError(f'a: the lattice parameter must be positive, got {a}')
    mobile = _validate_symbol('mobile', mobile)
    center = _validate_symbol('center', center)
    anion = _validate_symbol('anion', anion)
    if free_anions is None:
        free_anions = (anion, anion)
    if isinstance(free_anions, str) or len(free_anions) != 2:
        raise ValueError(f'free_anions: expected two symbols for (4a, 4c), got {free_anions!r}')
    free_4a = _validate_symbol('free_anions[0]', free_anions[0])
    free_4c = _validate_symbol('free_anions[1]', free_anions[1])
    if isinstance(n_mobile, bool) or not isinstance(n_mobile, (int, np.integer)):
        raise ValueError(f'n_mobile: expected an integer, got {n_mobile!r}')
    x_16e = _validate_fraction('x_16e', x_16e)
    x_24g = _validate_fraction('x_24g', x_24g)
    if xz_48h is None:
        xz_48h = DEFAULT_48H_PARAMETERS.get(mobile, DEFAULT_SITE_PARAMETERS['xz_48h'])
    if isinstance(xz_48h, str) or not hasattr(xz_48h, '__len__') or len(xz_48h) != 2:
        raise ValueError(f'xz_48h: expected (x, z), got {xz_48h!r}')
    x_48h = _validate_fraction('xz_48h', xz_48h[0])
    z_48h = _validate_fraction('xz_48h', xz_48h[1])
    x_16e_mobile = _validate_fraction('x_16e_mobile', x_16e_mobile)
    sites = _validate_mobile_sites(DEFAULT_MOBILE_SITES.get(mobile, MOBILE_SITES) if mobile_sites is None
                                   else mobile_sites)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed: expected a non-negative integer, got {seed!r}')

    framework = [
        ('4b', center, _orbit((0.5, 0.5, 0.5))),
        ('16e', anion, _orbit((x_16e, x_16e, x_16e))),
        ('4a', free_4a, _orbit((0.0, 0.0, 0.0))),
        ('4c', free_4c, _orbit((0.25, 0.25, 0.25))),
    ]
    orbits = {
        '24g': lambda: _orbit((x_24g, 0.25, 0.25)),
        '48h': lambda: _orbit((x_48h, x_48h, z_48h)),
        '16e': lambda: _orbit((x_16e_mobile,) * 3),
    }
    pool_parts = [(label, orbits[label]()) for label in sites]
    pool = np.vstack([part for _, part in pool_parts])
    pool_labels = [label for label, part in pool_parts for _ in range(len(part))]
    chosen = select_mobile_sites(pool, int(n_mobile), seed=int(seed))

    symbols = [mobile] * len(chosen)
    frac = [pool[chosen]]
    labels = [pool_labels[i] for i in chosen]
    for label, symbol, sites in framework:
        symbols += [symbol] * len(sites)
        frac.append(sites)
        labels += [label] * len(sites)

    atoms = Atoms(symbols=symbols, scaled_positions=np.vstack(frac), cell=np.eye(3) * a, pbc=True)
    atoms.new_array('wyckoff', np.array(labels, dtype='<U4'))
    atoms.info['prototype'] = 'argyrodite F-43m (ordered)'
    check_pair_distances(atoms, factor=distance_factor, floor=distance_floor)
    return atoms
