"""CalcJobs that run motep (MTP training and evaluation on the CPU) on any computer.

motep 0.2.0 is the local stand-in for mlip-2's ``mlp train`` / ``mlp calc-efs``: the same potential
format and numerically identical energies. The CalcJobs only move data: the training set is written
as an mlip ``.cfg`` in the potential's species order, the settings as motep's TOML, and the parser
reads the result back, repairing motep 0.2.0's non-standard ``.mtp`` layout.
"""

from __future__ import annotations

from aiida import orm

from aiida_mlcampaign.calculations.base import PluginCalcJob
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.motep import check_train_settings, evaluate_toml, train_toml


def _validate_species(inputs, _):
    if 'potential' not in inputs or 'training_set' not in inputs:
        return None
    extra = sorted(set(inputs['training_set'].species) - set(inputs['potential'].species))
    if extra:
        return (f'training_set: species {extra} are not in the potential\'s species '
                f'{inputs["potential"].species}; make the potential with those species')


def _validate_train_settings(value, _):
    if value is None:
        return None
    try:
        check_train_settings(value.get_dict())
    except ValueError as exception:
        return str(exception)


def _validate_unlabelled(value, _):
    if value is not None and value.base.attributes.get('num_labelled', 0) < value.num_frames:
        return 'training_set: every frame needs an energy and forces to train on'


class _MotepCalculation(PluginCalcJob):
    """Inputs the motep CalcJobs share. motep runs serially by default (one core); MPI needs mpi4py."""

    _STDOUT = 'motep.out'
    _SETTINGS = 'motep.toml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=MtpPotentialData, help='The MTP: a template to train, or a trained one.')


class MotepTrainCalculation(_MotepCalculation):
    """``motep train``: fit an MTP to a ``TrainingSetData`` (Level2MTP -> LLS -> BFGS -> LLS)."""

    _FINAL = 'final.mtp'
    _DEFAULT_PARSER = 'mlcampaign.motep.train'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData, validator=_validate_unlabelled,
                   help='Labelled frames to fit; written as training.cfg in the potential\'s species order.')
        spec.input('settings', valid_type=orm.Dict, required=False, validator=_validate_train_settings,
                   help='seed, engine, max_iter (BFGS iterations), energy_weight, forces_weight, stress_weight.')
        spec.inputs.validator = _validate_species
        spec.output('potential', valid_type=MtpPotentialData, help='The trained MTP in mlip-2 layout.')
        spec.output('training_errors', valid_type=orm.Dict,
                    help='Errors on the training set: energy (eV, eV/atom), forces (eV/Å), stress (GPa).')
        spec.default_output_node = 'training_errors'

    def prepare_for_submission(self, folder):
        potential = self.inputs.potential
        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        self.inputs.training_set.export_cfg(folder.get_abs_path('training.cfg'), species_order=potential.species)
        with folder.open('initial.mtp', 'w') as handle:
            handle.write(potential.get_content())
        with folder.open(self._SETTINGS, 'w') as handle:
            handle.write(train_toml(potential.species, settings))
        return self._calcinfo(['train', self._SETTINGS], [self._FINAL])


class MotepEvaluateCalculation(_MotepCalculation):
    """``motep evaluate``: energies, forces and stresses of a potential on frames, and errors if labelled."""

    _PREDICTIONS = 'predictions.cfg'
    _DEFAULT_PARSER = 'mlcampaign.motep.evaluate'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('frames', valid_type=TrainingSetData, help='Frames to evaluate (labels optional).')
        spec.output('predictions', valid_type=TrainingSetData, help='The frames with the MTP\'s labels.')
        spec.output('errors', valid_type=orm.Dict, required=False,
                    help='Errors against the frames\' own labels, when they have them.')
        spec.inputs.validator = _validate_frames_species

    def prepare_for_submission(self, folder):
        potential = self.inputs.potential
        self.inputs.frames.export_cfg(folder.get_abs_path('frames.cfg'), species_order=potential.species)
        with folder.open('potential.mtp', 'w') as handle:
            handle.write(potential.get_content())
        with folder.open(self._SETTINGS, 'w') as handle:
            handle.write(evaluate_toml(potential.species, final=self._PREDICTIONS))
        return self._calcinfo(['evaluate', self._SETTINGS], [self._PREDICTIONS])


def _validate_frames_species(inputs, _):
    if 'potential' not in inputs or 'frames' not in inputs:
        return None
    extra = sorted(set(inputs['frames'].species) - set(inputs['potential'].species))
    if extra:
        return f'frames: species {extra} are not in the potential\'s species {inputs["potential"].species}'
