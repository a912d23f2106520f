"""CalcJobs around mlip-2's ``mlp`` and LAMMPS with ``pair_style mlip``: the MTP active-learning loop.

``mlp train`` -> ``mlp calc-grade`` (active set, ``.als``) -> LAMMPS exploration with selection -> ``mlp
select-add`` -> DFT -> retrain (``shared/docs/mtp-formats.md`` §4-§5). mlip-2 is only ever run on the
user's computer (its licence forbids redistribution); these classes only write inputs and retrieve outputs.
Frames are written with ``TrainingSetData.export_cfg`` in the potential's species order, so cfg type ``i``
is ``potential.species[i]`` everywhere (and LAMMPS type ``i + 1``).

The exit status of the executable is written to ``exit_status.txt`` by a line the CalcJob appends right
after the run line (``CalcInfo.append_text``); LAMMPS' status 8 is the mlip interface stopping on
``select:threshold-break`` (a result, not a failure), 7 a failed MLIP initialisation.
"""

from __future__ import annotations

from aiida import orm

from aiida_mlcampaign.calculations.base import PluginCalcJob

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.mlip2 import (
    calc_efs_command,
    calc_errors_command,
    calc_grade_command,
    check_grade_options,
    check_lammps_parameters,
    check_select_add_options,
    check_train_options,
    lammps_data,
    lammps_mlip_input,
    mlip_ini,
    select_add_command,
    train_command,
)



# ----------------------------------------------------------------------------------------- validators


def _checker(check, name='options'):
    def validate(value, _):
        if value is None:
            return None
        try:
            check(value.get_dict())
        except ValueError as exception:
            return str(exception) if str(exception).startswith(name) else f'{name}: {exception}'
    return validate


def _labelled(port):
    def validate(value, _):
        if value is not None and value.base.attributes.get('num_labelled', 0) < value.num_frames:
            return f'{port}: every frame needs an energy and forces (it has {value.num_frames} frames, ' \
                   f'{value.base.attributes.get("num_labelled", 0)} labelled)'
    return validate


def _trained(value, _):
    if value is not None and not value.is_trained:
        return 'potential: is an untrained template; this command needs a trained potential'


def _species_within(*ports):
    def validate(inputs, _):
        if 'potential' not in inputs:
            return None
        species = inputs['potential'].species
        for port in ports:
            if port in inputs:
                extra = sorted(set(inputs[port].species) - set(species))
                if extra:
                    return f"{port}: species {extra} are not in the potential's species {species}"
        return None
    return validate


def _total_mpiprocs(resources: dict) -> int | None:
    """Ranks the resources ask for, None when they leave it to the computer's default."""
    if 'tot_num_mpiprocs' in resources:
        return int(resources['tot_num_mpiprocs'])
    if 'num_mpiprocs_per_machine' in resources:
        return int(resources.get('num_machines', 1)) * int(resources['num_mpiprocs_per_machine'])
    return None


def _one_rank(inputs, why: str) -> str | None:
    options = inputs.get('metadata', {}).get('options', {})
    resources = options.get('resources', {}) or {}
    ranks = _total_mpiprocs(resources)
    if ranks != 1 or int(resources.get('num_machines', 1)) != 1:
        return (f'metadata.options.resources: {why} needs exactly one MPI rank; got {resources} '
                f'(set num_machines=1, num_mpiprocs_per_machine=1)')
    return None


def _selection_serial(command):
    def validate(inputs, ctx):
        return _one_rank(inputs, f'mlp {command} (active-set selection)')
    return validate


def _all(*validators):
    def validate(inputs, ctx):
        for validator in validators:
            message = validator(inputs, ctx)
            if message:
                return message
        return None
    return validate


# ----------------------------------------------------------------------------------------- base


class _MlipCalculation(PluginCalcJob):
    """What all mlip-2 / LAMMPS-mlip CalcJobs share: the potential input (one rank by default; mlp train may use
    more with withmpi)."""

    _STDOUT = 'mlp.out'
    _STDERR = 'mlp.err'
    _POTENTIAL = 'potential.mtp'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=MtpPotentialData,
                   help='The MTP (mlip-2 layout); its species order fixes the cfg type indices.')

    def _write_potential(self, folder):
        with folder.open(self._POTENTIAL, 'w') as handle:
            handle.write(self.inputs.potential.get_content())


def _mlp_arguments(command: list[str]) -> list[str]:
    """The code is ``mlp`` itself, so its arguments are the vector without the leading ``mlp``."""
    assert command[0] == 'mlp'
    return command[1:]


# ----------------------------------------------------------------------------------------- mlp train


class MlpTrainCalculation(_MlipCalculation):
    """``mlp train``: fit an MTP to labelled frames; returns the trained potential and the error report."""

    _TRAINING = 'training.cfg'
    _VALIDATION = 'validation.cfg'
    _TRAINED = 'trained.mtp'
    _DEFAULT_PARSER = 'mlcampaign.mlp.train'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData, validator=_labelled('training_set'),
                   help='Labelled frames to fit; written as training.cfg in the potential\'s species order.')
        spec.input('validation_set', valid_type=TrainingSetData, required=False,
                   validator=_labelled('validation_set'),
                   help='Labelled frames for --valid-cfgs; mlp prints VALIDATION ERRORS for them.')
        spec.input('options', valid_type=orm.Dict, required=False, validator=_checker(check_train_options),
                   help='energy_weight, force_weight, stress_weight, scale_by_force, max_iter, bfgs_conv_tol, '
                        'weighting, init_params (random|same), skip_preinit, update_mindist.')
        spec.inputs.validator = _species_within('training_set', 'validation_set')
        spec.output('potential', valid_type=MtpPotentialData, help='The trained MTP (training errors attached).')
        spec.output('training_errors', valid_type=orm.Dict,
                    help='TRAIN ERRORS report: energy (eV), energy_per_atom, forces (eV/Å), virial (eV), stress (GPa).')
        spec.output('validation_errors', valid_type=orm.Dict, required=False,
                    help='VALIDATION ERRORS report, with validation_set.')
        spec.output('summary', valid_type=orm.Dict,
                    help='bfgs_iterations, final_loss, max_iter, reached_max_iter, pretraining, mindist.')
        spec.default_output_node = 'training_errors'

    def prepare_for_submission(self, folder):
        species = self.inputs.potential.species
        options = self.inputs.options.get_dict() if 'options' in self.inputs else {}
        self._write_potential(folder)
        self.inputs.training_set.export_cfg(folder.get_abs_path(self._TRAINING), species_order=species)
        valid = None
        if 'validation_set' in self.inputs:
            valid = self._VALIDATION
            self.inputs.validation_set.export_cfg(folder.get_abs_path(valid), species_order=species)
        command = train_command(options, self._POTENTIAL, self._TRAINING, self._TRAINED, valid_cfgs=valid)
        return self._calcinfo(_mlp_arguments(command), [self._TRAINED])


# ----------------------------------------------------------------------------------------- calc-efs / errors


class MlpCalcEfsCalculation(_MlipCalculation):
    """``mlp calc-efs``: the potential's energies, forces and stresses on frames."""

    _FRAMES = 'frames.cfg'
    _PREDICTIONS = 'predictions.cfg'
    _DEFAULT_PARSER = 'mlcampaign.mlp.calc_efs'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['potential'].validator = _trained
        spec.input('frames', valid_type=TrainingSetData, help='Frames to evaluate (labels optional, ignored).')
        spec.inputs.validator = _species_within('frames')
        spec.output('predictions', valid_type=TrainingSetData,
                    help='The frames with the MTP\'s energies, forces and stresses as labels.')

    def prepare_for_submission(self, folder):
        self._write_potential(folder)
        self.inputs.frames.export_cfg(folder.get_abs_path(self._FRAMES), species_order=self.inputs.potential.species)
        command = calc_efs_command(self._POTENTIAL, self._FRAMES, self._PREDICTIONS)
        return self._calcinfo(_mlp_arguments(command), [self._PREDICTIONS])


class MlpCalcErrorsCalculation(_MlipCalculation):
    """``mlp calc-errors``: error report of the potential against labelled frames."""

    _FRAMES = 'frames.cfg'
    _DEFAULT_PARSER = 'mlcampaign.mlp.calc_errors'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['potential'].validator = _trained
        spec.input('frames', valid_type=TrainingSetData, validator=_labelled('frames'),
                   help='Labelled frames to compare against.')
        spec.inputs.validator = _species_within('frames')
        spec.output('errors', valid_type=orm.Dict,
                    help='energy (eV), energy_per_atom, forces (eV/Å), virial (eV), stress (GPa): count, max, mae, '
                         'rmse, relative errors.')
        spec.default_output_node = 'errors'

    def prepare_for_submission(self, folder):
        self._write_potential(folder)
        self.inputs.frames.export_cfg(folder.get_abs_path(self._FRAMES), species_order=self.inputs.potential.species)
        return self._calcinfo(_mlp_arguments(calc_errors_command(self._POTENTIAL, self._FRAMES)), [])


# ----------------------------------------------------------------------------------------- calc-grade


class MlpCalcGradeCalculation(_MlipCalculation):
    """``mlp calc-grade``: active set from the training set (saved as ``.als``) and MaxVol grades of frames."""

    _TRAINING = 'training.cfg'
    _FRAMES = 'frames.cfg'
    _GRADED = 'graded.cfg'
    _STATE = 'state.als'
    _DEFAULT_PARSER = 'mlcampaign.mlp.calc_grade'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['potential'].validator = _trained
        spec.input('training_set', valid_type=TrainingSetData,
                   help='Frames the active set is selected from (labels not needed).')
        spec.input('frames', valid_type=TrainingSetData, required=False,
                   help='Frames to grade; default: the training set itself (as in the standard loop).')
        spec.input('options', valid_type=orm.Dict, required=False, validator=_checker(check_grade_options),
                   help='init_threshold, select_threshold, swap_threshold.')
        spec.inputs.validator = _all(_species_within('training_set', 'frames'), _selection_serial('calc-grade'))
        spec.output('grades', valid_type=orm.ArrayData,
                    help='Array mv_grade (one extrapolation grade per graded frame, input order).')
        spec.output('graded_frames', valid_type=TrainingSetData,
                    help='The graded frames with their input labels (mlp keeps the references).')
        spec.output('state', valid_type=orm.SinglefileData,
                    help='The active-learning state (.als) for select:load-state / further selection.')

    def prepare_for_submission(self, folder):
        species = self.inputs.potential.species
        options = self.inputs.options.get_dict() if 'options' in self.inputs else {}
        self._write_potential(folder)
        self.inputs.training_set.export_cfg(folder.get_abs_path(self._TRAINING), species_order=species)
        frames = self._TRAINING
        if 'frames' in self.inputs:
            frames = self._FRAMES
            self.inputs.frames.export_cfg(folder.get_abs_path(frames), species_order=species)
        command = calc_grade_command(options, self._POTENTIAL, self._TRAINING, frames, self._GRADED, self._STATE)
        return self._calcinfo(_mlp_arguments(command), [self._GRADED, self._STATE])


# ----------------------------------------------------------------------------------------- select-add


class MlpSelectAddCalculation(_MlipCalculation):
    """``mlp select-add``: which candidates (e.g. LAMMPS-preselected frames) extend the active set -> DFT."""

    _TRAINING = 'training.cfg'
    _CANDIDATES = 'candidates.cfg'
    _DIFF = 'diff.cfg'
    _SELECTED = 'selected.cfg'
    _STATE = 'state.als'
    _DEFAULT_PARSER = 'mlcampaign.mlp.select_add'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['potential'].validator = _trained
        spec.input('training_set', valid_type=TrainingSetData, help='The current training set (labels not needed).')
        spec.input('candidates', valid_type=TrainingSetData,
                   help='Candidate frames, typically the preselected output of the LAMMPS exploration(s).')
        spec.input('options', valid_type=orm.Dict, required=False, validator=_checker(check_select_add_options),
                   help='init_threshold, select_threshold, swap_threshold, selection_limit, weighting.')
        spec.inputs.validator = _all(_species_within('training_set', 'candidates'), _selection_serial('select-add'))
        spec.output('selected', valid_type=TrainingSetData, required=False,
                    help='The candidates to compute with DFT, without labels (absent when none was selected).')
        spec.output('state', valid_type=orm.SinglefileData, help='The active-learning state (.als) after selection.')
        spec.output('summary', valid_type=orm.Dict,
                    help='num_training, active_set_size, num_candidates, num_selected, candidate_indices.')
        spec.default_output_node = 'summary'

    def prepare_for_submission(self, folder):
        species = self.inputs.potential.species
        options = self.inputs.options.get_dict() if 'options' in self.inputs else {}
        self._write_potential(folder)
        self.inputs.training_set.export_cfg(folder.get_abs_path(self._TRAINING), species_order=species)
        self.inputs.candidates.export_cfg(folder.get_abs_path(self._CANDIDATES), species_order=species)
        command = select_add_command(options, self._POTENTIAL, self._TRAINING, self._CANDIDATES, self._DIFF,
                                     self._STATE, self._SELECTED)
        return self._calcinfo(_mlp_arguments(command), [self._DIFF, self._STATE])


# ----------------------------------------------------------------------------------------- LAMMPS


def _validate_parameters(value, _):
    if value is None:
        return None
    try:
        check_lammps_parameters(value.get_dict())
    except ValueError as exception:
        return str(exception)


def _validate_lammps(inputs, _):
    options = inputs.get('metadata', {}).get('options', {})
    if options.get('append_text'):
        return ('metadata.options.append_text: must be empty; the exit status of LAMMPS (8 = extrapolation stop) '
                'is recorded by the line right after the run line. Use the code\'s append text instead.')
    if 'parameters' not in inputs:
        return None
    try:
        parameters = check_lammps_parameters(inputs['parameters'].get_dict())
    except ValueError:
        return None  # reported by the parameters port itself
    if parameters['select']:
        message = _one_rank(inputs, 'LAMMPS with mlip selection (select TRUE)')
        if message:
            return message
        if 'state' not in inputs:
            return 'state: the .als active-learning state (from mlp calc-grade or select-add) is needed with select'
    if 'potential' in inputs and 'structure' in inputs:
        species = inputs['potential'].species
        structure = inputs['structure']
        extra = sorted({symbol for kind in structure.kinds for symbol in kind.symbols} - set(species))
        if extra:
            return f"structure: elements {extra} are not in the potential's species {species}"
        if not all(structure.pbc):
            return f'structure: must be periodic in all three directions, pbc = {list(structure.pbc)}'
    return None


class LammpsMlipExploreCalculation(_MlipCalculation):
    """NVT MD in LAMMPS with ``pair_style mlip``: with selection, saves frames with γ > threshold to
    ``preselected.cfg`` and stops (exit status 8, not a failure) once γ > threshold_break.

    Selection runs whole-configuration grading, which mlip-2's LAMMPS interface allows on one MPI rank only;
    run several independent explorations for parallelism.
    """

    _STDOUT = 'lammps.out'
    _STDERR = 'lammps.err'
    _INPUT = 'in.lammps'
    _DATA = 'structure.data'
    _INI = 'mlip.ini'
    _STATE = 'state.als'
    _PRESELECTED = 'preselected.cfg'
    _LOG = 'log.lammps'
    _DEFAULT_PARSER = 'mlcampaign.lammps.mlip_explore'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['potential'].validator = _trained
        spec.input('structure', valid_type=orm.StructureData, help='Starting structure (3-D periodic).')
        spec.input('parameters', valid_type=orm.Dict, validator=_validate_parameters,
                   help='temperature (K), steps (required); timestep (ps), tdamp (ps), seed, thermo, select, '
                        'threshold (γ_select, default 2.1), threshold_break (γ_break, default 10).')
        spec.input('state', valid_type=orm.SinglefileData, required=False,
                   help='The .als active-learning state of this potential (needed with select).')
        spec.inputs.validator = _validate_lammps
        spec.output('summary', valid_type=orm.Dict,
                    help='stopped_on_extrapolation, exit_status, num_preselected, max_grade, break_grade, last_step, '
                         'completed.')
        spec.output('preselected', valid_type=TrainingSetData, required=False,
                    help='Frames mlip saved as extrapolative, unlabelled (their MTP labels are not reference data).')
        spec.output('grades', valid_type=orm.ArrayData, required=False,
                    help='Array mv_grade of the preselected frames.')
        spec.exit_code(312, 'ERROR_MLIP_INIT_FAILED', invalidates_cache=True,
                       message='LAMMPS exited with status 7: the mlip interface failed to initialise '
                               '(mlip.ini, potential or state.als){detail}.')
        spec.default_output_node = 'summary'

    def prepare_for_submission(self, folder):
        potential = self.inputs.potential
        parameters = check_lammps_parameters(self.inputs.parameters.get_dict())
        self._write_potential(folder)
        with folder.open(self._INI, 'w') as handle:
            handle.write(mlip_ini(self._POTENTIAL, select=parameters['select'], threshold=parameters['threshold'],
                                  threshold_break=parameters['threshold_break'], save_selected=self._PRESELECTED,
                                  load_state=self._STATE))
        with folder.open(self._DATA, 'w') as handle:
            handle.write(lammps_data(self.inputs.structure.get_ase(), potential.species))
        with folder.open(self._INPUT, 'w') as handle:
            handle.write(lammps_mlip_input(
                potential.species, parameters['temperature'], parameters['steps'], data_file=self._DATA,
                mlip_ini_file=self._INI, timestep=parameters['timestep'], seed=parameters['seed'],
                thermo=parameters['thermo'], tdamp=parameters['tdamp'],
            ))
        calcinfo = self._calcinfo(['-in', self._INPUT, '-log', self._LOG], [self._LOG, self._PRESELECTED + '*'])
        if parameters['select']:
            state = self.inputs.state
            calcinfo.local_copy_list = [(state.uuid, state.filename, self._STATE)]
        return calcinfo
