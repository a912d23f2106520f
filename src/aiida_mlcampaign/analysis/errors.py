"""Errors of machine-learned potentials against reference labels, and parity plots comparing models.

Inputs are the flat arrays of a ``TrainingSetData`` (see ``data/training_set.py``): per frame ``natoms``,
``cells`` (Å), ``pbc``, ``energies`` (eV), ``stresses`` (eV/Å³, ASE sign); per atom ``species_index``,
``positions`` (Å), ``forces`` (eV/Å); plus the node's ``species`` list. A prediction set holds the *same*
frames with the model's labels (what ``MotepEvaluateCalculation.outputs.predictions`` and the NEP
evaluation return), so errors are label differences frame by frame — after checking that the frames
really are the same (atom counts, elements, positions, cells), because a silently shuffled or
filtered prediction set would give meaningless numbers.

Units of the metrics: energy per atom in meV/atom, force components in meV/Å, virial per atom in
meV/atom (virial = −V·stress, the six components xx yy zz yz xz xy, divided by the atom count — the
quantity NEP's ``loss.out`` reports). A label missing (NaN) on either side leaves that frame out of that
property; counts say how many entered. No AiiDA import.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np

from .figures import new_figure, to_png

__all__ = ['check_same_frames', 'error_metrics', 'parity_arrays', 'parity_figure']

_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
_REQUIRED = ('natoms', 'cells', 'pbc', 'energies', 'stresses', 'species_index', 'positions', 'forces', 'species')
_MAX_POINTS = 20000


def _check_arrays(arrays: t.Mapping, name: str) -> None:
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise ValueError(f'{name}: missing arrays {missing} (TrainingSetData layout expected)')


def _symbols(arrays: t.Mapping) -> np.ndarray:
    return np.asarray(arrays['species'], dtype=str)[np.asarray(arrays['species_index'], dtype=int)]


def check_same_frames(reference: t.Mapping, prediction: t.Mapping, model: str, tolerance_A: float = 1e-4) -> None:
    """Raise ``ValueError`` naming ``model`` (and the first offending frame) unless both hold the same frames.

    Same: frame count, atom count per frame, element of every atom, cell (to ``tolerance_A``) and
    positions (to ``tolerance_A``, minimum image along periodic directions, so a program that wraps atoms
    back into the cell still matches).
    """
    _check_arrays(reference, 'reference')
    _check_arrays(prediction, model)
    n_ref, n_pred = len(reference['natoms']), len(prediction['natoms'])
    if n_ref != n_pred:
        raise ValueError(f'{model}: {n_pred} frames, the reference has {n_ref}')
    natoms_ref = np.asarray(reference['natoms'], dtype=int)
    natoms_pred = np.asarray(prediction['natoms'], dtype=int)
    if not np.array_equal(natoms_ref, natoms_pred):
        frame = int(np.flatnonzero(natoms_ref != natoms_pred)[0])
        raise ValueError(
            f'{model}: frame {frame} has {natoms_pred[frame]} atoms, the reference frame has {natoms_ref[frame]}'
        )
    symbols_ref, symbols_pred = _symbols(reference), _symbols(prediction)
    offsets = np.concatenate([[0], np.cumsum(natoms_ref)])
    if not np.array_equal(symbols_ref, symbols_pred):
        atom = int(np.flatnonzero(symbols_ref != symbols_pred)[0])
        frame = int(np.searchsorted(offsets, atom, side='right') - 1)
        raise ValueError(
            f'{model}: frame {frame} atom {atom - offsets[frame]} is {symbols_pred[atom]}, '
            f'the reference has {symbols_ref[atom]}'
        )
    cells_ref = np.asarray(reference['cells'], dtype=float)
    cells_pred = np.asarray(prediction['cells'], dtype=float)
    bad = np.flatnonzero(np.abs(cells_ref - cells_pred).reshape(n_ref, -1).max(axis=1, initial=0) > tolerance_A)
    if bad.size:
        raise ValueError(f'{model}: frame {int(bad[0])} has a different cell from the reference')
    pos_ref = np.asarray(reference['positions'], dtype=float)
    pos_pred = np.asarray(prediction['positions'], dtype=float)
    pbc = np.asarray(reference['pbc'], dtype=bool)
    for frame in range(n_ref):
        lo, hi = offsets[frame], offsets[frame + 1]
        delta = pos_pred[lo:hi] - pos_ref[lo:hi]
        cell = cells_ref[frame]
        if pbc[frame].any() and abs(np.linalg.det(cell)) > 1e-9:
            fractional = np.linalg.solve(cell.T, delta.T).T
            fractional[:, pbc[frame]] -= np.round(fractional[:, pbc[frame]])
            delta = fractional @ cell
        if delta.size and float(np.max(np.linalg.norm(delta, axis=1))) > tolerance_A:
            worst = int(np.argmax(np.linalg.norm(delta, axis=1)))
            raise ValueError(
                f'{model}: frame {frame} atom {worst} is {float(np.linalg.norm(delta[worst])):.3g} Å away from the '
                f'reference position (tolerance {tolerance_A} Å): not the same frames'
            )


def _volumes(cells: np.ndarray) -> np.ndarray:
    return np.abs(np.einsum('ij,ij->i', cells[:, 0], np.cross(cells[:, 1], cells[:, 2])))


def _virial_per_atom(arrays: t.Mapping) -> np.ndarray:
    """(n_frames, 6) −V·stress / natoms in eV/atom (NaN where the stress is missing or the cell has no volume)."""
    stresses = np.asarray(arrays['stresses'], dtype=float).reshape(-1, 3, 3)
    volumes = _volumes(np.asarray(arrays['cells'], dtype=float).reshape(-1, 3, 3))
    volumes = np.where(volumes > 1e-9, volumes, np.nan)
    virial = -stresses * volumes[:, None, None]
    return virial[:, _VOIGT[0], _VOIGT[1]] / np.asarray(arrays['natoms'], dtype=float)[:, None]


def _stats(diff: np.ndarray, scale: float = 1000.0) -> tuple[float | None, float | None, float | None]:
    diff = np.asarray(diff, dtype=float).reshape(-1) * scale
    if diff.size == 0:
        return None, None, None
    return float(np.sqrt(np.mean(diff**2))), float(np.mean(np.abs(diff))), float(np.max(np.abs(diff)))


def error_metrics(reference: t.Mapping, prediction: t.Mapping, model: str = 'prediction') -> dict:
    """RMSE / MAE / max of energy per atom (meV/atom), force components (meV/Å) and virial per atom (meV/atom),
    plus ``force_rmse_by_element_meV_per_A`` {element: value} and the counts ``n_frames``, ``n_energy``,
    ``n_force_atoms``, ``n_virial``. A property with no labelled frame gives None. Call
    :func:`check_same_frames` first (done here too).
    """
    check_same_frames(reference, prediction, model)
    natoms = np.asarray(reference['natoms'], dtype=float)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(reference['natoms'], dtype=int))])

    e_ref = np.asarray(reference['energies'], dtype=float)
    e_pred = np.asarray(prediction['energies'], dtype=float)
    energy_ok = np.isfinite(e_ref) & np.isfinite(e_pred)
    energy_diff = (e_pred - e_ref)[energy_ok] / natoms[energy_ok]

    f_ref = np.asarray(reference['forces'], dtype=float)
    f_pred = np.asarray(prediction['forces'], dtype=float)
    frame_forces_ok = np.array([
        np.isfinite(f_ref[offsets[i]:offsets[i + 1]]).all() and np.isfinite(f_pred[offsets[i]:offsets[i + 1]]).all()
        for i in range(len(natoms))
    ], dtype=bool)
    atom_ok = np.repeat(frame_forces_ok, np.asarray(reference['natoms'], dtype=int))
    force_diff = (f_pred - f_ref)[atom_ok]

    v_ref, v_pred = _virial_per_atom(reference), _virial_per_atom(prediction)
    virial_ok = np.isfinite(v_ref).all(axis=1) & np.isfinite(v_pred).all(axis=1)
    virial_diff = (v_pred - v_ref)[virial_ok]

    metrics: dict = {}
    for name, diff, unit in (('energy', energy_diff, 'meV_per_atom'), ('force', force_diff, 'meV_per_A'),
                             ('virial', virial_diff, 'meV_per_atom')):
        rmse, mae, largest = _stats(diff)
        metrics[f'{name}_rmse_{unit}'] = rmse
        metrics[f'{name}_mae_{unit}'] = mae
        metrics[f'{name}_max_{unit}'] = largest
    symbols = _symbols(reference)[atom_ok]
    by_element = {}
    for element in sorted(set(symbols.tolist())):
        by_element[element] = _stats(force_diff[symbols == element])[0]
    metrics['force_rmse_by_element_meV_per_A'] = by_element
    metrics.update(
        n_frames=int(len(natoms)), n_energy=int(energy_ok.sum()), n_force_atoms=int(atom_ok.sum()),
        n_virial=int(virial_ok.sum()),
    )
    return metrics


def parity_arrays(reference: t.Mapping, predictions: t.Mapping[str, t.Mapping]) -> dict[str, np.ndarray]:
    """Reference and predicted values side by side, for the parity plot and for storing.

    Keys: ``energy_reference_eV_per_atom`` (n_frames,), ``force_reference_eV_per_A`` (n_atoms, 3),
    ``virial_reference_eV_per_atom`` (n_frames, 6), ``force_element_index`` (n_atoms,) into
    ``reference['species']``, and ``energy_<model>_…``, ``force_<model>_…``, ``virial_<model>_…`` per model
    (NaN where a label is missing).
    """
    natoms = np.asarray(reference['natoms'], dtype=float)
    result = {
        'energy_reference_eV_per_atom': np.asarray(reference['energies'], dtype=float) / natoms,
        'force_reference_eV_per_A': np.asarray(reference['forces'], dtype=float).reshape(-1, 3),
        'virial_reference_eV_per_atom': _virial_per_atom(reference),
        'force_element_index': np.asarray(reference['species_index'], dtype=np.int32),
    }
    for model, prediction in predictions.items():
        check_same_frames(reference, prediction, model)
        result[f'energy_{model}_eV_per_atom'] = np.asarray(prediction['energies'], dtype=float) / natoms
        result[f'force_{model}_eV_per_A'] = np.asarray(prediction['forces'], dtype=float).reshape(-1, 3)
        result[f'virial_{model}_eV_per_atom'] = _virial_per_atom(prediction)
    return result


def _subsample(x: np.ndarray, y: np.ndarray, limit: int = _MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) > limit:  # deterministic thinning: a figure of 10^6 points says nothing more than 2·10^4
        keep = np.random.default_rng(0).choice(len(x), limit, replace=False)
        keep.sort()
        x, y = x[keep], y[keep]
    return x, y


def parity_figure(parity: t.Mapping[str, np.ndarray], models: t.Sequence[str], errors: t.Mapping[str, dict],
                  title: str = '') -> bytes:
    """Energy-per-atom and force-component parity panels (plus virial when any model has virials),
    one colour per model, RMSE in the legend."""
    panels = [('energy', 'energy (eV/atom)', 'energy_rmse_meV_per_atom', 'meV/atom'),
              ('force', 'force component (eV/Å)', 'force_rmse_meV_per_A', 'meV/Å')]
    if any(errors[m].get('virial_rmse_meV_per_atom') is not None for m in models):
        panels.append(('virial', 'virial (eV/atom)', 'virial_rmse_meV_per_atom', 'meV/atom'))
    figure, axes = new_figure(ncols=len(panels), width=3.9, height=3.8)
    for axis, (kind, label, key, unit) in zip(np.atleast_1d(axes), panels):
        reference = np.asarray(parity[f'{kind}_reference_{"eV_per_A" if kind == "force" else "eV_per_atom"}'])
        low, high = math.inf, -math.inf
        for index, model in enumerate(models):
            suffix = 'eV_per_A' if kind == 'force' else 'eV_per_atom'
            predicted = np.asarray(parity[f'{kind}_{model}_{suffix}'])
            x, y = _subsample(reference.reshape(-1), predicted.reshape(-1))
            if not len(x):
                continue
            rmse = errors[model].get(key)
            text = f'{model} (RMSE {rmse:.3g} {unit})' if rmse is not None else model
            axis.scatter(x, y, s=4 if kind != 'energy' else 10, alpha=0.5, color=f'C{index % 10}', label=text,
                         edgecolors='none')
            low, high = min(low, x.min(), y.min()), max(high, x.max(), y.max())
        if math.isfinite(low):
            pad = 0.05 * (high - low) + 1e-12
            axis.plot([low - pad, high + pad], [low - pad, high + pad], color='0.4', lw=0.8, ls='--')
            axis.set_xlim(low - pad, high + pad)
            axis.set_ylim(low - pad, high + pad)
        axis.set_xlabel(f'reference {label}')
        axis.set_ylabel(f'predicted {label}')
        axis.legend(fontsize=7, markerscale=2)
    figure.suptitle(title or 'Parity: ' + ', '.join(models))
    return to_png(figure)
