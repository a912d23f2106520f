"""``mlcampaign.al.emt``: a third active-learning family that exists only in the tests, to show the contract.

It is what a plugin author would write for a new family (MACE, ACE...): one module and one entry point
(``tests/plugins/*.dist-info/entry_points.txt``), nothing changed in the loop. The "model" is ASE's EMT with
one fitted number, its energy zero per atom (the mean of DFT minus EMT energy per atom over the training
set); "exploration" rattles the start structures with growing amplitudes and measures uncertainty as the
largest EMT force on an atom (a stand-in for a committee spread); selection takes the most uncertain frames
above ``threshold`` within the label budget, deliberately ignoring ``min_distance`` so that the loop's own
screening is what keeps unsafe frames from DFT. EMT knows Cu, Ag, Au, Ni, Pd, Pt, Al (and H, C, N, O).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction, if_
from ase.calculators.emt import EMT

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.workchains.al_family import ActiveLearningIterationWorkChain

FRAMES_PER_STRUCTURE = 4


def _emt(frame, shift: float):
    atoms = frame.to_ase()
    atoms.calc = EMT()
    return atoms.get_potential_energy() + shift * len(atoms), atoms.get_forces()


@calcfunction
def fit_emt(training_set: TrainingSetData) -> orm.Dict:
    """EMT's energy zero per atom, fitted to the labelled frames."""
    residuals = [(frame.energy - _emt(frame, 0.0)[0]) / len(frame.symbols) for frame in training_set.iter_frames()]
    return orm.Dict({'model': 'EMT', 'energy_shift_per_atom': float(np.mean(residuals)),
                     'species': training_set.species})


@calcfunction
def explore_emt(potential: orm.Dict, rattle: orm.Float, **structures) -> dict:
    """Rattled copies of every start structure (amplitude ``rattle`` * k / n) and each one's uncertainty."""
    frames, uncertainty = [], []
    for number, key in enumerate(sorted(structures)):
        for k in range(1, FRAMES_PER_STRUCTURE + 1):
            atoms = structures[key].get_ase()
            atoms.rattle(rattle.value * k / FRAMES_PER_STRUCTURE, seed=100 * number + k)
            frame = Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], positions=atoms.positions)
            frames.append(frame)
            uncertainty.append(float(np.abs(_emt(frame, 0.0)[1]).max()))
    return {'candidates': TrainingSetData.from_frames(frames, species=potential['species']),
            'uncertainty': orm.List(uncertainty)}


@calcfunction
def select_emt(candidates: TrainingSetData, uncertainty: orm.List, threshold: orm.Float, budget: orm.Int) -> dict:
    """The most uncertain candidates at or above ``threshold``, at most ``budget`` of them."""
    values = uncertainty.get_list()
    order = [i for i in np.argsort(values)[::-1] if values[i] >= threshold.value][:budget.value]
    frames = list(candidates.iter_frames())
    return {f'structure_{n:03d}': orm.StructureData(ase=frames[i].to_ase()) for n, i in enumerate(order)}


@calcfunction
def emt_errors(potential: orm.Dict, frames: TrainingSetData) -> dict:
    """EMT's RMSE against the labels, in the contract's keys and units (eV/Å, eV/atom)."""
    forces, energies = [], []
    for frame in frames.iter_frames():
        energy, predicted = _emt(frame, potential['energy_shift_per_atom'])
        forces.append((predicted - frame.forces).ravel())
        energies.append((energy - frame.energy) / len(frame.symbols))
    return {'errors': orm.Dict({'forces_rmse': float(np.sqrt(np.mean(np.concatenate(forces) ** 2))),
                                'energy_per_atom_rmse': float(np.sqrt(np.mean(np.square(energies))))})}


class EmtIterationWorkChain(ActiveLearningIterationWorkChain):
    """EMT with a fitted energy zero; rattling as exploration; largest force as uncertainty."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='Start structures of the exploration.')
        spec.input('rattle', valid_type=orm.Float, default=lambda: orm.Float(0.3),
                   help='Largest rattle amplitude (Å).')
        spec.input('threshold', valid_type=orm.Float, default=lambda: orm.Float(0.5),
                   help='Frames whose largest EMT force is at least this (eV/Å) are candidates.')
        spec.outline(cls.train, if_(cls.should_explore)(cls.explore, cls.select).else_(cls.fit_only))

    @classmethod
    def get_evaluation(cls, inputs, potential, frames):
        return emt_errors, {'potential': potential, 'frames': frames}

    def train(self):
        self.ctx.potential = self.run_once(fit_emt, self.inputs.training_set,
                                           metadata={'call_link_label': self._label('train')})
        self.out('potential', self.ctx.potential)

    def explore(self):
        outputs = self.run_once(explore_emt, self.ctx.potential, self.inputs.rattle, **self.inputs.structures,
                                metadata={'call_link_label': self._label('explore')})
        self.ctx.candidates, self.ctx.uncertainty = outputs['candidates'], outputs['uncertainty']
        self.out('candidates', self.ctx.candidates)
        self.out('exploration', self.ctx.uncertainty)

    def fit_only(self):
        """A final fit: statistics from the test set alone."""
        statistics = {}
        if 'test_set' in self.inputs:
            errors = self.evaluate(self.ctx.potential, self.inputs.test_set, 'test')['errors'].get_dict()
            statistics.update(test_force_rmse=errors['forces_rmse'],
                              test_energy_rmse_per_atom=errors['energy_per_atom_rmse'])
        self.emit_statistics(statistics)

    def select(self):
        outputs = self.run_once(select_emt, self.ctx.candidates, self.ctx.uncertainty, self.inputs.threshold,
                                self.inputs.label_budget, metadata={'call_link_label': self._label('select')})
        values = self.ctx.uncertainty.get_list()
        above = sum(value >= self.inputs.threshold.value for value in values)
        statistics = {'explored_frames': len(values), 'candidates': above,
                      'candidate_fraction': above / len(values), 'selected': self.emit_selected(outputs)}
        if 'test_set' in self.inputs:
            errors = self.evaluate(self.ctx.potential, self.inputs.test_set, 'test')['errors'].get_dict()
            statistics.update(test_force_rmse=errors['forces_rmse'],
                              test_energy_rmse_per_atom=errors['energy_per_atom_rmse'])
        self.emit_statistics(statistics)
