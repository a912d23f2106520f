"""Choosing which explored frames go to DFT, with provenance.

The choice is mlip-2's ``select-add`` (D-optimal MaxVol on the energy Jacobians, divided by atom count,
against the current training set) computed on motep's Jacobians, after a minimum-distance filter and
under a label budget. It runs where the daemon runs: a few seconds for tens of candidates.
"""

from __future__ import annotations

import tempfile

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData


def choose_candidates(potential_text: str, species: list[str], training_frames, candidate_frames, *, budget: int,
                      select_threshold: float, min_distance: float) -> tuple[list[int], dict]:
    """Indices of ``candidate_frames`` to label and a record of why (plain Python; used by the calcfunction)."""
    from aiida_mlcampaign.mtp import engine
    from aiida_mlcampaign.mtp.selection import min_interatomic_distance

    candidate_frames = list(candidate_frames)
    distances = [min_interatomic_distance(f.cell, f.positions, f.pbc) for f in candidate_frames]
    allowed = [i for i, d in enumerate(distances) if d >= min_distance]
    record = {'candidates': len(candidate_frames), 'rejected_min_distance': len(candidate_frames) - len(allowed)}
    if not allowed:
        record['selected'] = 0
        return [], record
    with tempfile.NamedTemporaryFile('w', suffix='.mtp') as handle:
        handle.write(potential_text)
        handle.flush()
        chosen = engine.select_add(
            handle.name, species, list(training_frames), [candidate_frames[i] for i in allowed],
            select_threshold=select_threshold, budget=budget,
        )
    indices = [allowed[int(i)] for i in np.atleast_1d(chosen)]
    record['selected'] = len(indices)
    record['indices'] = indices
    return indices, record


@calcfunction
def select_for_labelling(potential: MtpPotentialData, training_set: TrainingSetData, candidates: TrainingSetData,
                         budget: orm.Int, select_threshold: orm.Float, min_distance: orm.Float) -> dict:
    """The structures to label next (``structure_000``…) and a ``selection`` record."""
    if budget.value < 1:
        raise ValueError(f'budget: must be >= 1, got {budget.value}')
    candidate_frames = list(candidates.iter_frames())
    indices, record = choose_candidates(
        potential.get_content(), potential.species, training_set.iter_frames(), candidate_frames,
        budget=budget.value, select_threshold=select_threshold.value, min_distance=min_distance.value,
    )
    outputs = {'selection': orm.Dict(record)}
    for number, index in enumerate(indices):
        outputs[f'structure_{number:03d}'] = orm.StructureData(ase=candidate_frames[index].to_ase())
    return outputs


@calcfunction
def screen_structures(min_distance: orm.Float, **structures: orm.StructureData) -> dict:
    """The loop's safety filter, the same for every family: structures whose closest atoms are nearer than
    ``min_distance`` (Å) are never sent to DFT (pw.x would waste hours on them or fail). Outputs the kept
    structures under their own keys and ``screening`` (kept and refused keys, every shortest distance)."""
    from aiida_mlcampaign.mtp.selection import min_interatomic_distance

    distances = {}
    for key, structure in structures.items():
        atoms = structure.get_ase()
        distances[key] = float(min_interatomic_distance(atoms.cell[:], atoms.positions, atoms.pbc))
    kept = sorted(key for key, distance in distances.items() if distance >= min_distance.value)
    distances = {key: (value if np.isfinite(value) else None) for key, value in distances.items()}
    refused = sorted(set(distances) - set(kept))
    outputs = {key: orm.StructureData(ase=structures[key].get_ase()) for key in kept}
    outputs['screening'] = orm.Dict({'min_distance': min_distance.value, 'kept': kept, 'refused': refused,
                                     'shortest_distances': distances})
    return outputs
