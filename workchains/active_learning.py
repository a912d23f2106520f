"""``mlcampaign.al.loop``: active learning of an MTP or a NEP, one work chain, full provenance.

One iteration is the field's standard loop: train -> explore with MD while measuring the model's
uncertainty -> select frames -> label them with DFT -> merge. The two families differ only in how
uncertainty is measured and frames chosen:

* ``mtp``: motep fits the MTP; exploration grades frames with mlip-2's extrapolation grade; a
  D-optimal (MaxVol) subset of the extrapolative frames is labelled.
* ``nep``: a committee of ``committee_size`` NEPs is trained on the same data with GPUMD's ``nep``
  (its evolution strategy draws its own random initial population, so members differ) or with neppo
  on the CPU (each member gets its own ``seed``); the MD
  runs on the CPU with the first member (calorine) and the uncertainty of a frame is the largest
  per-atom force standard deviation across the committee. Frames inside the trust window
  ``[select_threshold, break_threshold)`` of ``nep_explore.parameters`` are candidates; the most
  uncertain, mutually distinct ones are labelled.

It stops on measured criteria: few explored frames are uncertain (``max_candidate_fraction``) *and*
the model that explored predicts the new DFT forces well (``target_force_rmse``), or after
``max_iterations``. Children are labelled ``iteration_NN_<step>``. A loop started from a finished
loop's outputs (``get_builder_restart_from``) continues with the next iteration; nothing already
computed is run again. :func:`get_nep_builder_from_loop` trains a NEP on a finished loop's data set,
as the paper trains both families on the same DFT frames.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from aiida_mlcampaign.calculations.explore import MtpExploreCalculation, NepExploreCalculation
from aiida_mlcampaign.calculations.motep import MotepEvaluateCalculation, MotepTrainCalculation
from aiida_mlcampaign.calculations.nep import NepTrainCalculation, nep_engine
from aiida_mlcampaign.calculations.nep_cpu import evaluate_nep, select_by_committee
from aiida_mlcampaign.calculations.records import loop_summary
from aiida_mlcampaign.calculations.selection import select_for_labelling
from aiida_mlcampaign.calculations.training_set import candidates_from_trajectory, merge_training_sets
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps
from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain
from aiida_mlcampaign.workchains.gpumd_base import GpumdBaseWorkChain

FAMILIES = ('mtp', 'nep')
# The namespaces each family needs; the other family's namespaces must stay empty.
FAMILY_NAMESPACES = {'mtp': ('potential', 'train', 'explore'), 'nep': ('nep_train',)}
# Family nep explores either on the CPU (nep_explore, window in its parameters) or with GPUMD
# (nep_gpumd, window in trust_window): exactly one of the two.
NEP_EXPLORERS = ('nep_explore', 'nep_gpumd')


def validate_family(value, _):
    if value is not None and value.value not in FAMILIES:
        return f'family: {value.value!r} is not available; choose one of {FAMILIES}'


def _at_least(name, minimum):
    def validator(value, _):
        if value is not None and value.value < minimum:
            return f'{name}: must be at least {minimum}, got {value.value}'

    return validator


def _positive(name, kind=float):
    def validator(value, _):
        if value is not None and not kind(value.value) > 0:
            return f'{name}: must be positive, got {value.value}'

    return validator


def _given(inputs, name) -> bool:
    value = inputs.get(name)
    if value is None:
        return False
    if isinstance(value, dict):  # an exposed namespace: only metadata defaults do not count as given
        return any(key != 'metadata' for key in value)
    return True


def validate_inputs(inputs, _):
    family = inputs['family'].value if 'family' in inputs else 'mtp'
    if family in FAMILY_NAMESPACES:
        for name in FAMILY_NAMESPACES[family]:
            if not _given(inputs, name):
                return f'{name}: required for family {family!r}'
        for other, names in FAMILY_NAMESPACES.items():
            for name in names if other != family else ():
                if _given(inputs, name):
                    return f'{name}: belongs to family {other!r}, but family is {family!r}'
    if family != 'nep':
        for name in (*NEP_EXPLORERS, 'trust_window'):
            if _given(inputs, name):
                return f'{name}: belongs to family \'nep\', but family is {family!r}'
    if family == 'nep':
        return _validate_nep_inputs(inputs)
    training_set = inputs.get('training_set')
    potential = inputs.get('potential')
    if training_set is not None and potential is not None:
        extra = sorted(set(training_set.species) - set(potential.species))
        if extra:
            return f'training_set: species {extra} are not in the potential\'s species {potential.species}'
    explore = inputs.get('explore', {})
    if potential is not None:
        for key, structure in explore.get('structures', {}).items():
            extra = sorted(structure.get_symbols_set() - set(potential.species))
            if extra:
                return f'explore.structures.{key}: species {extra} are not in the potential\'s species'
    fraction = inputs.get('max_candidate_fraction')
    if fraction is not None and not 0.0 <= fraction.value <= 1.0:
        return f'max_candidate_fraction: must be in [0, 1], got {fraction.value}'


def _validate_nep_train(inputs):
    """``NepTrainCalculation``'s own cross-field checks (nep.in settings, species, frames), run now.

    The exposed namespace keeps that validator, but there it runs without ``training_set`` (the loop
    provides it) and so skips every check; without this call a bad ``nep_train.settings`` or an
    unlabelled training set would surface only when the first committee member is created.
    """
    values = {key: value for key, value in inputs['nep_train'].items() if key != 'metadata'}
    for port in ('training_set', 'test_set'):
        if inputs.get(port) is not None:
            values[port] = inputs[port]
    message = NepTrainCalculation.spec().inputs.validator(values, None)
    if message:
        return f'nep_train: {message}'
    return None


def _validate_nep_gpumd(namespace):
    """The GPUMD exploration must dump frames: they are the only candidates."""
    from aiida_mlcampaign.calculations.gpumd import dump_files, gpumd_legacy, stages_of

    gpumd = namespace.get('gpumd', {})  # restartability is checked by the exposed namespace's own validator
    if 'stages' in gpumd or 'run_in' in gpumd:
        if not dump_files(stages_of(gpumd, gpumd_legacy(gpumd))):
            field = 'stages' if 'stages' in gpumd else 'run_in'
            return f'nep_gpumd.gpumd.{field}: no dump_xyz, so the exploration would give no candidate frames'
    return None


def _validate_nep_inputs(inputs):
    message = _validate_nep_train(inputs)
    if message:
        return message
    explorers = [name for name in NEP_EXPLORERS if _given(inputs, name)]
    if len(explorers) != 1:
        return f'nep_explore, nep_gpumd: family nep explores with exactly one of them, got {explorers or "none"}'
    if explorers == ['nep_gpumd']:
        message = _validate_nep_gpumd(inputs['nep_gpumd'])
        if message:
            return message
        window = inputs.get('trust_window')
        if window is None:
            return 'trust_window: required with nep_gpumd ([lower, upper) of the committee force deviation, eV/Å)'
        values = window.get_list()
        if len(values) != 2 or not 0 < values[0] < values[1]:
            return f'trust_window: needs [lower, upper] with 0 < lower < upper, got {values}'
        return None
    if inputs.get('trust_window') is not None:
        return ('trust_window: conflicts with nep_explore, whose parameters select_threshold/break_threshold are '
                'the trust window of CPU exploration')
    parameters = inputs['nep_explore'].get('parameters')
    if parameters is not None:
        values = parameters.get_dict()
        lower, upper = values.get('select_threshold'), values.get('break_threshold')
        if lower is None or upper is None:
            return ('nep_explore.parameters: select_threshold and break_threshold (the trust window of the '
                    'committee force deviation, eV/Å) are required for family nep')
        if not 0 < lower < upper:
            return f'nep_explore.parameters: the trust window needs 0 < select_threshold < break_threshold, ' \
                   f'got [{lower}, {upper})'
    species = inputs['nep_train'].get('species')
    if species is not None:
        training_set = inputs.get('training_set')
        if training_set is not None:
            extra = sorted(set(training_set.species) - set(species.get_list()))
            if extra:
                return f'training_set: species {extra} are not in nep_train.species {species.get_list()}'
        for key, structure in inputs['nep_explore'].get('structures', {}).items():
            extra = sorted(structure.get_symbols_set() - set(species.get_list()))
            if extra:
                return f'nep_explore.structures.{key}: species {extra} are not in nep_train.species'


def _member_settings(settings: orm.Dict | None, member: int) -> orm.Dict:
    """The settings of committee member ``member`` for neppo: its own ``seed`` (the given one + member).

    GPUMD's ``nep`` draws a new random population every run, so its members differ by themselves; neppo starts
    from ``seed`` (42 by default), and members with the same seed would be the same model and measure no
    uncertainty. A negative seed (random in neppo) is kept as it is.
    """
    values = settings.get_dict() if settings is not None else {}
    seed = int(values.get('seed', 42))
    return orm.Dict({**values, 'seed': seed + member if seed >= 0 else seed})


def get_nep_builder_from_loop(loop, code, settings=None, **inputs):
    """A ``NepTrainCalculation`` builder for the DFT frames of a finished loop (of either family).

    The paper fits an MTP and a NEP to the same DFT data; here the NEP is trained on exactly the
    ``training_set`` node the loop returned (and its ``test_set`` input when there was one), so the
    graph shows both potentials descending from the same labels. ``inputs`` are further
    ``NepTrainCalculation`` inputs (``species``, ``gpumd_version``, ``metadata``...).
    """
    if not loop.is_finished_ok:
        raise ValueError(f'loop: process <{loop.pk}> did not finish successfully (exit status {loop.exit_status})')
    builder = NepTrainCalculation.get_builder()
    builder.code = code
    builder.training_set = loop.outputs.training_set
    test_sets = [link.node for link in loop.base.links.get_incoming(link_label_filter='test_set').all()]
    if test_sets:
        builder.test_set = test_sets[0]
    if settings is not None:
        builder.settings = settings if isinstance(settings, orm.Dict) else orm.Dict(settings)
    for key, value in inputs.items():
        builder[key] = value
    return builder


class ActiveLearningWorkChain(CrashSafeSteps, WorkChain):
    """Train, explore, select, label, merge; repeat until the measured criteria hold."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('family', valid_type=orm.Str, default=lambda: orm.Str('mtp'), validator=validate_family,
                   help="Potential family: 'mtp' (motep, mlip-2 format) or 'nep' (a committee trained by GPUMD's nep "
                        'or neppo, chosen by nep_train.code).')
        spec.input('training_set', valid_type=TrainingSetData,
                   help='Labelled frames to start from (e.g. the output of mlcampaign.dft.label or .aimd).')
        spec.input('test_set', valid_type=TrainingSetData, required=False,
                   help='Fixed held-out frames; their force RMSE is reported every iteration.')
        optional = {'required': False, 'populate_defaults': False}
        spec.input('potential', valid_type=MtpPotentialData, required=False,
                   help='Family mtp: the MTP to fit every iteration (a level template with species and distances).')
        spec.expose_inputs(MotepTrainCalculation, namespace='train', exclude=('potential', 'training_set'),
                           namespace_options={**optional, 'help': 'Family mtp: motep training (code, settings).'})
        spec.expose_inputs(MtpExploreCalculation, namespace='explore', exclude=('potential', 'training_set'),
                           namespace_options={**optional, 'help': 'Family mtp: exploration MD (code, structures, '
                                                               'parameters).'})
        spec.expose_inputs(NepTrainCalculation, namespace='nep_train',
                           exclude=('training_set', 'test_set', 'restart', 'foundation', 'foundation_restart',
                                    'potential'),
                           namespace_options={**optional, 'help': 'Family nep: training of every committee '
                                                               'member with GPUMD\'s nep or neppo (code, '
                                                               'settings, species).'})
        spec.expose_inputs(NepExploreCalculation, namespace='nep_explore', exclude=('potentials',),
                           namespace_options={**optional, 'help': 'Family nep: exploration MD with the committee '
                                                               '(code, structures, parameters incl. the trust '
                                                               'window select_threshold/break_threshold, eV/Å).'})
        spec.expose_inputs(GpumdBaseWorkChain, namespace='nep_gpumd', exclude=('gpumd.potential',),
                           namespace_options={**optional, 'help': 'Family nep: exploration MD with GPUMD on a GPU '
                                                               'cluster instead of the CPU; its stages need a '
                                                               'dump_xyz (the dumped frames are the candidates).'})
        spec.input('trust_window', valid_type=orm.List, required=False,
                   help='Family nep with nep_gpumd: [lower, upper) of the committee force deviation (eV/Å).')
        spec.input('dump_stride', valid_type=orm.Int, default=lambda: orm.Int(1), validator=_at_least('dump_stride', 1),
                   help='Family nep with nep_gpumd: every n-th dumped frame is a candidate.')
        spec.input('committee_size', valid_type=orm.Int, default=lambda: orm.Int(4),
                   validator=_at_least('committee_size', 2),
                   help='Family nep: number of NEPs trained on the same data to measure the force uncertainty.')
        spec.expose_inputs(DftLabelWorkChain, namespace='label', exclude=('structures', 'origin'),
                           namespace_options={'help': 'DFT labelling of the selected frames.'})
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(5),
                   validator=_positive('max_iterations', int), help='Stop after this many iterations.')
        spec.input('first_iteration', valid_type=orm.Int, default=lambda: orm.Int(1),
                   validator=_positive('first_iteration', int),
                   help='Number of the first iteration (a restart continues the count).')
        spec.input('max_candidate_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.05),
                   help='Converged when fewer explored frames than this are extrapolative ...')
        spec.input('target_force_rmse', valid_type=orm.Float, default=lambda: orm.Float(0.1),
                   validator=_positive('target_force_rmse'),
                   help='... and the exploring model\'s force RMSE on the new DFT frames is below this (eV/Å).')
        spec.input('label_budget', valid_type=orm.Int, default=lambda: orm.Int(10),
                   validator=_positive('label_budget', int), help='At most this many DFT labels per iteration.')
        spec.input('select_add_threshold', valid_type=orm.Float, default=lambda: orm.Float(1.1),
                   help='MaxVol swap threshold of the D-optimal selection (mlp select-add --select-threshold).')
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(0.6),
                   help='Candidates with atoms closer than this (Å) are never sent to DFT.')
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_iterate)(
                cls.train, cls.inspect_train,
                cls.evaluate_test_set,
                cls.explore, cls.inspect_explore,
                if_(cls.has_candidates)(
                    cls.select,
                    if_(cls.has_selection)(
                        cls.label, cls.inspect_label,
                        cls.evaluate_new_frames, cls.inspect_evaluation,
                        cls.merge,
                    ),
                ),
                cls.decide,
            ),
            cls.finalize,
        )
        spec.output('potential', valid_type=(MtpPotentialData, NepPotentialData),
                    help='The last trained potential (for nep: the committee member that drove the MD).')
        spec.output_namespace('committee', valid_type=NepPotentialData, dynamic=True, required=False,
                              help='Family nep: every member of the last committee.')
        spec.output('training_set', valid_type=TrainingSetData,
                    help='All labelled frames, including those added by the last iteration.')
        spec.output('stop_reason', valid_type=orm.Str, help='Why the loop stopped.')
        spec.output('last_iteration', valid_type=orm.Int, help='Number of the last iteration run.')
        spec.output('summary', valid_type=orm.List, help='One dict per iteration: sizes, errors, fractions.')
        spec.output_namespace('iterations', dynamic=True, help='Per-iteration potential, training set, statistics.')
        spec.exit_code(410, 'ERROR_TRAINING_FAILED', message='Training in iteration {iteration} failed.')
        spec.exit_code(420, 'ERROR_EXPLORATION_FAILED', message='Exploration in iteration {iteration} failed.')
        spec.exit_code(430, 'ERROR_LABELLING_FAILED', message='DFT labelling in iteration {iteration} failed.')
        spec.exit_code(440, 'ERROR_EVALUATION_FAILED', message='Evaluating the model in iteration {iteration} failed.')

    @classmethod
    def get_builder_restart_from(cls, previous):
        """A builder that continues ``previous`` (a finished loop) with its next iteration."""
        builder = previous.get_builder_restart()
        builder.training_set = previous.outputs.training_set
        builder.first_iteration = orm.Int(previous.outputs.last_iteration.value + 1)
        return builder

    # ----------------------------------------------------------------------------------------- steps
    def setup(self):
        self.ctx.iteration = self.inputs.first_iteration.value
        self.ctx.last = self.inputs.first_iteration.value + self.inputs.max_iterations.value - 1
        self.ctx.training_set = self.inputs.training_set
        self.ctx.stop_reason = None
        self.ctx.summary = []

    def should_iterate(self):
        return self.ctx.stop_reason is None

    def _label(self, step: str) -> str:
        return f'iteration_{self.ctx.iteration:02d}_{step}'

    def _record(self, name: str, node) -> None:
        self.out(f'iterations.iteration_{self.ctx.iteration:02d}.{name}', node)

    @property
    def _is_nep(self) -> bool:
        return self.inputs.family.value == 'nep'

    def train(self):
        self.ctx.row = {'iteration': self.ctx.iteration, 'training_frames': self.ctx.training_set.num_frames}
        if self._is_nep:
            inputs = AttributeDict(self.exposed_inputs(NepTrainCalculation, namespace='nep_train'))
            inputs.training_set = self.ctx.training_set
            if 'test_set' in self.inputs:
                inputs.test_set = self.inputs.test_set
            futures = {}
            for member in range(self.inputs.committee_size.value):
                label = self._label(f'train_member_{member}')
                member_inputs = {**inputs, 'metadata': {**inputs.get('metadata', {}), 'call_link_label': label}}
                if nep_engine(inputs.code) == 'neppo':
                    member_inputs['settings'] = _member_settings(inputs.get('settings'), member)
                futures[f'trained_member_{member}'] = self.submit(NepTrainCalculation, **member_inputs)
            return ToContext(**futures)
        inputs = AttributeDict(self.exposed_inputs(MotepTrainCalculation, namespace='train'))
        inputs.potential = self.inputs.potential
        inputs.training_set = self.ctx.training_set
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('train')}
        return ToContext(trained=self.submit(MotepTrainCalculation, **inputs))

    def inspect_train(self):
        if self._is_nep:
            return self._inspect_committee()
        node = self.ctx.trained
        if 'potential' not in node.outputs:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(iteration=self.ctx.iteration)
        if not node.is_finished_ok:
            self.report(f'training in iteration {self.ctx.iteration} ended with exit status {node.exit_status}; '
                        'using its potential anyway')
        self.ctx.potential = node.outputs.potential
        self._record('potential', self.ctx.potential)
        self._record('training_errors', node.outputs.training_errors)
        errors = node.outputs.training_errors.get_dict()
        self.ctx.row['train_force_rmse'] = errors.get('forces_rmse')
        self.ctx.row['train_energy_rmse_per_atom'] = errors.get('energy_per_atom_rmse')

    def _inspect_committee(self):
        committee = {}
        for member in range(self.inputs.committee_size.value):
            node = self.ctx[f'trained_member_{member}']
            if not node.is_finished_ok or 'potential' not in node.outputs:
                self.report(f'committee member {member} of iteration {self.ctx.iteration} failed '
                            f'(exit status {node.exit_status})')
                return self.exit_codes.ERROR_TRAINING_FAILED.format(iteration=self.ctx.iteration)
            committee[f'member_{member}'] = node.outputs.potential
            self._record(f'committee.member_{member}', node.outputs.potential)
        self.ctx.committee = committee
        self.ctx.potential = committee['member_0']
        self._record('potential', self.ctx.potential)
        first = self.ctx.trained_member_0
        if 'errors' in first.outputs:
            self._record('training_errors', first.outputs.errors)
            errors = first.outputs.errors.get_dict()
            self.ctx.row['train_force_rmse'] = _nep_error(errors, 'force', 'train')
            self.ctx.row['train_energy_rmse_per_atom'] = _nep_error(errors, 'energy', 'train')

    def explore(self):
        if self._is_nep and 'nep_gpumd' in self.inputs:
            inputs = AttributeDict(self.exposed_inputs(GpumdBaseWorkChain, namespace='nep_gpumd'))
            inputs.gpumd = {**inputs.gpumd, 'potential': self.ctx.potential}
            inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
            return ToContext(explored=self.submit(GpumdBaseWorkChain, **inputs))
        if self._is_nep:
            inputs = AttributeDict(self.exposed_inputs(NepExploreCalculation, namespace='nep_explore'))
            inputs.potentials = dict(self.ctx.committee)
            inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
            return ToContext(explored=self.submit(NepExploreCalculation, **inputs))
        inputs = AttributeDict(self.exposed_inputs(MtpExploreCalculation, namespace='explore'))
        inputs.potential = self.ctx.potential
        inputs.training_set = self.ctx.training_set
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
        futures = {'explored': self.submit(MtpExploreCalculation, **inputs)}
        if 'test_set' in self.inputs:
            futures['tested'] = self.submit(MotepEvaluateCalculation, **self._evaluate_inputs(self.inputs.test_set,
                                                                                              'test'))
        return ToContext(**futures)

    def evaluate_test_set(self):
        """Family nep: the test-set errors of member 0 on the daemon's CPU, in a step of their own (a step that
        submits does nothing else, so a crash after it never repeats work). Family mtp evaluates the test set as a
        CalcJob submitted beside the exploration."""
        self.ctx.test_errors = None
        if self._is_nep and 'test_set' in self.inputs:
            tested = self.run_once(evaluate_nep, self.ctx.potential, self.inputs.test_set,
                                   metadata={'call_link_label': self._label('test')})
            self.ctx.test_errors = tested['errors'].get_dict() if 'errors' in tested else None

    def _evaluate_inputs(self, frames, step):
        train_inputs = self.exposed_inputs(MotepTrainCalculation, namespace='train')
        options = {key: value for key, value in train_inputs.get('metadata', {}).get('options', {}).items()
                   if key != 'parser_name'}  # same computer resources, its own parser
        return {
            'code': train_inputs['code'], 'potential': self.ctx.potential, 'frames': frames,
            'metadata': {'call_link_label': self._label(step), 'options': options},
        }

    def inspect_explore(self):
        node = self.ctx.explored
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(iteration=self.ctx.iteration)
        if self._is_nep and 'nep_gpumd' in self.inputs:
            return self._inspect_gpumd_exploration(node)
        statistics = node.outputs.statistics.get_dict()
        self._record('exploration', node.outputs.statistics)
        totals = statistics.get('totals', statistics)
        self.ctx.row['candidate_fraction'] = float(totals.get('candidate_fraction') or 0.0)
        self.ctx.row['explored_frames'] = int(totals.get('graded', 0))
        self.ctx.candidates = node.outputs.candidates if 'candidates' in node.outputs else None
        self.ctx.row['candidates'] = 0 if self.ctx.candidates is None else self.ctx.candidates.num_frames
        self.ctx.row['labels_added'] = 0
        self.ctx.row['new_frames_force_rmse'] = None
        errors = None
        if 'tested' in self.ctx:
            tested = self.ctx.tested
            if tested.is_finished_ok and 'errors' in tested.outputs:
                errors = tested.outputs.errors.get_dict()
            del self.ctx['tested']
        elif self.ctx.get('test_errors') is not None:
            errors = self.ctx.test_errors
            self.ctx.test_errors = None
        if errors is not None:
            self.ctx.row['test_force_rmse'] = errors.get('forces_rmse')
            self.ctx.row['test_energy_rmse_per_atom'] = errors.get('energy_per_atom_rmse')

    def _inspect_gpumd_exploration(self, node):
        """Dumped frames become candidates; their fraction in the trust window is known only after selection."""
        if 'trajectory' not in node.outputs:  # a dump_xyz is required at launch; GPUMD wrote none
            self.report('the GPUMD exploration returned no dump.xyz')
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(iteration=self.ctx.iteration)
        self.ctx.candidates = self.run_once(
            candidates_from_trajectory, node.outputs.trajectory, orm.List(self.ctx.potential.species),
            self.inputs.dump_stride,
            metadata={'call_link_label': self._label('candidates')})
        self._record('exploration', self.ctx.candidates)
        self.ctx.row.update({'candidate_fraction': 0.0, 'explored_frames': self.ctx.candidates.num_frames,
                             'candidates': self.ctx.candidates.num_frames, 'labels_added': 0,
                             'new_frames_force_rmse': None})
        errors, self.ctx.test_errors = self.ctx.get('test_errors'), None
        if errors is not None:
            self.ctx.row['test_force_rmse'] = errors.get('forces_rmse')
            self.ctx.row['test_energy_rmse_per_atom'] = errors.get('energy_per_atom_rmse')

    def has_candidates(self):
        return self.ctx.candidates is not None and self.ctx.candidates.num_frames > 0

    def select(self):
        if self._is_nep:
            if 'nep_gpumd' in self.inputs:
                lower, upper = self.inputs.trust_window.get_list()
            else:
                window = self.inputs.nep_explore.parameters.get_dict()
                lower, upper = window['select_threshold'], window['break_threshold']
            outputs = self.run_once(
                select_by_committee, self.ctx.candidates, lower=orm.Float(lower), upper=orm.Float(upper),
                budget=self.inputs.label_budget,
                metadata={'call_link_label': self._label('select')}, **self.ctx.committee,
            )
            if 'nep_gpumd' in self.inputs:  # the CPU explorer counts this itself, while exploring
                statistics = outputs['statistics'].get_dict()
                self.ctx.row['candidate_fraction'] = (statistics['in_window'] + statistics['above']) / max(
                    statistics['candidates'], 1)
            self.ctx.selected = {key: node for key, node in outputs.items() if key.startswith('structure_')}
            return
        outputs = self.run_once(
            select_for_labelling, self.ctx.potential, self.ctx.training_set, self.ctx.candidates,
            budget=self.inputs.label_budget, select_threshold=self.inputs.select_add_threshold,
            min_distance=self.inputs.min_distance, metadata={'call_link_label': self._label('select')},
        )
        self.ctx.selected = {key: node for key, node in outputs.items() if key.startswith('structure_')}

    def has_selection(self):
        return bool(self.ctx.selected)

    def label(self):
        inputs = AttributeDict(self.exposed_inputs(DftLabelWorkChain, namespace='label'))
        inputs.structures = self.ctx.selected
        inputs.origin = orm.Str(f'al-iter-{self.ctx.iteration:02d}')
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('label')}
        return ToContext(labelled=self.submit(DftLabelWorkChain, **inputs))

    def inspect_label(self):
        node = self.ctx.labelled
        if 'training_set' not in node.outputs:
            return self.exit_codes.ERROR_LABELLING_FAILED.format(iteration=self.ctx.iteration)
        self.ctx.new_frames = node.outputs.training_set
        self.ctx.row['labels_added'] = self.ctx.new_frames.num_frames

    def evaluate_new_frames(self):
        if self._is_nep:
            outputs = self.run_once(evaluate_nep, self.ctx.potential, self.ctx.new_frames,
                                    metadata={'call_link_label': self._label('evaluate')})
            self.ctx.new_frames_errors = outputs['errors'].get_dict() if 'errors' in outputs else None
            return
        inputs = self._evaluate_inputs(self.ctx.new_frames, 'evaluate')
        return ToContext(evaluated=self.submit(MotepEvaluateCalculation, **inputs))

    def inspect_evaluation(self):
        if self._is_nep:
            if self.ctx.new_frames_errors is None:
                return self.exit_codes.ERROR_EVALUATION_FAILED.format(iteration=self.ctx.iteration)
            self.ctx.row['new_frames_force_rmse'] = self.ctx.new_frames_errors['forces_rmse']
            return
        node = self.ctx.evaluated
        if not node.is_finished_ok or 'errors' not in node.outputs:
            return self.exit_codes.ERROR_EVALUATION_FAILED.format(iteration=self.ctx.iteration)
        self.ctx.row['new_frames_force_rmse'] = node.outputs.errors['forces_rmse']

    def merge(self):
        self.ctx.training_set = self.run_once(
            merge_training_sets,  # set_0 first: the earlier label wins
            set_0_previous=self.ctx.training_set, set_1_added=self.ctx.new_frames,
            metadata={'call_link_label': self._label('merge')},
        )
        self._record('training_set', self.ctx.training_set)

    def decide(self):
        row = self.ctx.row
        fraction_ok = row['candidate_fraction'] < self.inputs.max_candidate_fraction.value
        rmse = row['new_frames_force_rmse']
        rmse_ok = rmse is None or rmse < self.inputs.target_force_rmse.value
        if row['labels_added'] == 0 and fraction_ok:
            self.ctx.stop_reason = (f'converged: {row["candidate_fraction"]:.3f} of explored frames extrapolative, '
                                    'nothing left to label')
        elif fraction_ok and rmse_ok:
            self.ctx.stop_reason = (f'converged: candidate fraction {row["candidate_fraction"]:.3f} < '
                                    f'{self.inputs.max_candidate_fraction.value} and force RMSE on new frames '
                                    f'{rmse:.3f} < {self.inputs.target_force_rmse.value} eV/Å')
        elif self.ctx.iteration >= self.ctx.last:
            self.ctx.stop_reason = f'max_iterations: {self.inputs.max_iterations.value} iteration(s) run'
        row['training_frames_after'] = self.ctx.training_set.num_frames
        self.ctx.summary.append(row)
        self.report(
            f'iteration {self.ctx.iteration}: {row["training_frames"]} training frames, force RMSE train '
            f'{_fmt(row.get("train_force_rmse"))} test {_fmt(row.get("test_force_rmse"))} eV/Å, candidate fraction '
            f'{row["candidate_fraction"]:.3f}, labels added {row["labels_added"]}'
            + (f'; stop: {self.ctx.stop_reason}' if self.ctx.stop_reason else '')
        )
        if self.ctx.stop_reason is None:
            self.ctx.iteration += 1

    def finalize(self):
        self.out('potential', self.ctx.potential)
        if self._is_nep:
            self.out('committee', dict(self.ctx.committee))
        self.out('training_set', self.ctx.training_set)
        record = self.run_once(loop_summary, summary=orm.List(self.ctx.summary),
                               stop_reason=orm.Str(self.ctx.stop_reason), last_iteration=orm.Int(self.ctx.iteration),
                               metadata={'call_link_label': 'record_summary'})
        for name in ('stop_reason', 'last_iteration', 'summary'):
            self.out(name, record[name])


def _nep_error(errors: dict, quantity: str, which: str) -> float | None:
    """An RMSE of a ``NepTrainCalculation`` ``errors`` Dict (``rmse_<quantity>_<which>_<unit>``) in eV units."""
    prefix = f'rmse_{quantity}_{which}_'
    for key, value in errors.items():
        if key.startswith(prefix) and value is not None:
            return float(value) / 1000.0 if key[len(prefix):].startswith('meV') else float(value)
    return None


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.4f}'
