"""Evaluate NEP potentials on the CPU with calorine's ``CPUNEP`` (GPUMD's ``nep_cpu`` in memory).

Why a layer of our own over calorine: campaigns evaluate thousands of frames and committees of several
models, so the functions here stream the frames one at a time through one calculator per model (no list
of ``Atoms`` with attached calculators is built), refuse what ``nep_cpu`` would silently get wrong, and
return labels in this package's conventions. No AiiDA is imported.

Units and signs (the conventions of :class:`~aiida_mlcampaign.formats.frames.Frame` and
``TrainingSetData``):

* energies in eV (total per frame; per-atom energies on request), forces in eV/Å;
* ``virials``: the total virial in eV as a 3x3 tensor, **GPUMD's sign: positive when compressed**,
  ``virial = -V * stress`` (what GPUMD writes as ``virial=`` in ``train.xyz`` and what
  :attr:`Frame.virial` returns). It is the sum of ``nep_cpu``'s per-atom virials and equals
  ``-dE/d(strain)``; the tests check it against a finite strain derivative;
* ``stresses``: ASE's stress in eV/Å^3 (positive = tensile), ``stress = -virial / V``, the quantity a
  ``Frame``/``TrainingSetData`` stores.

What is refused (``ValueError`` naming the frame and the field): species the model does not know,
frames that are not periodic in all three directions (``nep_cpu`` treats every cell as periodic,
while GPUMD's ``nep`` evaluates a ``pbc="F F F"`` frame without images, so the results would differ
silently), and models that are not energy models (dipole/polarizability models give no energies).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    'NepCommittee',
    'committee_deviations',
    'committee_forces',
    'evaluate',
    'iter_committee_forces',
    'iter_evaluate',
    'model_species',
    'nep_calculator',
]


def _header(model_path) -> dict:
    from ..formats.nep import read_nep_header

    return read_nep_header(pathlib.Path(model_path))


def model_species(model_path) -> list[str]:
    """Species of a ``nep.txt`` in type order (from its header)."""
    return list(_header(model_path)['species'])


def _check_model(model_path, header: dict) -> None:
    name = pathlib.Path(model_path).name
    if header['model_type'] != 'potential':
        raise ValueError(f'model {name}: a {header["model_type"]} model ({header["model"]}) predicts no energies '
                         'or forces; an energy model (nep3/nep4/nep5 potential) is needed')
    if header.get('body_matches') is False:
        raise ValueError(f'model {name}: the file has {header["n_body_lines"]} parameter lines, the header implies '
                         f'{header["expected_body_lines"]} (truncated or mixed-up file)')


def nep_calculator(model_path):
    """A ``CPUNEP`` calculator for an energy model, with the checks of this module.

    calorine prints ``nep_cpu``'s banner only in debug mode; it stays off.
    """
    from calorine.calculators import CPUNEP

    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f'model: {model_path} does not exist')
    _check_model(model_path, _header(model_path))
    return CPUNEP(str(model_path))


def _geometry(frame, index: int, species: Sequence[str], name: str):
    """A bare ``ase.Atoms`` (no labels) from a ``Frame`` or an ``Atoms``, after the refusals above."""
    from ase import Atoms

    if isinstance(frame, Atoms):
        symbols = frame.get_chemical_symbols()
        cell, positions, pbc = np.array(frame.cell), frame.get_positions(), tuple(bool(p) for p in frame.pbc)
    else:
        symbols = list(frame.symbols)
        cell, positions, pbc = np.asarray(frame.cell, dtype=float), np.asarray(frame.positions, dtype=float), \
            tuple(frame.pbc)
    extra = sorted(set(symbols) - set(species))
    if extra:
        raise ValueError(f"frame {index}: species {extra} are not in the model's species {list(species)} ({name})")
    if not all(pbc):
        raise ValueError(f'frame {index}: pbc: {pbc} is not periodic in all directions; nep_cpu treats every cell '
                         'as periodic, so the result would differ from GPUMD')
    a, b, c = cell
    if abs(float(np.dot(a, np.cross(b, c)))) < 1e-9:
        raise ValueError(f'frame {index}: cell: the cell has no volume')
    return Atoms(symbols, positions=positions, cell=cell, pbc=True)


def iter_evaluate(model_path, frames: Iterable, *, per_atom: bool = False) -> Iterator[dict]:
    """Yield one dict per frame: ``energy`` (eV), ``forces`` (eV/Å), ``virial`` (3x3, eV, GPUMD sign),
    ``stress`` (3x3, eV/Å^3, ASE sign) and with ``per_atom`` also ``energies`` (eV per atom) and
    ``virials`` (per atom, (natoms, 3, 3), eV).

    One calculator serves every frame; frames are read lazily from ``frames`` (``Frame`` or ``ase.Atoms``).
    """
    calculator = nep_calculator(model_path)
    species = model_species(model_path)
    name = pathlib.Path(model_path).name
    for index, frame in enumerate(frames):
        atoms = _geometry(frame, index, species, name)
        atoms.calc = calculator
        with np.errstate(all='ignore'):
            atoms.get_potential_energy()
        results = calculator.results
        per_atom_virials = np.asarray(results['stresses'], dtype=float).reshape(-1, 3, 3) * atoms.get_volume()
        virial = per_atom_virials.sum(axis=0)
        record = {
            'energy': float(results['energy']),
            'forces': np.array(results['forces'], dtype=float).reshape(-1, 3),
            'virial': virial,
            'stress': -virial / atoms.get_volume(),
        }
        if per_atom:
            record['energies'] = np.array(results['energies'], dtype=float)
            record['virials'] = per_atom_virials
        atoms.calc = None
        yield record


def evaluate(model_path, frames: Iterable, *, per_atom: bool = False) -> dict:
    """Energies, forces and virials of ``frames`` with one NEP, as arrays in ``TrainingSetData``'s layout.

    Returns ``natoms`` (n_frames,), ``energies`` (n_frames,) eV, ``forces`` (all atoms of all frames
    concatenated, (N, 3)) eV/Å, ``virials`` (n_frames, 3, 3) eV with GPUMD's sign, ``stresses``
    (n_frames, 3, 3) eV/Å^3 with ASE's sign, and with ``per_atom`` ``atomic_energies`` (N,) and
    ``atomic_virials`` (N, 3, 3).
    """
    natoms, energies, forces, virials, stresses, atomic_energies, atomic_virials = [], [], [], [], [], [], []
    for record in iter_evaluate(model_path, frames, per_atom=per_atom):
        natoms.append(len(record['forces']))
        energies.append(record['energy'])
        forces.append(record['forces'])
        virials.append(record['virial'])
        stresses.append(record['stress'])
        if per_atom:
            atomic_energies.append(record['energies'])
            atomic_virials.append(record['virials'])
    result = {
        'natoms': np.array(natoms, dtype=np.int64),
        'energies': np.array(energies, dtype=float),
        'forces': np.concatenate(forces) if forces else np.zeros((0, 3)),
        'virials': np.array(virials, dtype=float).reshape(-1, 3, 3),
        'stresses': np.array(stresses, dtype=float).reshape(-1, 3, 3),
    }
    if per_atom:
        result['atomic_energies'] = np.concatenate(atomic_energies) if atomic_energies else np.zeros(0)
        result['atomic_virials'] = np.concatenate(atomic_virials) if atomic_virials else np.zeros((0, 3, 3))
    return result


class NepCommittee:
    """Several NEPs over the same species, one calculator each, kept for many evaluations.

    The exploration driver grades every ``grade_every`` MD steps; building the calculators once keeps a
    grade at the cost of ``n_models`` force evaluations.
    """

    def __init__(self, model_paths: Sequence):
        paths = [pathlib.Path(p) for p in model_paths]
        if len(paths) < 2:
            raise ValueError(f'potentials: a committee needs at least 2 models, got {len(paths)}')
        self.paths = paths
        self.species = model_species(paths[0])
        for path in paths[1:]:
            other = model_species(path)
            if other != self.species:
                raise ValueError(f'potentials: {path.name} has species {other}, {paths[0].name} has {self.species}; '
                                 'every member needs the same species in the same order')
        self.calculators = [nep_calculator(path) for path in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def forces(self, frame, index: int = 0, first=None) -> np.ndarray:
        """Forces of every member on one frame, shape (n_models, natoms, 3), eV/Å.

        ``first``: forces of member 0 already known (the MD calculator's), so they are not recomputed.
        """
        atoms = _geometry(frame, index, self.species, self.paths[0].name)
        stack = []
        for k, calculator in enumerate(self.calculators):
            if k == 0 and first is not None:
                stack.append(np.asarray(first, dtype=float).reshape(-1, 3))
                continue
            atoms.calc = calculator
            with np.errstate(all='ignore'):
                stack.append(np.array(atoms.get_forces(), dtype=float))
        atoms.calc = None
        return np.stack(stack)

    def deviation(self, frame, index: int = 0, first=None) -> float:
        """The committee's force deviation of one frame (:func:`..committee.max_force_deviation`)."""
        from .committee import max_force_deviation

        return max_force_deviation(self.forces(frame, index, first=first))


def iter_committee_forces(model_paths: Sequence, frames: Iterable) -> Iterator[np.ndarray]:
    """Per frame, the forces of every model: arrays (n_models, natoms, 3) in eV/Å."""
    committee = NepCommittee(model_paths)
    for index, frame in enumerate(frames):
        yield committee.forces(frame, index)


def committee_forces(model_paths: Sequence, frames: Iterable) -> list[np.ndarray]:
    """:func:`iter_committee_forces` as a list (one (n_models, natoms, 3) array per frame)."""
    return list(iter_committee_forces(model_paths, frames))


def committee_deviations(model_paths: Sequence, frames: Iterable) -> np.ndarray:
    """Per frame, the largest per-atom force standard deviation across the models (eV/Å)."""
    from .committee import max_force_deviation

    return np.array([max_force_deviation(f) for f in iter_committee_forces(model_paths, frames)], dtype=float)


@contextlib.contextmanager
def model_files(texts: Sequence[str], directory) -> Iterator[list[pathlib.Path]]:
    """Write model texts as ``potential_0.txt``, ``potential_1.txt``... into ``directory`` and yield the paths.

    calorine reads models from files only; callers that hold the text (AiiDA nodes) use this.
    """
    directory = pathlib.Path(directory)
    paths = []
    for k, text in enumerate(texts):
        path = directory / f'potential_{k}.txt'
        path.write_text(text, encoding='utf-8')
        paths.append(path)
    try:
        yield paths
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.remove(path)
