"""``mlcampaign.al.nep``: the NEP family of active learning (one iteration: train, explore, select).

A committee of ``committee_size`` NEPs is trained on the same data with GPUMD's ``nep`` (its evolution
strategy draws its own random initial population, so members differ) or with neppo on the CPU (each member
gets its own ``seed``). The exploration runs on the CPU with the first member (calorine; ``explore``) or with
GPUMD on a GPU cluster (``gpumd``: every ``dump_stride``-th dumped frame is a candidate). The uncertainty of a
frame is the largest per-atom force standard deviation across the committee; frames inside the trust window
``[lower, upper)`` (``explore.parameters`` select_threshold/break_threshold, or ``trust_window`` with GPUMD)
are eligible, and the most uncertain, mutually distinct ones are selected.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, if_

from aiida_mlcampaign.calculations.explore import NepExploreCalculation
from aiida_mlcampaign.calculations.nep import NepTrainCalculation, nep_engine
from aiida_mlcampaign.calculations.nep_cpu import evaluate_nep, select_by_committee
from aiida_mlcampaign.calculations.training_set import candidates_from_trajectory
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.workchains.al_family import (
    ActiveLearningIterationWorkChain,
    given,
    species_of,
)
from aiida_mlcampaign.workchains.gpumd_base import GpumdBaseWorkChain

#: Family nep explores either on the CPU (explore, window in its parameters) or with GPUMD (gpumd, window in
#: trust_window): exactly one of the two.
EXPLORERS = ('explore', 'gpumd')


def _at_least(name, minimum):
    def validator(value, _):
        if value is not None and value.value < minimum:
            return f'{name}: must be at least {minimum}, got {value.value}'

    return validator


def _validate_train(inputs):
    """``NepTrainCalculation``'s own cross-field checks (nep.in settings, species, frames), run with the loop's
    training and test sets: inside the exposed namespace they run without them and skip every check, and a bad
    ``train.settings`` or an unlabelled training set would surface only when the first member is created."""
    if inputs.get('training_set') is None or not given(inputs, 'train'):
        return None
    values = {key: value for key, value in inputs['train'].items() if key != 'metadata'}
    for port in ('training_set', 'test_set'):
        if inputs.get(port) is not None:
            values[port] = inputs[port]
    message = NepTrainCalculation.spec().inputs.validator(values, None)
    return f'train: {message}' if message else None


def _validate_gpumd(inputs):
    """The GPUMD exploration must dump frames (they are the only candidates) and needs a trust window."""
    from aiida_mlcampaign.calculations.gpumd import dump_files, gpumd_legacy, stages_of

    gpumd = inputs['gpumd'].get('gpumd', {})  # restartability is checked by the exposed namespace's own validator
    if 'stages' in gpumd or 'run_in' in gpumd:
        if not dump_files(stages_of(gpumd, gpumd_legacy(gpumd))):
            field = 'stages' if 'stages' in gpumd else 'run_in'
            return f'gpumd.gpumd.{field}: no dump_xyz, so the exploration would give no candidate frames'
    window = inputs.get('trust_window')
    if window is None:
        return 'trust_window: required with gpumd ([lower, upper) of the committee force deviation, eV/Å)'
    values = window.get_list()
    if len(values) != 2 or not 0 < values[0] < values[1]:
        return f'trust_window: needs [lower, upper] with 0 < lower < upper, got {values}'
    return None


def _validate_explore(inputs):
    if inputs.get('trust_window') is not None:
        return ('trust_window: conflicts with explore, whose parameters select_threshold/break_threshold are '
                'the trust window of CPU exploration')
    parameters = inputs['explore'].get('parameters')
    if parameters is not None:
        values = parameters.get_dict()
        lower, upper = values.get('select_threshold'), values.get('break_threshold')
        if lower is None or upper is None:
            return ('explore.parameters: select_threshold and break_threshold (the trust window of the committee '
                    'force deviation, eV/Å) are required for family nep')
        if not 0 < lower < upper:
            return (f'explore.parameters: the trust window needs 0 < select_threshold < break_threshold, got '
                    f'[{lower}, {upper})')
    return None


def validate_inputs(inputs, _):
    message = _validate_train(inputs)
    if message:
        return message
    explorers = [name for name in EXPLORERS if given(inputs, name)]
    if len(explorers) != 1:
        return f'explore, gpumd: family nep explores with exactly one of them, got {explorers or "none"}'
    message = _validate_gpumd(inputs) if explorers == ['gpumd'] else _validate_explore(inputs)
    if message:
        return message
    species = inputs.get('train', {}).get('species')
    if species is not None:
        training_set = inputs.get('training_set')
        if training_set is not None:
            extra = sorted(set(training_set.species) - set(species.get_list()))
            if extra:
                return f'training_set: species {extra} are not in train.species {species.get_list()}'
        for key, structure in inputs.get('explore', {}).get('structures', {}).items():
            extra = sorted(structure.get_symbols_set() - set(species.get_list()))
            if extra:
                return f'explore.structures.{key}: species {extra} are not in train.species'
    return None


def member_settings(settings: orm.Dict | None, member: int) -> orm.Dict:
    """The settings of committee member ``member`` for neppo: its own ``seed`` (the given one + member).

    GPUMD's ``nep`` draws a new random population every run, so its members differ by themselves; neppo starts
    from ``seed`` (42 by default), and members with the same seed would be the same model and measure no
    uncertainty. A negative seed (random in neppo) is kept as it is.
    """
    values = settings.get_dict() if settings is not None else {}
    seed = int(values.get('seed', 42))
    return orm.Dict({**values, 'seed': seed + member if seed >= 0 else seed})


def nep_error(errors: dict, quantity: str, which: str) -> float | None:
    """An RMSE of a ``NepTrainCalculation`` ``errors`` Dict (``rmse_<quantity>_<which>_<unit>``) in eV units."""
    prefix = f'rmse_{quantity}_{which}_'
    for key, value in errors.items():
        if key.startswith(prefix) and value is not None:
            return float(value) / 1000.0 if key[len(prefix):].startswith('meV') else float(value)
    return None


def get_nep_builder_from_loop(loop, code, settings=None, **inputs):
    """A ``NepTrainCalculation`` builder for the DFT frames of a finished loop (of any family).

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


class NepIterationWorkChain(ActiveLearningIterationWorkChain):
    """Train a NEP committee, explore with its first member, select in the committee's trust window."""

    _protocol_name = 'al_nep'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        optional = {'required': False, 'populate_defaults': False}
        spec.expose_inputs(NepTrainCalculation, namespace='train',
                           exclude=('training_set', 'test_set', 'restart', 'foundation', 'foundation_restart',
                                    'potential'),
                           namespace_options={'help': 'Training of every committee member with GPUMD\'s nep or '
                                                      'neppo (code, settings, species).'})
        spec.expose_inputs(NepExploreCalculation, namespace='explore', exclude=('potentials',),
                           namespace_options={**optional, 'help': 'Exploration MD with the committee on the CPU '
                                                               '(code, structures, parameters incl. the trust '
                                                               'window select_threshold/break_threshold, eV/Å).'})
        spec.expose_inputs(GpumdBaseWorkChain, namespace='gpumd', exclude=('gpumd.potential',),
                           namespace_options={**optional, 'help': 'Exploration MD with GPUMD on a GPU cluster '
                                                               'instead of the CPU; its stages need a dump_xyz '
                                                               '(the dumped frames are the candidates).'})
        spec.input('trust_window', valid_type=orm.List, required=False,
                   help='With gpumd: [lower, upper) of the committee force deviation (eV/Å).')
        spec.input('dump_stride', valid_type=orm.Int, default=lambda: orm.Int(1), validator=_at_least('dump_stride', 1),
                   help='With gpumd: every n-th dumped frame is a candidate.')
        spec.input('committee_size', valid_type=orm.Int, default=lambda: orm.Int(4),
                   validator=_at_least('committee_size', 2),
                   help='Number of NEPs trained on the same data to measure the force uncertainty.')
        spec.inputs.validator = validate_inputs
        spec.outputs['potential'].valid_type = NepPotentialData
        spec.outputs['committee'].valid_type = NepPotentialData
        spec.outline(
            cls.train, cls.inspect_train,
            cls.evaluate_test_set,
            if_(cls.should_explore)(
                cls.explore, cls.inspect_explore,
                if_(cls.has_candidates)(cls.select),
            ),
            cls.finalize,
        )

    @classmethod
    def get_evaluation(cls, inputs, potential, frames):
        """``evaluate_nep`` (calorine, where the daemon runs: seconds for the frames of one iteration)."""
        return evaluate_nep, {'potential': potential, 'frames': frames}

    @classmethod
    def fill_from_protocol(cls, namespace, *, training_set, structures, codes, protocol=None, overrides=None,
                           temperatures=None):
        """A committee of the protocol's size and nep.in settings, CPU exploration with its trust window;
        ``codes``: ``train`` (neppo or GPUMD's nep) and ``explore`` (mlcampaign-explore). For GPUMD exploration
        set ``gpumd`` and ``trust_window`` on the namespace afterwards and delete ``explore``."""
        cls.check_overrides(protocol, overrides, 'overrides.nep')
        inputs = cls.get_protocol_inputs(protocol, overrides)
        structures = dict(structures)
        namespace.committee_size = orm.Int(inputs['committee_size'])
        namespace.dump_stride = orm.Int(inputs['dump_stride'])
        cls.fill_train_and_explore(namespace, inputs, codes, structures, temperatures)
        namespace.train.species = orm.List(species_of(training_set, structures.values()))

    def train(self):
        self.ctx.statistics = {}
        inputs = AttributeDict(self.exposed_inputs(NepTrainCalculation, namespace='train'))
        inputs.training_set = self.inputs.training_set
        if 'test_set' in self.inputs:
            inputs.test_set = self.inputs.test_set
        futures = {}
        for member in range(self.inputs.committee_size.value):
            label = self._label(f'train_member_{member}')
            member_inputs = {**inputs, 'metadata': {**inputs.get('metadata', {}), 'call_link_label': label}}
            if nep_engine(inputs.code) == 'neppo':
                member_inputs['settings'] = member_settings(inputs.get('settings'), member)
            futures[f'trained_member_{member}'] = self.submit(NepTrainCalculation, **member_inputs)
        return ToContext(**futures)

    def inspect_train(self):
        committee = {}
        for member in range(self.inputs.committee_size.value):
            node = self.ctx[f'trained_member_{member}']
            if not node.is_finished_ok or 'potential' not in node.outputs:
                return self.exit_codes.ERROR_TRAINING_FAILED.format(
                    why=f'committee member {member} (exit status {node.exit_status})')
            committee[f'member_{member}'] = node.outputs.potential
            self.out(f'committee.member_{member}', node.outputs.potential)
        self.ctx.committee = committee
        self.ctx.potential = committee['member_0']
        self.out('potential', self.ctx.potential)
        first = self.ctx.trained_member_0
        if 'errors' in first.outputs:
            self.out('training_errors', first.outputs.errors)
            errors = first.outputs.errors.get_dict()
            self.ctx.statistics.update(train_force_rmse=nep_error(errors, 'force', 'train'),
                                       train_energy_rmse_per_atom=nep_error(errors, 'energy', 'train'))

    def evaluate_test_set(self):
        """Member 0 scored on the test set where the daemon runs, in a step of its own (a step that submits does
        nothing else, so a crash after it never repeats work)."""
        if 'test_set' in self.inputs:
            self.take_test_errors(self.evaluate(self.ctx.potential, self.inputs.test_set, 'test'))

    def explore(self):
        if 'gpumd' in self.inputs:
            inputs = AttributeDict(self.exposed_inputs(GpumdBaseWorkChain, namespace='gpumd'))
            inputs.gpumd = {**inputs.gpumd, 'potential': self.ctx.potential}
            inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
            return ToContext(explored=self.submit(GpumdBaseWorkChain, **inputs))
        inputs = AttributeDict(self.exposed_inputs(NepExploreCalculation, namespace='explore'))
        inputs.potentials = dict(self.ctx.committee)
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
        return ToContext(explored=self.submit(NepExploreCalculation, **inputs))

    def inspect_explore(self):
        node = self.ctx.explored
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(why=f'exit status {node.exit_status}')
        if 'gpumd' in self.inputs:
            return self._inspect_gpumd_exploration(node)
        self.take_exploration(node)

    def _inspect_gpumd_exploration(self, node):
        """Dumped frames become candidates; their fraction in the trust window is known only after selection."""
        if 'trajectory' not in node.outputs:  # a dump_xyz is required at launch; GPUMD wrote none
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(why='GPUMD wrote no dump.xyz')
        self.ctx.candidates = self.run_once(
            candidates_from_trajectory, node.outputs.trajectory, orm.List(self.ctx.potential.species),
            self.inputs.dump_stride, metadata={'call_link_label': self._label('candidates')})
        self.out('candidates', self.ctx.candidates)
        self.ctx.statistics.update(candidate_fraction=0.0, explored_frames=self.ctx.candidates.num_frames,
                                   candidates=self.ctx.candidates.num_frames, selected=0)

    def select(self):
        if 'gpumd' in self.inputs:
            lower, upper = self.inputs.trust_window.get_list()
        else:
            window = self.inputs.explore.parameters.get_dict()
            lower, upper = window['select_threshold'], window['break_threshold']
        outputs = self.run_once(
            select_by_committee, self.ctx.candidates, lower=orm.Float(lower), upper=orm.Float(upper),
            budget=self.inputs.label_budget, metadata={'call_link_label': self._label('select')},
            **self.ctx.committee,
        )
        if 'gpumd' in self.inputs:  # the CPU explorer counts this itself, while exploring
            counts = outputs['statistics'].get_dict()
            self.ctx.statistics['candidate_fraction'] = (counts['in_window'] + counts['above']) / max(
                counts['candidates'], 1)
        self.ctx.statistics['selected'] = self.emit_selected(outputs)

    def finalize(self):
        self.emit_statistics(self.ctx.statistics)
