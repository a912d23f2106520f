"""``NepTrainCalculation``: train (or evaluate) a NEP with GPUMD's ``nep`` on a GPU, or with neppo on a CPU.

One contract, two engines, chosen by the code (:func:`nep_engine`): GPUMD's ``nep`` (GPU clusters; resume and
fine-tuning) and neppo's ``neppo train`` (PyTorch, CPUs or a GPU; AdamW steps instead of SNES generations, see
:mod:`aiida_mlcampaign.formats.neppo`). Both read the same files from their working directory and write
``nep.txt``, ``loss.out`` and the parity files in GPUMD's formats, so the inputs, the written files, the parser and
the outputs are the same; the engine and its version are recorded in ``output_parameters``.

``nep`` takes no arguments and reads fixed file names from its working directory (doc §1), so the CalcJob
only writes them: ``nep.in`` from the ``settings`` through :func:`aiida_mlcampaign.formats.nep.nep_in` (``type``
first, every architecture keyword explicit for the GPUMD version, because defaults changed in v5.2),
``train.xyz``/``test.xyz`` in GPUMD's conventions, and the model files a mode needs. Everything ``nep`` would
refuse after waiting in a GPU queue (unknown species, ranges, architectures that do not fit a restart, a
foundation or a potential) is refused here first, with the field named; so is every keyword neppo would
ignore or cannot run when the code is neppo.

GPUs (``gpus``, ``metadata.options.gres_syntax``, ``metadata.options.cuda_visible_devices``) as for the ``gpumd``
CalcJob: :mod:`aiida_mlcampaign.calculations.gpu`, ``docs/gpu-clusters.md``.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
from aiida import orm

from aiida_mlcampaign.calculations.gpu import GpuCalcJob, validate_gpu_options
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import (
    ENGINES, apply_architecture, expected_parameter_count, fill_nep_defaults, nep_in, parse_gpumd_version,
    read_nep_in, read_nep_restart,
)

__all__ = ('NEP_ENGINE_EXTRA', 'NepTrainCalculation', 'build_nep_in', 'nep_engine')

#: A code extra that names the engine explicitly (``'gpumd'`` or ``'neppo'``), e.g. for a wrapper script.
NEP_ENGINE_EXTRA = 'mlcampaign_nep_engine'
#: neppo reads nep.in with the defaults of current GPUMD (n_max/basis_size changed in v5.2): that grammar is used.
_NEPPO_GRAMMAR = '5.6'

#: ``settings`` keys the CalcJob derives from other inputs; the value is the input to use instead.
_DERIVED_KEYWORDS = {
    'type': 'species (the type order; by default the training set\'s species order)',
    'prediction': 'potential (giving a potential switches to prediction mode)',
    'fine_tune': 'foundation and foundation_restart',
}
_FOUNDATION_TXT = 'foundation.txt'
_FOUNDATION_RESTART = 'foundation.restart'


def nep_engine(code) -> str:
    """``'neppo'`` or ``'gpumd'``: the code's extra :data:`NEP_ENGINE_EXTRA` if set, else its executable's name.

    A code whose executable is called ``neppo`` (what ``aiida-mlcampaign setup`` finds on PATH) runs neppo; any
    other (``nep``, a module-loaded path) is GPUMD's ``nep``, the engine this CalcJob was first written for.
    """
    if code is None:
        return 'gpumd'
    engine = code.base.extras.get(NEP_ENGINE_EXTRA, None)
    if engine is not None:
        if engine not in ENGINES:
            raise ValueError(f'code: extra {NEP_ENGINE_EXTRA}={engine!r} is not one of {ENGINES}')
        return engine
    executable = getattr(code, 'filepath_executable', None)
    name = pathlib.PurePath(str(executable)).name if executable is not None else ''
    return 'neppo' if name.startswith('neppo') else 'gpumd'


def _settings_dict(inputs) -> dict:
    return inputs['settings'].get_dict() if 'settings' in inputs else {}


def _species(inputs) -> list[str]:
    if 'species' in inputs:
        return [str(s) for s in inputs['species'].get_list()]
    if 'potential' in inputs:
        return inputs['potential'].species
    return inputs['training_set'].species


def _field(error: Exception) -> str:
    """A formats error as a message naming the CalcJob input (``type`` is the ``species`` input here)."""
    text = str(error)
    if text.startswith('type'):
        return 'species' + text[len('type'):]
    return f'settings.{text}'


def _version(inputs) -> str:
    return inputs['gpumd_version'].value if 'gpumd_version' in inputs else '5.6'


def build_nep_in(inputs) -> tuple[str, dict]:
    """``(nep.in text, canonical settings)`` for a dict-like of CalcJob inputs; ``ValueError`` names the field.

    Shared by the inputs validator and ``prepare_for_submission`` so that what is checked is what is written. The
    settings are completed with the defaults of the engine that runs them (GPUMD's for ``nep``, neppo's for
    ``neppo``), so they say what the run did.
    """
    engine = nep_engine(inputs['code'] if 'code' in inputs else None)
    settings = _settings_dict(inputs)
    for key, use in _DERIVED_KEYWORDS.items():
        if key in settings:
            raise ValueError(f'settings.{key}: set by the CalcJob, not in settings; use the input {use}')
    version = _version(inputs)
    try:
        parsed = parse_gpumd_version(version)
    except FormatError as error:
        raise ValueError(f'gpumd_version: {error}') from None
    if engine == 'neppo':
        if parsed < (5, 2):
            raise ValueError(f'gpumd_version: {version!r} selects the nep.in of an older GPUMD, but the code is neppo, '
                             'which reads nep.in as current GPUMD does; leave gpumd_version at its default')
        version = _NEPPO_GRAMMAR
        for port, why in (('restart', 'neppo saves no optimiser state (no nep.restart) and cannot resume'),
                          ('foundation', 'neppo 1.0 cannot fine-tune a foundation model')):
            if port in inputs:
                raise ValueError(f'{port}: {why}; use a code of GPUMD\'s nep for it')
    species = _species(inputs)
    settings = {'type': species, **settings}
    try:
        if 'potential' in inputs:
            settings['prediction'] = 1
            settings = apply_architecture(settings, inputs['potential'].get_architecture(), 'the potential', version,
                                          engine)
            text = nep_in(settings, version, engine=engine)
        elif 'foundation' in inputs:
            settings['fine_tune'] = [_FOUNDATION_TXT, _FOUNDATION_RESTART]
            text = nep_in(settings, version, foundation=inputs['foundation'].get_header())
        else:
            text = nep_in(settings, version, engine=engine)
    except FormatError as error:
        raise ValueError(_field(error)) from None
    return text, fill_nep_defaults(read_nep_in(text, version, engine), version, engine)


def _check_frames(node: TrainingSetData, port: str, species: list[str], model_type: int) -> str | None:
    if node.num_frames == 0:
        return f'{port}: no frames'
    used = {node.species[i] for i in np.unique(node.get_array('species_index'))}
    extra = sorted(used - set(species))
    if extra:
        return f'{port}: species {extra} occur in the frames but not in species {species}'
    complete = np.isfinite(node.get_array('energies'))
    atom_complete = np.isfinite(node.get_array('forces')).all(axis=1)
    complete &= np.logical_and.reduceat(atom_complete, node.offsets[:-1]) if len(atom_complete) else complete
    if not complete.all():
        return (f'{port}: {int(np.sum(~complete))} frame(s) without an energy or forces (first: frame '
                f'{int(np.argmin(complete))}); nep needs both for every frame')
    weights = node.get_array('weights')
    if (weights > 100).any():
        return f'{port}: GPUMD accepts frame weights 0 < weight <= 100, the largest is {float(weights.max()):g}'
    if model_type == 3 and not np.isfinite(node.get_array('temperatures')).all():
        return f'{port}: model_type 3 (temperature model) needs a temperature for every frame'
    return None


def _check_restart_file(node: orm.SinglefileData, port: str, expected: int | None, what: str) -> str | None:
    try:
        count = read_nep_restart(io.StringIO(node.get_content()))['n_parameters']
    except (FormatError, UnicodeDecodeError) as error:
        return f'{port}: {error}'
    if expected is not None and count != expected:
        return (f'{port}: holds {count} parameters but {what} has {expected}; a truncated file or a different '
                'architecture cannot be resumed')
    return None


def _restart_creator_potential(node: orm.SinglefileData):
    """The potential written next to ``node`` by the ``nep`` job that made it, if there is one."""
    creator = node.creator if node.is_stored else None
    if creator is None or creator.process_type != NepTrainCalculation.build_process_type():
        return None
    return creator.outputs.potential if 'potential' in creator.outputs else None


def _validate_inputs(inputs, _):
    """Everything ``nep`` would refuse after queueing, refused before submission with the field named."""
    return _validate_nep_inputs(inputs) or validate_gpu_options(inputs)


def _validate_nep_inputs(inputs):
    if 'training_set' not in inputs:
        return None
    prediction = 'potential' in inputs
    if prediction:
        for port in ('restart', 'foundation', 'foundation_restart', 'test_set'):
            if port in inputs:
                return (f'{port}: not allowed with potential (prediction mode evaluates the potential on training_set '
                        'and trains nothing)')
        if inputs['potential'].model_type not in ('potential', 'temperature'):
            return (f'potential: a {inputs["potential"].model_type} model needs dipole/polarizability targets, which '
                    'TrainingSetData does not hold')
        if 'species' in inputs and _species(inputs) != inputs['potential'].species:
            return (f'species: {_species(inputs)} differs from the potential\'s type order '
                    f'{inputs["potential"].species}; prediction must use the potential\'s order')
    if ('foundation' in inputs) != ('foundation_restart' in inputs):
        return 'foundation_restart: fine-tuning needs both foundation and foundation_restart'
    if 'foundation' in inputs and 'restart' in inputs:
        return ('restart: with fine_tune, nep starts from the foundation\'s restart and ignores nep.restart; to '
                'resume a fine-tuned run give restart without foundation, with the fine-tuned potential\'s '
                'architecture')
    try:
        _, settings = build_nep_in(inputs)
    except ValueError as error:
        return str(error)
    species = settings['type']
    if settings['model_type'] in (1, 2):
        return 'settings.model_type: dipole/polarizability models need targets that TrainingSetData does not hold'
    for port in ('training_set', 'test_set'):
        if port in inputs:
            message = _check_frames(inputs[port], port, species, settings['model_type'])
            if message:
                return message
    if not prediction:
        generations = settings['generation'] if isinstance(settings['generation'], list) else [settings['generation']]
        if min(generations) < 1:
            return 'settings.generation: 0 trains nothing; to evaluate a model give it as the potential input'
        used = {inputs['training_set'].species[i] for i in np.unique(inputs['training_set'].get_array('species_index'))}
        absent = [symbol for symbol in species if symbol not in used]
        if absent:
            return (f'species: {absent} have no atom in training_set; their part of the model could not be fitted '
                    '(leave them out, or add frames that contain them)')
    version = _version(inputs)
    if 'restart' in inputs:
        message = _check_restart_file(inputs['restart'], 'restart', expected_parameter_count(settings, version),
                                      'the architecture of settings')
        if message:
            return message
        previous = _restart_creator_potential(inputs['restart'])
        if previous is not None:
            if previous.species != species:
                return (f'species: {species} differs from the type order {previous.species} of the run that wrote '
                        'restart')
            try:
                apply_architecture(settings, previous.get_architecture(), 'the run that wrote restart', version)
            except FormatError as error:
                return _field(error)
    if 'foundation' in inputs:
        foundation = inputs['foundation']
        message = _check_restart_file(inputs['foundation_restart'], 'foundation_restart', foundation.n_parameters,
                                      f'the foundation ({foundation.model}, {len(foundation.species)} species)')
        if message:
            return message
    return None


def _validate_species(value, _):
    if value is None:
        return None
    symbols = value.get_list()
    if not symbols or not all(isinstance(s, str) for s in symbols):
        return 'species: expected a non-empty list of element symbols'
    return None


def _validate_version(value, _):
    if value is None:
        return None
    try:
        parse_gpumd_version(value.value)
    except FormatError as error:
        return f'gpumd_version: {error}'
    return None


class NepTrainCalculation(GpuCalcJob):
    """Train a NEP on a ``TrainingSetData`` with GPUMD's ``nep`` or neppo (optionally resume, fine-tune, evaluate).

    Modes: training (default); resume (``restart``: a ``nep.restart`` written by an earlier job, e.g. the
    ``restart`` output of one that hit the walltime; GPUMD only); fine-tuning (``foundation`` +
    ``foundation_restart``: architecture forced to the foundation's, ``fine_tune`` line written; GPUMD only);
    prediction (``potential``: ``prediction 1``, the potential copied to ``nep.txt``, its parity files parsed,
    nothing trained). The engine is the code's (:func:`nep_engine`): neppo runs as ``neppo train . --device cpu``
    (``cuda`` when ``gpus`` is given); its threads follow ``num_cores_per_mpiproc`` (``OMP_NUM_THREADS``).
    """

    _STDOUT = 'nep.out'
    _STDERR = 'nep.err'
    _INPUT = 'nep.in'
    _TRAIN = 'train.xyz'
    _TEST = 'test.xyz'
    _MODEL = 'nep.txt'
    _RESTART = 'nep.restart'
    _LOSS = 'loss.out'
    _DEFAULT_PARSER = 'mlcampaign.nep.train'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.input_filename', valid_type=str, default=cls._INPUT,
                   help='nep and neppo read nep.in from the working directory (fixed name).')
        spec.input('metadata.options.output_filename', valid_type=str, default=cls._STDOUT,
                   help='Where the standard output (the log) of nep or neppo is written.')
        spec.input('training_set', valid_type=TrainingSetData,
                   help='Labelled frames, written as train.xyz (total energy, virial = -V*stress, force, weight). In '
                        'prediction mode the frames the potential is evaluated on.')
        spec.input('test_set', valid_type=TrainingSetData, required=False,
                   help='Held-out labelled frames, written as test.xyz; nep reports their errors every '
                        'output_interval.')
        spec.input('settings', valid_type=orm.Dict, required=False,
                   help='nep.in keywords (see formats.nep.nep_in: cutoff, n_max, basis_size, l_max, neuron, batch, '
                        'population, generation, lambda_*, zbl, ...). type, prediction and fine_tune are derived '
                        'from species, potential and foundation. With a neppo code: generation counts AdamW steps '
                        '(several values: stages), seed, learning_rate, weight_decay and loss_form are allowed, and '
                        'the SNES keywords (population, sigma0, ...) are refused (formats.neppo).')
        spec.input('species', valid_type=orm.List, required=False, validator=_validate_species,
                   help='Element symbols in type order (the order of nep.txt); default: the potential\'s order in '
                        'prediction mode, else the training set\'s species order.')
        spec.input('gpumd_version', valid_type=orm.Str, default=lambda: orm.Str('5.6'), validator=_validate_version,
                   help='GPUMD version of the code ("5.6", "4.0", "master"): its nep.in defaults and limits are used '
                        'and every architecture keyword is written explicitly. A neppo code reads nep.in as current '
                        'GPUMD does (5.2 or newer).')
        spec.input('restart', valid_type=orm.SinglefileData, required=False,
                   help='nep.restart of an earlier run (e.g. the restart output of a job that hit the walltime) to '
                        'resume from; the architecture must be the same (checked by its parameter count and, when '
                        'the restart came from this CalcJob, against that run\'s potential). GPUMD only: neppo '
                        'saves no optimiser state.')
        spec.input('foundation', valid_type=NepPotentialData, required=False,
                   help='Foundation model (e.g. NEP89) to fine-tune: written as foundation.txt, architecture '
                        'keywords forced to its values (a different given value is refused). GPUMD only.')
        spec.input('foundation_restart', valid_type=orm.SinglefileData, required=False,
                   help='The foundation model\'s restart file (mu sigma per parameter), needed with foundation.')
        spec.input('potential', valid_type=NepPotentialData, required=False,
                   help='Prediction mode: evaluate this potential on training_set (prediction 1, its architecture '
                        'and type order), no training.')
        spec.inputs.validator = _validate_inputs

        spec.output('potential', valid_type=NepPotentialData, required=False,
                    help='The trained model (nep.txt); absent in prediction mode. After a walltime stop it is the '
                         'last checkpoint the engine wrote (nep: every output_interval; neppo: every report).')
        spec.output('restart', valid_type=orm.SinglefileData, required=False,
                    help='nep.restart (SNES mean and width per parameter), whenever GPUMD\'s nep wrote it, so that a '
                         'later job can resume from a node rather than from the remote folder (neppo writes none).')
        spec.output('loss', valid_type=orm.ArrayData, required=False,
                    help='loss.out, one 1-D array per column named by formats.nep.LOSS_COLUMNS (generation, '
                         'loss_total, rmse_energy_train in eV/atom, rmse_force_train in eV/Å, ...); for neppo '
                         'generation is the AdamW step and the columns are those its header names.')
        spec.output('parity', valid_type=orm.ArrayData, required=False,
                    help='Parity data <kind>_<split>_prediction / _target (kind energy eV/atom, force eV/Å, virial '
                         'eV/atom, stress GPa positive = compressed; split train/test), rows in train.xyz/test.xyz '
                         'order; missing targets are NaN.')
        spec.output('errors', valid_type=orm.Dict, required=False,
                    help='RMSEs from the parity data (rmse_energy_<split>_meV_per_atom, rmse_force_<split>_meV_per_A, '
                         'rmse_virial_<split>_meV_per_atom, rmse_stress_<split>_GPa; None without targets) and '
                         'final_loss, the last loss.out row by column name.')
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='engine (gpumd or neppo) and engine_version, mode, timings (s), generations (steps) done, '
                         'batches, row order of the train parity files, the settings the engine ran with.')
        spec.default_output_node = 'output_parameters'

        spec.exit_code(500, 'ERROR_NAN_LOSS', message='loss.out holds NaN from generation {generation}: the fit '
                                                      'diverged.')
        spec.exit_code(501, 'ERROR_COLLAPSED_MODEL',
                       message='The trained model predicts zero forces on every training frame although the labels '
                               'have forces: the fit collapsed to a constant energy (saturated neurons); lower the '
                               'learning rate (neppo: learning_rate) or add data. The potential is attached.')

    def prepare_for_submission(self, folder):
        text, _ = build_nep_in(self.inputs)
        with folder.open(self._INPUT, 'w') as handle:
            handle.write(text)
        self.inputs.training_set.export_extxyz(folder.get_abs_path(self._TRAIN))
        written = [self._TRAIN]
        if 'test_set' in self.inputs:
            self.inputs.test_set.export_extxyz(folder.get_abs_path(self._TEST))
            written.append(self._TEST)

        local_copy_list = []
        if 'potential' in self.inputs:
            node = self.inputs.potential
            local_copy_list.append((node.uuid, node.filename, self._MODEL))
        if 'restart' in self.inputs:
            node = self.inputs.restart
            local_copy_list.append((node.uuid, node.filename, self._RESTART))
        if 'foundation' in self.inputs:
            for node, name in ((self.inputs.foundation, _FOUNDATION_TXT),
                               (self.inputs.foundation_restart, _FOUNDATION_RESTART)):
                local_copy_list.append((node.uuid, node.filename, name))

        arguments = []
        if nep_engine(self.inputs.code) == 'neppo':
            arguments = ['train', '.', '--device', 'cuda' if 'gpus' in self.inputs else 'cpu']
        retrieve = [self._LOSS, self._RESTART, '*_train.out', '*_test.out']
        if 'potential' not in self.inputs:
            retrieve.append(self._MODEL)
        calcinfo = self._calcinfo(arguments, retrieve, stdout=self.metadata.options.output_filename)
        calcinfo.local_copy_list = local_copy_list
        # The frames are already stored in the TrainingSetData nodes (possibly GBs): no second copy in the repository.
        calcinfo.provenance_exclude_list = written
        return self._export_visible_devices(calcinfo)
