"""Calcfunctions that make structure variants with provenance.

Thin AiiDA wrappers around the pure functions in :mod:`aiida_mlcampaign.structures.variants` and
:mod:`aiida_mlcampaign.structures.argyrodite`. Every input is validated; a bad value raises
``ValueError`` whose message starts with the input's name (for example ``stdev: must be non-negative``).
Output structures keep the input's kinds (names, masses). Input and output structures must have no two
atoms (or an atom and its own periodic image) closer than :data:`MIN_DISTANCE` Å; a failing output is
reported under the input that caused it (e.g. ``stdev: the generated structure fails the distance check``).
Invalid values raise inside the function, so the failed call is recorded as an excepted process node.

Entry points (group ``aiida.calculations``): ``mlcampaign.structures.rattle`` ->
:func:`rattle_structure`, ``mlcampaign.structures.strain`` -> :func:`strain_structure`,
``mlcampaign.structures.supercell`` -> :func:`make_supercell`.
"""

from __future__ import annotations

import math

import numpy as np

from aiida import orm
from aiida.engine import calcfunction
from aiida.orm.nodes.data.structure import Site
from ase import Atoms

from aiida_mlcampaign.structures import argyrodite as _argyrodite
from aiida_mlcampaign.structures import variants as _variants

__all__ = [
    'rattle_structure',
    'strain_structure',
    'make_supercell',
    'generate_rattled_set',
    'build_argyrodite_structure',
    'MIN_DISTANCE',
    'MAX_SET_SIZE',
]

MIN_DISTANCE = 0.5  # Å; an output with a closer pair is rejected
MAX_SET_SIZE = 10000  # largest ``count`` accepted by generate_rattled_set


# ----------------------------------------------------------------------------------------------------------------
# Conversion helpers
# ----------------------------------------------------------------------------------------------------------------


def _structure_to_atoms(structure: orm.StructureData, field: str = 'structure') -> tuple[Atoms, list[str]]:
    """ASE copy of ``structure`` and its kind names; the per-atom kind index is in ``atoms.arrays['kind_index']``."""
    if not isinstance(structure, orm.StructureData):
        raise ValueError(f'{field}: expected a StructureData, got {type(structure).__name__}')
    kinds = list(structure.kinds)
    if not kinds or not structure.sites:
        raise ValueError(f'{field}: contains no atoms')
    for kind in kinds:
        if kind.is_alloy or kind.has_vacancies:
            raise ValueError(
                f'{field}: kind {kind.name!r} is an alloy or has vacancies; only ordered structures are supported'
            )
    names = [kind.name for kind in kinds]
    by_name = {kind.name: kind for kind in kinds}
    sites = structure.sites
    atoms = Atoms(
        symbols=[by_name[site.kind_name].symbol for site in sites],
        positions=[site.position for site in sites],
        cell=structure.cell,
        pbc=structure.pbc,
    )
    atoms.new_array('kind_index', np.array([names.index(site.kind_name) for site in sites], dtype=int))
    _variants.check_structure(atoms, min_distance=MIN_DISTANCE, field=field)
    return atoms, names


def _atoms_to_structure(atoms: Atoms, template: orm.StructureData, field: str) -> orm.StructureData:
    """A new StructureData with the kinds of ``template`` and the sites of ``atoms`` (after a distance check)."""
    try:
        _variants.check_structure(atoms, min_distance=MIN_DISTANCE, field='structure')
    except ValueError as exc:
        raise ValueError(f'{field}: the generated structure fails the distance check: {exc}') from None
    kinds = list(template.kinds)
    new = orm.StructureData(cell=np.asarray(atoms.cell).tolist(), pbc=tuple(bool(p) for p in atoms.pbc))
    for kind in kinds:
        new.append_kind(kind)
    for index, position in zip(atoms.arrays['kind_index'], atoms.positions):
        new.append_site(Site(kind_name=kinds[int(index)].name, position=[float(x) for x in position]))
    return new


def _real(field: str, node, *, minimum: float | None = None) -> float:
    value = float(node.value)
    if not math.isfinite(value):
        raise ValueError(f'{field}: must be finite, got {value}')
    if minimum is not None and value < minimum:
        raise ValueError(f'{field}: must be >= {minimum}, got {value}')
    return value


def _integer(field: str, node, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{field}: expected an integer, got {value!r}')
    if minimum is not None and value < minimum:
        raise ValueError(f'{field}: must be >= {minimum}, got {value}')
    if maximum is not None and value > maximum:
        raise ValueError(f'{field}: must be <= {maximum}, got {value}')
    return value


def _matrix_from_node(field: str, node) -> np.ndarray:
    """The numbers held by a ``List`` or by the single array of an ``ArrayData``."""
    if isinstance(node, orm.List):
        raw = node.get_list()
    elif isinstance(node, orm.ArrayData):
        names = node.get_arraynames()
        if len(names) != 1:
            raise ValueError(f'{field}: the ArrayData must hold exactly one array, found {sorted(names)}')
        raw = node.get_array(names[0])
    else:
        raise ValueError(f'{field}: expected a List or an ArrayData, got {type(node).__name__}')
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f'{field}: expected numbers, got {raw!r}') from None
    return arr


def _derived_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent, deterministic 32-bit seeds derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [int(child.generate_state(1)[0]) for child in children]


# ----------------------------------------------------------------------------------------------------------------
# Calcfunctions
# ----------------------------------------------------------------------------------------------------------------


@calcfunction
def rattle_structure(structure: orm.StructureData, stdev: orm.Float | orm.Int, seed: orm.Int) -> orm.StructureData:
    """Displace every atom by Gaussian noise N(0, stdev^2) per Cartesian component (Å), deterministic per seed."""
    atoms, _ = _structure_to_atoms(structure)
    stdev_value = _real('stdev', stdev, minimum=0.0)
    seed_value = _integer('seed', seed, minimum=0)
    new = _variants.rattle(atoms, stdev_value, seed_value)
    return _atoms_to_structure(new, structure, 'stdev')


@calcfunction
def strain_structure(structure: orm.StructureData, strain: orm.List | orm.ArrayData) -> orm.StructureData:
    """Deform cell and atoms by ``I + strain``.

    ``strain`` is a 3x3 matrix or a Voigt 6-vector ``(xx, yy, zz, yz, xz, xy)`` with engineering shear
    components, as a ``List`` or a single-array ``ArrayData``. The volume scales by ``det(I + strain)``.
    """
    atoms, _ = _structure_to_atoms(structure)
    eps = _variants.strain_matrix(_matrix_from_node('strain', strain), field='strain')
    if not np.all(atoms.pbc):
        raise ValueError('structure: straining needs a structure periodic in all three directions')
    new = _variants.strain(atoms, eps)
    return _atoms_to_structure(new, structure, 'strain')


@calcfunction
def make_supercell(structure: orm.StructureData, matrix: orm.List) -> orm.StructureData:
    """Supercell with lattice vectors ``matrix @ cell``; ``matrix`` is 3 integers (diagonal) or a 3x3 integer list."""
    atoms, _ = _structure_to_atoms(structure)
    arr = _matrix_from_node('matrix', matrix)
    if arr.shape not in {(3,), (3, 3)}:
        raise ValueError(f'matrix: expected 3 integers or a 3x3 integer matrix, got shape {arr.shape}')
    new = _variants.supercell(atoms, arr)
    return _atoms_to_structure(new, structure, 'matrix')


@calcfunction
def generate_rattled_set(
    structure: orm.StructureData,
    count: orm.Int,
    stdev: orm.Float | orm.Int,
    max_strain: orm.Float | orm.Int,
    seed: orm.Int,
    per_species: orm.Dict | None = None,
) -> dict[str, orm.StructureData]:
    """``count`` strained-and-rattled copies of ``structure`` as outputs ``structure_000``, ``structure_001``, ...

    Copy ``i`` is strained by ``random_strains(count, max_strain, s0)[i]`` (every tensor component
    uniform in ``[-max_strain, max_strain]``) and then rattled with ``rattle(..., stdev, s_i)``. The seeds
    ``s0, s1, ...`` come from ``numpy.random.SeedSequence(seed).spawn``, so the set is reproducible.
    Labels are zero-padded to at least three digits.

    ``per_species`` (optional, ``{element: stdev in Å}``, each > 0, every element a species of
    ``structure``): atoms of those elements are rattled with their own stdev, the others with ``stdev``
    (the same random numbers, scaled per atom). :func:`aiida_mlcampaign.structures.variants.
    species_rattle_amplitudes` gives amplitudes that keep stiff bonds physical. Without it every atom
    uses ``stdev``, exactly as before the input existed.
    """
    atoms, _ = _structure_to_atoms(structure)
    n = _integer('count', count, minimum=1, maximum=MAX_SET_SIZE)
    stdev_value = _real('stdev', stdev, minimum=0.0)
    strain_value = _real('max_strain', max_strain, minimum=0.0)
    if not strain_value < 0.5:
        raise ValueError(f'max_strain: must be < 0.5, got {strain_value}')
    seed_value = _integer('seed', seed, minimum=0)
    if strain_value > 0 and not np.all(atoms.pbc):
        raise ValueError('structure: straining needs a structure periodic in all three directions')
    amplitude = stdev_value
    if per_species is not None:
        if not isinstance(per_species, orm.Dict):
            raise ValueError(f'per_species: expected a Dict, got {type(per_species).__name__}')
        symbols = atoms.get_chemical_symbols()
        given = _variants.check_per_species(per_species.get_dict(), sorted(set(symbols)))
        amplitude = np.array([given.get(symbol, stdev_value) for symbol in symbols])
    seeds = _derived_seeds(seed_value, n + 1)
    strains = _variants.random_strains(n, strain_value, seeds[0])
    width = max(3, len(str(n - 1)))
    outputs = {}
    for i in range(n):
        new = _variants.rattle(_variants.strain(atoms, strains[i]), amplitude, seeds[i + 1])
        outputs[f'structure_{i:0{width}d}'] = _atoms_to_structure(new, structure, 'stdev')
    return outputs


@calcfunction
def build_argyrodite_structure(
    lattice_parameter: orm.Float | orm.Int = 9.65,
    mobile: orm.Str = 'Cu',
    center: orm.Str = 'P',
    anion: orm.Str = 'S',
    free_anions: orm.List | None = None,
    n_mobile: orm.Int = 28,
    seed: orm.Int = 0,
    mobile_sites: orm.List | None = None,
) -> orm.StructureData:
    """Ordered conventional-cell cubic argyrodite, Cu28P4S24 by default.

    See :func:`aiida_mlcampaign.structures.argyrodite.build_argyrodite`; ``lattice_parameter`` is its ``a``
    and ``free_anions`` the pair of species on (4a, 4c), default ``(anion, anion)``. ``mobile_sites`` are the
    Wyckoff sites the mobile cation may take (out of 24g, 48h, 16e); default per element: Li on 48h only
    (Li6PS5Cl: ``mobile='Li'``, ``free_anions=['Cl', 'S']``, ``n_mobile=24``), every other element all three.
    """
    a = _real('lattice_parameter', lattice_parameter)
    if not a > 0:
        raise ValueError(f'lattice_parameter: must be positive, got {a}')
    kwargs = {}
    if free_anions is not None:
        pair = free_anions.get_list()
        if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ValueError(f'free_anions: expected two element symbols for (4a, 4c), got {pair!r}')
        kwargs['free_anions'] = tuple(pair)
    if mobile_sites is not None:
        kwargs['mobile_sites'] = tuple(mobile_sites.get_list())
    try:
        atoms = _argyrodite.build_argyrodite(
            a,
            mobile=mobile.value,
            center=center.value,
            anion=anion.value,
            n_mobile=_integer('n_mobile', n_mobile, minimum=1),
            seed=_integer('seed', seed, minimum=0),
            **kwargs,
        )
    except ValueError as exc:
        message = str(exc)
        if message.startswith('a:'):
            message = 'lattice_parameter:' + message[2:]
        elif message.startswith('structure:'):
            message = 'lattice_parameter: ' + message
        raise ValueError(message) from None
    return orm.StructureData(ase=atoms)
