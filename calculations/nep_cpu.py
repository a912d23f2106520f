"""NEP on the daemon's CPU, with provenance: evaluation and committee selection as calcfunctions.

Both run in seconds for the frame counts of an active-learning iteration (calorine's ``CPUNEP``, GPUMD's
``nep_cpu``), so a CalcJob and a remote computer would only add latency. The numbers come from
:mod:`aiida_mlcampaign.nep.cpu` and :mod:`aiida_mlcampaign.nep.committee`; these functions only move data
between nodes and those functions.
"""

from __future__ import annotations

import tempfile

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData

__all__ = ('evaluate_nep', 'nep_errors', 'select_by_committee')


def _natural_key(key: str):
    from aiida_mlcampaign.calculations.explore import _natural_key as key_function

    return key_function(key)


def _check_potential(name: str, potential) -> None:
    if not isinstance(potential, NepPotentialData):
        raise ValueError(f'{name}: expected a NepPotentialData, got {type(potential).__name__}')
    if potential.model_type != 'potential':
        raise ValueError(f'{name}: a {potential.model_type} model predicts no energies or forces')


def _check_species(name: str, frames: TrainingSetData, potential: NepPotentialData) -> None:
    extra = sorted(set(frames.species) - set(potential.species))
    if extra:
        raise ValueError(f"{name}: species {extra} are not in the potential's species {potential.species}")


def nep_errors(frames, energies, forces, stresses) -> dict:
    """Error statistics against the labels of ``frames`` (``Frame`` objects), with the keys of motep's
    ``errors`` (:func:`aiida_mlcampaign.mtp.engine.errors_against_references`: ``energy``,
    ``energy_per_atom``, ``forces``, ``stress`` (GPa) x ``_rmse``/``_mae``/``_max``, and counts)."""
    from aiida_mlcampaign.formats.frames import matrix_to_voigt
    from aiida_mlcampaign.mtp.engine import errors_against_references

    images = [frame.to_ase() for frame in frames]
    voigt = np.array([matrix_to_voigt(s) for s in stresses]).reshape(-1, 6)
    errors = errors_against_references(images, energies, forces, voigt)
    # A kind without labels (frames without stress) has no error: None, as motep's log gives, since a Dict node
    # cannot store NaN (it once made a NEP loop on stress-free labels end Excepted).
    return {key: (value if not isinstance(value, float) or np.isfinite(value) else None)
            for key, value in errors.items()}


@calcfunction
def evaluate_nep(potential: NepPotentialData, frames: TrainingSetData) -> dict:
    """The NEP's energy, forces and virial on ``frames``: ``predictions`` (the same frames labelled by the NEP,
    stress = -virial / V, origin and source kept) and, when ``frames`` carries labels, ``errors`` (the keys of
    ``MotepEvaluateCalculation``'s ``errors``)."""
    from aiida_mlcampaign.formats.frames import Frame
    from aiida_mlcampaign.nep import cpu

    _check_potential('potential', potential)
    _check_species('frames', frames, potential)
    with tempfile.TemporaryDirectory() as directory:
        path = potential.write(directory)
        result = cpu.evaluate(path, frames.iter_frames())

    offsets = np.concatenate([[0], np.cumsum(result['natoms'])])
    reference = list(frames.iter_frames())
    predicted, forces = [], []
    for i, frame in enumerate(reference):
        force = result['forces'][offsets[i]:offsets[i + 1]]
        forces.append(force)
        predicted.append(Frame(
            symbols=frame.symbols, cell=frame.cell, positions=frame.positions, pbc=frame.pbc,
            energy=result['energies'][i], forces=force, stress=result['stresses'][i], weight=frame.weight,
            info={key: value for key, value in frame.info.items() if key in ('source_uuid', 'origin', 'temperature')},
        ))
    outputs = {'predictions': TrainingSetData.from_frames(predicted, species=frames.species)}
    if frames.base.attributes.get('num_labelled', 0) > 0 or any(f.forces is not None for f in reference):
        outputs['errors'] = orm.Dict(nep_errors(reference, result['energies'], forces, result['stresses']))
    return outputs


@calcfunction
def select_by_committee(candidates: TrainingSetData, lower: orm.Float, upper: orm.Float, budget: orm.Int,
                        min_separation: orm.Float | None = None, **potentials) -> dict:
    """The candidates to label next (``structure_0000``...), chosen by the committee's force deviation.

    ``potentials``: the committee (at least 2 ``NepPotentialData``, same species in the same order). A
    candidate qualifies when ``lower <= deviation < upper`` (eV/Å); among those the most uncertain is taken
    first, then greedy farthest-point sampling on a structural descriptor, skipping frames within
    ``min_separation`` (default :data:`aiida_mlcampaign.nep.committee.DEFAULT_MIN_SEPARATION`) of a chosen one
    (:func:`aiida_mlcampaign.nep.committee.select_in_trust_window`). Outputs ``deviations`` (``ArrayData``:
    ``deviations`` per candidate, eV/Å, and ``selected`` indices) and ``statistics`` (counts below / in / above
    the window, selected indices, their deviations, the reason for every choice and refusal).
    """
    from aiida_mlcampaign.nep import committee, cpu

    keys = sorted(potentials, key=_natural_key)
    if len(keys) < 2:
        raise ValueError(f'potentials: a committee needs at least 2 NEPs, got {len(keys)}')
    for key in keys:
        _check_potential(f'potentials.{key}', potentials[key])
        if potentials[key].species != potentials[keys[0]].species:
            raise ValueError(f'potentials.{key}: species {potentials[key].species} differ from potentials.{keys[0]} '
                             f'{potentials[keys[0]].species}')
    _check_species('candidates', candidates, potentials[keys[0]])
    if budget.value < 1:
        raise ValueError(f'budget: must be >= 1, got {budget.value}')
    separation = committee.DEFAULT_MIN_SEPARATION if min_separation is None else min_separation.value

    frames = list(candidates.iter_frames())
    with tempfile.TemporaryDirectory() as directory:
        with cpu.model_files([potentials[key].get_content() for key in keys], directory) as paths:
            deviations = cpu.committee_deviations(paths, frames)
    descriptors = committee.structure_descriptors(frames, candidates.species)
    choice = committee.select_in_trust_window(deviations, lower.value, upper.value, budget.value,
                                              descriptors=descriptors, min_separation=separation)

    array = orm.ArrayData()
    array.set_array('deviations', deviations)
    array.set_array('selected', np.array(choice.indices, dtype=np.int64))
    statistics = {
        'candidates': len(frames), 'models': len(keys), 'members': keys,
        'lower': lower.value, 'upper': upper.value, 'budget': budget.value, 'min_separation': separation,
        'below': choice.counts['below'], 'in_window': choice.counts['in_window'], 'above': choice.counts['above'],
        'not_finite': choice.counts['not_finite'], 'near_duplicates': choice.counts['near_duplicates'],
        'over_budget': choice.counts['over_budget'], 'selected': len(choice.indices),
        'indices': list(choice.indices),
        'selected_deviations': [float(deviations[i]) for i in choice.indices],
        'max_deviation': float(np.nanmax(deviations)) if np.isfinite(deviations).any() else None,
        'reasons': list(choice.reasons), 'rejected': choice.to_dict()['rejected'],
    }
    outputs = {'deviations': array, 'statistics': orm.Dict(statistics)}
    for number, index in enumerate(choice.indices):
        outputs[f'structure_{number:04d}'] = orm.StructureData(ase=frames[index].to_ase())
    return outputs
