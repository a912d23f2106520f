"""The in-memory frame every file format reads into and writes from.

One plain container keeps the readers and writers free of AiiDA and of each other: extxyz, mlip
``.cfg`` and the ``TrainingSetData`` node all convert to and from ``Frame``. Units are ASE's:
Å, eV, eV/Å, and stress in eV/Å^3 with ASE's sign (positive = tensile). Virial conventions of the
target programs are applied only by their writers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import numpy as np

from ase.data import atomic_numbers


class FormatError(ValueError):
    """A file or a frame does not follow its documented format; the message names the field."""


@dataclasses.dataclass
class Frame:
    symbols: list[str]
    cell: np.ndarray
    positions: np.ndarray
    pbc: tuple[bool, bool, bool] = (True, True, True)
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    weight: float = 1.0
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.symbols = [str(s) for s in self.symbols]
        for symbol in self.symbols:
            if symbol not in atomic_numbers or symbol == 'X':
                raise FormatError(f'symbols: unknown element {symbol!r}')
        n = len(self.symbols)
        self.cell = np.asarray(self.cell, dtype=float).reshape(3, 3)
        self.positions = np.asarray(self.positions, dtype=float)
        if self.positions.shape != (n, 3):
            raise FormatError(f'positions: expected shape ({n}, 3), got {self.positions.shape}')
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=float)
            if self.forces.shape != (n, 3):
                raise FormatError(f'forces: expected shape ({n}, 3), got {self.forces.shape}')
        if self.stress is not None:
            self.stress = voigt_or_matrix_to_matrix(self.stress)
        for name in ('cell', 'positions', 'forces', 'stress'):
            _require_finite(name, getattr(self, name))
        if self.energy is not None:
            self.energy = float(self.energy)
            if not np.isfinite(self.energy):
                raise FormatError('energy: not a finite number')
        self.weight = float(self.weight)
        if not self.weight > 0:
            raise FormatError(f'weight: must be positive, got {self.weight}')
        self.pbc = tuple(bool(p) for p in np.broadcast_to(self.pbc, (3,)))

    @property
    def natoms(self) -> int:
        return len(self.symbols)

    @property
    def volume(self) -> float:
        # Triple product, not np.linalg.det: det goes through LU/log and returns 7.999999999999998
        # for a 2 Å cube, which would leak into every virial written as -V * stress.
        a, b, c = self.cell
        return abs(float(np.dot(a, np.cross(b, c))))

    @property
    def virial(self) -> np.ndarray | None:
        """Virial in eV, positive when compressed: ``-V * stress`` (GPUMD and mlip-2 convention)."""
        if self.stress is None:
            return None
        return -self.volume * self.stress

    def to_ase(self):
        """An ``ase.Atoms`` with a single-point calculator carrying the labels."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(self.symbols, positions=self.positions, cell=self.cell, pbc=self.pbc)
        atoms.info.update(self.info)
        if self.weight != 1.0:
            atoms.info['weight'] = self.weight
        results = {}
        if self.energy is not None:
            results['energy'] = self.energy
        if self.forces is not None:
            results['forces'] = self.forces.copy()
        if self.stress is not None:
            results['stress'] = matrix_to_voigt(self.stress)
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    @classmethod
    def from_ase(cls, atoms) -> 'Frame':
        """Labels come from the attached calculator when present, else from ``info``/``arrays``."""
        info = dict(atoms.info)
        energy = forces = stress = None
        calc = atoms.calc
        if calc is not None:
            results = getattr(calc, 'results', {})
            energy = results.get('energy', results.get('free_energy'))
            forces = results.get('forces')
            stress = results.get('stress')
        energy = info.pop('energy', energy) if energy is None else energy
        if forces is None:
            for key in ('forces', 'force'):
                if key in atoms.arrays:
                    forces = atoms.arrays[key]
                    break
        if stress is None and 'stress' in info:
            stress = info.pop('stress')
        if stress is None and 'virial' in info:
            volume = atoms.get_volume()
            stress = -voigt_or_matrix_to_matrix(info.pop('virial')) / volume
        weight = info.pop('weight', info.pop('Weight', 1.0))
        return cls(
            symbols=atoms.get_chemical_symbols(),
            cell=np.array(atoms.cell),
            positions=atoms.get_positions(),
            pbc=tuple(atoms.pbc),
            energy=energy,
            forces=forces,
            stress=stress,
            weight=weight,
            info=info,
        )

    def structure_hash(self, decimals: int = 6) -> str:
        """Content hash of species, cell and positions, used to drop duplicate frames on merge.

        Positions are wrapped into the cell and rounded, so the same geometry written by two programs
        hashes alike; labels and metadata do not enter the hash.
        """
        return structure_hash(self.symbols, self.cell, self.positions, self.pbc, decimals)


def structure_hash(symbols, cell, positions, pbc=(True, True, True), decimals: int = 6) -> str:
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    positions = np.asarray(positions, dtype=float)
    pbc = np.asarray(np.broadcast_to(pbc, (3,)), dtype=bool)
    if abs(np.linalg.det(cell)) > 1e-12:
        scaled = np.linalg.solve(cell.T, positions.T).T
        scaled[:, pbc] = np.mod(scaled[:, pbc], 1.0)
        # 1 - 1e-12 and 0 are the same site; fold values that round to 1 back to 0.
        scaled = np.round(scaled, decimals)
        scaled[:, pbc] = np.where(scaled[:, pbc] >= 1.0, 0.0, scaled[:, pbc])
        coordinates = scaled
    else:
        coordinates = np.round(positions, decimals)
    digest = hashlib.sha256()
    digest.update(' '.join(symbols).encode())
    digest.update(np.round(cell, decimals).astype('<f8').tobytes())
    digest.update(pbc.tobytes())
    digest.update(np.ascontiguousarray(coordinates + 0.0).astype('<f8').tobytes())
    return digest.hexdigest()


def voigt_or_matrix_to_matrix(values) -> np.ndarray:
    """Accept a 3x3, a 9-vector (row major) or a 6-vector in Voigt order xx yy zz yz xz xy."""
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 9:
        return array.reshape(3, 3)
    if array.size == 6:
        xx, yy, zz, yz, xz, xy = array
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise FormatError(f'stress: expected 6 (Voigt) or 9 values, got {array.size}')


def matrix_to_voigt(matrix) -> np.ndarray:
    """Voigt order xx yy zz yz xz xy (ASE's and mlip-2's)."""
    m = np.asarray(matrix, dtype=float).reshape(3, 3)
    return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])


def checked_int(key: str, value, low=None, high=None) -> int:
    """An integer (or its text) within ``[low, high]``; a bool or a float is refused, naming ``key``."""
    if isinstance(value, bool):
        raise FormatError(f'{key}: expected an integer, got {value!r}')
    if isinstance(value, str):
        if not re.fullmatch(r'[+-]?\d+', value.strip()):
            raise FormatError(f'{key}: expected an integer, got {value!r}')
        value = int(value)
    elif isinstance(value, (int, np.integer)):
        value = int(value)
    else:
        raise FormatError(f'{key}: expected an integer, got {value!r}')
    return _within(key, value, low, high)


def checked_float(key: str, value, low=None, high=None) -> float:
    """A finite number (or its text) within ``[low, high]``; a bool is refused, naming ``key``."""
    if isinstance(value, bool):
        raise FormatError(f'{key}: expected a number, got {value!r}')
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f'{key}: expected a number, got {value!r}') from None
    if not math.isfinite(number):
        raise FormatError(f'{key}: not a finite number ({value!r})')
    return _within(key, number, low, high)


def _within(key: str, value, low, high):
    """``value`` if it lies in ``[low, high]`` (either bound may be None), else a FormatError naming ``key``."""
    def show(number):
        return str(number) if isinstance(number, int) else f'{number:g}'

    if low is not None and value < low:
        raise FormatError(f'{key}: must be >= {show(low)}, got {show(value)}')
    if high is not None and value > high:
        raise FormatError(f'{key}: must be <= {show(high)}, got {show(value)}')
    return value


def _require_finite(name: str, array) -> None:
    """Refuse a non-finite label or geometry, naming the first bad row (atom) of ``array``."""
    if array is None:
        return
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        where = f' (row {bad[0][0]})' if array.ndim == 2 and name in ('positions', 'forces') else ''
        raise FormatError(f'{name}: non-finite value{where}')
