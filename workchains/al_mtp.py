"""``mlcampaign.al.mtp``: the MTP family of active learning (one iteration: train, explore, select).

motep fits the MTP; the exploration MD grades every frame with mlip-2's extrapolation grade (the MaxVol
grade against the training set's active set) and keeps the extrapolative ones as candidates; a D-optimal
(MaxVol, ``select-add``) subset of those, within the label budget, is selected for DFT. The test set, when
given, is scored by a ``MotepEvaluateCalculation`` submitted beside the exploration.

A young potential (fewer than ``young_training_frames`` training frames) is explored without the break
threshold (:func:`young_exploration_parameters`): its active set is built from a handful of frames, so even
sound frames grade 1e8-1e18 (measured on an 8-atom Cu3PS4 cell with 2 training frames) and a break at 10
would stop every walker at its first grade check, 10 fs into the run. Its walkers stop only when they explode
(or complete); ``max_candidates_per_walker`` still caps what each saves.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, if_

from aiida_mlcampaign.calculations.explore import MtpExploreCalculation
from aiida_mlcampaign.calculations.motep import MotepEvaluateCalculation, MotepTrainCalculation
from aiida_mlcampaign.calculations.selection import select_for_labelling
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.exploration import check_explore_settings
from aiida_mlcampaign.workchains.al_family import (
    ActiveLearningIterationWorkChain,
    shortest_distance,
    species_of,
)


def young_exploration_parameters(parameters: dict, training_frames: int, young_training_frames: int,
                                 young_break_threshold: float | None = None) -> tuple[dict, str | None]:
    """The exploration ``parameters`` for a potential trained on ``training_frames`` frames, and why they changed.

    A potential is young while ``training_frames < young_training_frames``. Then the break threshold becomes
    ``max(break_threshold, young_break_threshold)``, or none at all (``break_threshold`` None: walkers stop only
    when they explode or complete) when ``young_break_threshold`` is None or would not stay below the
    ``explode_grade`` given. Returns ``(parameters, None)`` unchanged for a mature potential or when the rule
    changes nothing; else a new dict and a sentence for the process report.
    """
    if training_frames >= young_training_frames:
        return parameters, None
    settings = check_explore_settings(dict(parameters))
    old, explode = settings['break_threshold'], settings['explode_grade']
    if old is None:
        return parameters, None
    new = None if young_break_threshold is None else max(old, float(young_break_threshold))
    if new is not None and explode is not None and not new < explode:
        new = None
    if new == old:
        return parameters, None
    what = ('none (walkers stop only when they explode or complete)' if new is None else f'{new:g}')
    return ({**parameters, 'break_threshold': new},
            f'young potential ({training_frames} training frame(s) < young_training_frames {young_training_frames}): '
            f'exploration break_threshold {old:g} -> {what}')


def validate_inputs(inputs, _):
    """Species of the training set and of every start structure must be the potential's."""
    potential = inputs.get('potential')
    if potential is None:
        return None
    training_set = inputs.get('training_set')
    if training_set is not None:
        extra = sorted(set(training_set.species) - set(potential.species))
        if extra:
            return f'training_set: species {extra} are not in the potential\'s species {potential.species}'
    for key, structure in inputs.get('explore', {}).get('structures', {}).items():
        extra = sorted(structure.get_symbols_set() - set(potential.species))
        if extra:
            return f'explore.structures.{key}: species {extra} are not in the potential\'s species'
    return None


def _validate_young_frames(value, _):
    if value is not None and value.value < 0:
        return f'young_training_frames: must be >= 0, got {value.value}'
    return None


def _validate_young_break(value, _):
    import math

    if value is not None and not (math.isfinite(value.value) and value.value >= 1.0):
        return f'young_break_threshold: must be a finite grade >= 1, got {value.value}'
    return None


class MtpIterationWorkChain(ActiveLearningIterationWorkChain):
    """Fit the MTP with motep, explore with extrapolation grading, select D-optimally."""

    _protocol_name = 'al_mtp'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=MtpPotentialData,
                   help='The MTP to fit (a level template with species and distances, or a trained one).')
        spec.expose_inputs(MotepTrainCalculation, namespace='train', exclude=('potential', 'training_set'),
                           namespace_options={'help': 'motep training (code, settings, options).'})
        spec.expose_inputs(MtpExploreCalculation, namespace='explore', exclude=('potential', 'training_set'),
                           namespace_options={'help': 'Exploration MD (code, structures, parameters).'})
        spec.input('select_add_threshold', valid_type=orm.Float, default=lambda: orm.Float(1.1),
                   help='MaxVol swap threshold of the D-optimal selection (mlp select-add --select-threshold).')
        spec.input('young_training_frames', valid_type=orm.Int, default=lambda: orm.Int(50),
                   validator=_validate_young_frames,
                   help='While the training set has fewer frames, the potential is young: its exploration gets '
                        'young_break_threshold instead of the break threshold (0: never).')
        spec.input('young_break_threshold', valid_type=orm.Float, required=False,
                   validator=_validate_young_break,
                   help='Break threshold of a young potential\'s exploration, max(it, explore.parameters\' '
                        'break_threshold); not given: no break at all, walkers stop only when they explode.')
        spec.inputs.validator = validate_inputs
        spec.outputs['potential'].valid_type = MtpPotentialData
        spec.outline(
            cls.train, cls.inspect_train,
            if_(cls.should_explore)(
                cls.explore, cls.inspect_explore,
                if_(cls.has_candidates)(cls.select),
            ).else_(
                cls.test_only, cls.inspect_test_only,
            ),
            cls.finalize,
        )

    @classmethod
    def get_evaluation(cls, inputs, potential, frames):
        """A ``MotepEvaluateCalculation`` on the training code and its resources (its own parser)."""
        train = inputs['train']
        options = {key: value for key, value in train.get('metadata', {}).get('options', {}).items()
                   if key != 'parser_name'}
        return MotepEvaluateCalculation, {'code': train['code'], 'potential': potential, 'frames': frames,
                                          'metadata': {'options': options}}

    @classmethod
    def fill_from_protocol(cls, namespace, *, training_set, structures, codes, protocol=None, overrides=None,
                           temperatures=None):
        """An untrained MTP of the protocol's level for the species of the training set and structures, motep
        settings, exploration parameters; ``codes``: ``train`` (motep) and ``explore`` (mlcampaign-explore)."""
        cls.check_overrides(protocol, overrides, 'overrides.mtp', extra=('min_dist', 'young_break_threshold'))
        inputs = cls.get_protocol_inputs(protocol, overrides)
        structures = dict(structures)
        min_dist = inputs.get('min_dist')
        if min_dist is None:  # 0.9 x the shortest distance, to 0.1 Å below
            min_dist = max(0.5, int(9 * shortest_distance(training_set, structures.values())) / 10)
        namespace.potential = MtpPotentialData.from_template(
            inputs['level'], species_of(training_set, structures.values()), min_dist=min_dist,
            max_dist=inputs['max_dist'])
        cls.fill_train_and_explore(namespace, inputs, codes, structures, temperatures)
        namespace.select_add_threshold = orm.Float(inputs['select_add_threshold'])
        namespace.young_training_frames = orm.Int(inputs['young_training_frames'])
        if inputs.get('young_break_threshold') is not None:
            namespace.young_break_threshold = orm.Float(inputs['young_break_threshold'])

    def train(self):
        self.ctx.statistics = {}
        inputs = AttributeDict(self.exposed_inputs(MotepTrainCalculation, namespace='train'))
        inputs.potential = self.inputs.potential
        inputs.training_set = self.inputs.training_set
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('train')}
        return ToContext(trained=self.submit(MotepTrainCalculation, **inputs))

    def inspect_train(self):
        node = self.ctx.trained
        if 'potential' not in node.outputs:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(why=f'motep exit status {node.exit_status}')
        if not node.is_finished_ok:
            self.report(f'training ended with exit status {node.exit_status}; using its potential anyway')
        self.ctx.potential = node.outputs.potential
        self.out('potential', self.ctx.potential)
        self.out('training_errors', node.outputs.training_errors)
        errors = node.outputs.training_errors.get_dict()
        self.ctx.statistics.update(train_force_rmse=errors.get('forces_rmse'),
                                   train_energy_rmse_per_atom=errors.get('energy_per_atom_rmse'))

    def explore(self):
        inputs = AttributeDict(self.exposed_inputs(MtpExploreCalculation, namespace='explore'))
        inputs.potential = self.ctx.potential
        inputs.training_set = self.inputs.training_set
        young_break = self.inputs.get('young_break_threshold')
        parameters, why = young_exploration_parameters(
            inputs.parameters.get_dict(), self.inputs.training_set.num_frames, self.inputs.young_training_frames.value,
            None if young_break is None else young_break.value)
        if why is not None:
            self.report(why)
            inputs.parameters = orm.Dict(parameters)
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': self._label('explore')}
        futures = {'explored': self.submit(MtpExploreCalculation, **inputs)}
        if 'test_set' in self.inputs:  # beside the exploration: a step that submits does nothing else
            futures['tested'] = self.evaluate(self.ctx.potential, self.inputs.test_set, 'test')
        return ToContext(**futures)

    def inspect_explore(self):
        node = self.ctx.explored
        exploded = node.exit_status == MtpExploreCalculation.exit_codes.ERROR_ALL_WALKERS_EXPLODED.status
        if exploded and 'candidates' in node.outputs and node.outputs.candidates.num_frames > 0:
            # A young potential explored with no break (young_training_frames): walkers run until they explode,
            # and the frames they saved on the way are exactly what it must learn next.
            self.report(f'every walker exploded, after saving {node.outputs.candidates.num_frames} candidate '
                        'frame(s); selecting from them')
        elif not node.is_finished_ok:
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(why=f'exit status {node.exit_status}')
        self.take_exploration(node)
        if 'tested' in self.ctx:
            self.take_test_errors(self.ctx.tested)

    def select(self):
        outputs = self.run_once(
            select_for_labelling, self.ctx.potential, self.inputs.training_set, self.ctx.candidates,
            budget=self.inputs.label_budget, select_threshold=self.inputs.select_add_threshold,
            min_distance=self.inputs.min_distance, metadata={'call_link_label': self._label('select')},
        )
        self.ctx.statistics['selected'] = self.emit_selected(outputs)

    def finalize(self):
        self.emit_statistics(self.ctx.statistics)
