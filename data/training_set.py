"""``TrainingSetData``: one node that holds many labelled frames.

A campaign handles thousands of DFT frames; one node per frame would make every training step
query thousands of nodes. Here all frames live in a handful of flat numpy arrays (atoms of all
frames concatenated, per-frame arrays indexed by frame), so storing, exporting and splitting a set
touch one node. Missing labels are NaN (a frame without stress keeps NaN stress), so frames of
mixed provenance can share one node.
"""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np
from aiida import orm

from aiida_mlcampaign.formats.frames import Frame, FormatError

__all__ = ('TrainingSetData',)

_FRAME_ARRAYS = ('natoms', 'cells', 'pbc', 'energies', 'stresses', 'weights', 'temperatures', 'source_uuids', 'origins')
_ATOM_ARRAYS = ('species_index', 'positions', 'forces')


class TrainingSetData(orm.ArrayData):
    """Labelled frames (species, cell, positions, energy, forces, stress, weight, metadata).

    Units: Å, eV, eV/Å; stress in eV/Å^3 with ASE's sign (positive = tensile). Per-frame metadata:
    ``source_uuids`` (the calculation that produced the frame, '' if unknown), ``temperatures`` (K, NaN if
    unknown) and ``origins`` (a free tag such as ``'rattle'``, ``'aimd'``, ``'al-iter-03'``).
    """

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_frames(cls, frames: t.Iterable[Frame], species: t.Sequence[str] | None = None) -> 'TrainingSetData':
        """Build an unstored node from frames; ``species`` fixes the species order (default: sorted)."""
        frames = list(frames)
        if not frames:
            raise ValueError('frames: a training set needs at least one frame')
        found = sorted({symbol for frame in frames for symbol in frame.symbols})
        if species is None:
            species = found
        else:
            species = [str(s) for s in species]
            missing = sorted(set(found) - set(species))
            if missing:
                raise ValueError(f'species: {missing} occur in the frames but not in the species list {species}')
        index_of = {symbol: i for i, symbol in enumerate(species)}
        natoms = np.array([frame.natoms for frame in frames], dtype=np.int64)
        nan33 = np.full((3, 3), np.nan)
        arrays = {
            'natoms': natoms,
            'cells': np.array([frame.cell for frame in frames], dtype=float),
            'pbc': np.array([frame.pbc for frame in frames], dtype=bool),
            'energies': np.array([np.nan if f.energy is None else f.energy for f in frames], dtype=float),
            'stresses': np.array([nan33 if f.stress is None else f.stress for f in frames], dtype=float),
            'weights': np.array([frame.weight for frame in frames], dtype=float),
            'temperatures': np.array([_float_or_nan(f.info.get('temperature')) for f in frames], dtype=float),
            'source_uuids': np.array([str(f.info.get('source_uuid', '')) for f in frames], dtype='U36'),
            'origins': np.array([str(f.info.get('origin', '')) for f in frames], dtype=str),
            'species_index': np.concatenate([[index_of[s] for s in f.symbols] for f in frames]).astype(np.int32),
            'positions': np.concatenate([frame.positions for frame in frames]).astype(float),
            'forces': np.concatenate(
                [np.full((f.natoms, 3), np.nan) if f.forces is None else f.forces for f in frames]
            ).astype(float),
        }
        node = cls()
        node._set_all(arrays, species)
        return node

    @classmethod
    def from_arrays(cls, species: t.Sequence[str], **arrays) -> 'TrainingSetData':
        """Build from arrays in this node's own layout (used by merge/subset to avoid Frame round trips)."""
        node = cls()
        node._set_all(arrays, list(species))
        return node

    @classmethod
    def from_extxyz(cls, path, species=None, **defaults) -> 'TrainingSetData':
        """Import an extended-XYZ file (GPUMD or ASE flavour). ``defaults`` fill missing info keys."""
        from aiida_mlcampaign.formats.extxyz import read_extxyz

        frames = []
        for frame in read_extxyz(path):
            for key, value in defaults.items():
                frame.info.setdefault(key, value)
            frames.append(frame)
        return cls.from_frames(frames, species=species)

    @classmethod
    def from_ase(cls, images, species=None, **defaults) -> 'TrainingSetData':
        frames = []
        for atoms in images:
            frame = Frame.from_ase(atoms)
            for key, value in defaults.items():
                frame.info.setdefault(key, value)
            frames.append(frame)
        return cls.from_frames(frames, species=species)

    def _set_all(self, arrays: dict, species: list[str]) -> None:
        self._check_layout(arrays, species)
        for name in _FRAME_ARRAYS + _ATOM_ARRAYS:
            self.set_array(name, np.asarray(arrays[name]))
        energies = arrays['energies']
        self.base.attributes.set('species', list(species))
        self.base.attributes.set('num_frames', int(len(arrays['natoms'])))
        self.base.attributes.set('num_atoms_total', int(np.sum(arrays['natoms'])))
        self.base.attributes.set('num_labelled', int(np.sum(np.isfinite(energies))))
        self.base.attributes.set('has_stress', bool(np.isfinite(arrays['stresses']).all()) if len(energies) else False)

    @staticmethod
    def _check_layout(arrays: dict, species: list[str]) -> None:
        missing = [name for name in _FRAME_ARRAYS + _ATOM_ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f'arrays: missing {missing}')
        nframes = len(arrays['natoms'])
        ntotal = int(np.sum(arrays['natoms']))
        for name in _FRAME_ARRAYS:
            if len(arrays[name]) != nframes:
                raise ValueError(f'{name}: expected {nframes} rows (one per frame), got {len(arrays[name])}')
        for name in _ATOM_ARRAYS:
            if len(arrays[name]) != ntotal:
                raise ValueError(f'{name}: expected {ntotal} rows (one per atom), got {len(arrays[name])}')
        index = np.asarray(arrays['species_index'])
        if index.size and (index.min() < 0 or index.max() >= len(species)):
            raise ValueError(f'species_index: values must index the species list {species}')
        weights = np.asarray(arrays['weights'])
        if (weights <= 0).any():
            raise ValueError('weights: every frame weight must be positive')

    # ----------------------------------------------------------------------------------------- reading
    @property
    def species(self) -> list[str]:
        return list(self.base.attributes.get('species'))

    @property
    def num_frames(self) -> int:
        return int(self.base.attributes.get('num_frames'))

    def __len__(self) -> int:
        return self.num_frames

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: self.get_array(name) for name in _FRAME_ARRAYS + _ATOM_ARRAYS}

    @property
    def offsets(self) -> np.ndarray:
        """Index of each frame's first atom in the per-atom arrays (length ``num_frames + 1``)."""
        return np.concatenate([[0], np.cumsum(self.get_array('natoms'))])

    def iter_frames(self) -> t.Iterator[Frame]:
        arrays = self._arrays()
        yield from _frames_from_arrays(arrays, self.species)

    def get_frame(self, index: int) -> Frame:
        """Frame ``index``; negative indices count from the end as for a list."""
        # Normalise first: ``_subset_arrays`` slices atoms with offsets[i]:offsets[i + 1], which for a
        # negative ``i`` is an empty range and would give a frame with no atoms but the last frame's labels.
        try:
            index = range(self.num_frames)[index]
        except IndexError:
            raise IndexError(f'index: {index} out of range for {self.num_frames} frames') from None
        arrays = self._arrays()
        return next(_frames_from_arrays(_subset_arrays(arrays, [index]), self.species))

    def to_ase(self) -> list:
        return [frame.to_ase() for frame in self.iter_frames()]

    def structure_hashes(self) -> list[str]:
        return [frame.structure_hash() for frame in self.iter_frames()]

    # ----------------------------------------------------------------------------------------- exporting
    def export_extxyz(self, path) -> pathlib.Path:
        """Write GPUMD's ``train.xyz`` conventions (total virial in eV, ``force`` key, ``weight``)."""
        from aiida_mlcampaign.formats.extxyz import write_extxyz

        write_extxyz(self.iter_frames(), path)
        return pathlib.Path(path)

    def export_cfg(self, path, species_order: t.Sequence[str] | None = None) -> pathlib.Path:
        """Write mlip-2 ``.cfg`` (``PlusStress = -V * stress``); type indices follow ``species_order``."""
        from aiida_mlcampaign.formats.mlip_cfg import write_cfg

        write_cfg(self.iter_frames(), path, list(species_order or self.species))
        return pathlib.Path(path)

    # ----------------------------------------------------------------------------------------- set algebra
    def subset(self, indices: t.Sequence[int]) -> 'TrainingSetData':
        """An unstored node with the chosen frames in the given order."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f'indices: {bad} out of range for {self.num_frames} frames')
        return TrainingSetData.from_arrays(self.species, **_subset_arrays(self._arrays(), indices))

    def split_indices(self, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic train/test indices: the same node, fraction and seed always give the same split."""
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f'test_fraction: must be in [0, 1), got {test_fraction}')
        order = np.random.default_rng(seed).permutation(self.num_frames)
        n_test = int(round(test_fraction * self.num_frames))
        if test_fraction > 0 and n_test == 0 and self.num_frames > 1:
            n_test = 1
        # Never leave the training set empty: a fraction close to 1 (or any positive fraction of a
        # one-frame set) would otherwise round every frame into the test set.
        n_test = min(n_test, max(self.num_frames - 1, 0))
        return np.sort(order[n_test:]), np.sort(order[:n_test])

    @staticmethod
    def merge(sets: t.Sequence['TrainingSetData'], deduplicate: bool = True) -> 'TrainingSetData':
        """Concatenate sets; with ``deduplicate`` a frame whose structure hash was already seen is dropped.

        The first occurrence wins, so merging a new batch into an existing set never replaces a label the
        earlier set already had.
        """
        if not sets:
            raise ValueError('sets: nothing to merge')
        species: list[str] = []
        for ts in sets:
            species += [s for s in ts.species if s not in species]
        merged = {name: [] for name in _FRAME_ARRAYS + _ATOM_ARRAYS}
        seen: set[str] = set()
        for ts in sets:
            arrays = ts._arrays()
            remap = np.array([species.index(s) for s in ts.species], dtype=np.int32)
            arrays['species_index'] = remap[arrays['species_index']] if len(remap) else arrays['species_index']
            keep = []
            for i, frame_hash in enumerate(ts.structure_hashes() if deduplicate else range(ts.num_frames)):
                if deduplicate:
                    if frame_hash in seen:
                        continue
                    seen.add(frame_hash)
                keep.append(i)
            chosen = _subset_arrays(arrays, keep)
            for name in merged:
                merged[name].append(chosen[name])
        joined = {name: np.concatenate(parts) if parts else np.array([]) for name, parts in merged.items()}
        # Unicode arrays of different widths concatenate to the widest; nothing else to reconcile.
        return TrainingSetData.from_arrays(species, **joined)


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def _subset_arrays(arrays: dict[str, np.ndarray], indices: t.Sequence[int]) -> dict[str, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum(arrays['natoms'])])
    atom_index = (
        np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in indices]).astype(np.int64)
        if len(indices)
        else np.array([], dtype=np.int64)
    )
    result = {name: arrays[name][list(indices)] for name in _FRAME_ARRAYS}
    result.update({name: arrays[name][atom_index] for name in _ATOM_ARRAYS})
    return result


def _frames_from_arrays(arrays: dict[str, np.ndarray], species: list[str]) -> t.Iterator[Frame]:
    offsets = np.concatenate([[0], np.cumsum(arrays['natoms'])])
    for i in range(len(arrays['natoms'])):
        lo, hi = offsets[i], offsets[i + 1]
        forces = arrays['forces'][lo:hi]
        stress = arrays['stresses'][i]
        energy = arrays['energies'][i]
        info = {'origin': str(arrays['origins'][i]), 'source_uuid': str(arrays['source_uuids'][i])}
        if np.isfinite(arrays['temperatures'][i]):
            info['temperature'] = float(arrays['temperatures'][i])
        info = {k: v for k, v in info.items() if v != ''}
        try:
            yield Frame(
                symbols=[species[j] for j in arrays['species_index'][lo:hi]],
                cell=arrays['cells'][i],
                positions=arrays['positions'][lo:hi],
                pbc=tuple(arrays['pbc'][i]),
                energy=float(energy) if np.isfinite(energy) else None,
                forces=forces if np.isfinite(forces).all() else None,
                stress=stress if np.isfinite(stress).all() else None,
                weight=float(arrays['weights'][i]),
                info=info,
            )
        except FormatError as exception:
            raise FormatError(f'frame {i}: {exception}') from exception
