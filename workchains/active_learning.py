"""``mlcampaign.al.loop``: active learning of any potential family, one work chain, full provenance.

One iteration is the field's standard loop: train -> explore with MD while measuring the model's
uncertainty -> select frames -> label them with DFT -> merge. What differs between families (how a model is
trained, how uncertainty is measured, how frames are chosen) lives in the family's own iteration work chain
(``mlcampaign.al.mtp``, ``mlcampaign.al.nep``, or any installed ``mlcampaign.al.<family>``: see
:mod:`aiida_mlcampaign.workchains.al_family`); the user gives its inputs under the loop's ``<family>``
namespace. The loop does what every family shares, and nothing else:

* runs the family's iteration (``iteration_NN_<family>``) with the training and test sets, budget and
  ``min_distance``;
* screens the selected structures for atoms closer than ``min_distance`` (``iteration_NN_screen``), whatever
  the family did;
* labels the rest with ``mlcampaign.dft.label`` (``iteration_NN_label``), scores the exploring model on the new
  labels by the family's own evaluation (``iteration_NN_evaluate``), merges (``iteration_NN_merge``);
* stops on measured criteria: few explored frames are uncertain (``max_candidate_fraction``) *and* the model
  that explored predicts the new DFT forces well (``target_force_rmse``), or after ``max_iterations``.

A loop started from a finished loop's outputs (``get_builder_restart_from``) continues with the next iteration;
nothing already computed is run again. :func:`aiida_mlcampaign.workchains.al_nep.get_nep_builder_from_loop`
trains a NEP on a finished loop's data set, as the paper trains both families on the same DFT frames.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from aiida_mlcampaign.calculations.records import loop_summary
from aiida_mlcampaign.calculations.selection import screen_structures
from aiida_mlcampaign.calculations.training_set import merge_training_sets
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.al_family import (
    CONTRACT_INPUTS,
    available_families,
    evaluation_errors,
    given,
    launch_evaluation,
)
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps
from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain
from aiida_mlcampaign.workchains.protocol import PluginProtocolMixin

#: The inputs of the ``label`` namespace that a ``mlcampaign.dft.label`` protocol builder fills.
LABEL_INPUTS = ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction', 'min_distance', 'max_concurrent')
#: The loop's own inputs a protocol sets.
PROTOCOL_INPUTS = {'max_iterations': orm.Int, 'label_budget': orm.Int, 'max_candidate_fraction': orm.Float,
                   'target_force_rmse': orm.Float, 'min_distance': orm.Float}


def _positive(name, kind=float):
    def validator(value, _):
        if value is not None and not kind(value.value) > 0:
            return f'{name}: must be positive, got {value.value}'

    return validator


def family_of(inputs) -> str | None:
    """The family whose namespace is given (None unless exactly one is)."""
    chosen = [name for name in available_families() if given(inputs, name)]
    return chosen[0] if len(chosen) == 1 else None


def validate_inputs(inputs, _):
    families = available_families()
    chosen = [name for name in families if given(inputs, name)]
    if len(chosen) != 1:
        return (f'{", ".join(families)}: give the inputs of exactly one potential family, got '
                f'{", ".join(chosen) if chosen else "none"}')
    family = chosen[0]
    validator = families[family].spec().inputs.validator
    if validator is not None:  # again, now with the contract's inputs the loop gives the family
        values = {**inputs[family], **{key: inputs[key] for key in CONTRACT_INPUTS if key in inputs}}
        message = validator(values, None)
        if message:
            return f'{family}.{message}' if not message.startswith(('training_set', 'test_set')) else message
    fraction = inputs.get('max_candidate_fraction')
    if fraction is not None and not 0.0 <= fraction.value <= 1.0:
        return f'max_candidate_fraction: must be in [0, 1], got {fraction.value}'
    return None


class ActiveLearningWorkChain(CrashSafeSteps, PluginProtocolMixin, WorkChain):
    """Iterate a family (train, explore, select), then screen, label, score, merge; repeat until converged."""

    _protocol_name = 'al_loop'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData,
                   help='Labelled frames to start from (e.g. the output of mlcampaign.dft.label or .aimd).')
        spec.input('test_set', valid_type=TrainingSetData, required=False,
                   help='Fixed held-out frames; their force RMSE is reported every iteration.')
        for name, family in available_families().items():
            spec.expose_inputs(family, namespace=name, exclude=CONTRACT_INPUTS, namespace_options={
                'required': False, 'populate_defaults': False,
                'help': f'Family {name} (mlcampaign.al.{name}): {(family.__doc__ or "").strip()} Give the inputs '
                        'of exactly one family.'})
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
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(0.6),
                   help='Structures with atoms closer than this (Å) are never sent to DFT, whatever the family.')
        spec.input('retrain_final', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='When the last iteration added labels, fit the family once more on the final training set '
                        '(``final_<family>``), so that the output potential has seen every label; False returns the '
                        'last iteration\'s potential, trained before its labels were added.')
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_iterate)(
                cls.iterate, cls.inspect_iteration,
                if_(cls.has_selection)(
                    cls.screen,
                    if_(cls.has_selection)(
                        cls.label, cls.inspect_label,
                        cls.evaluate_new_frames, cls.inspect_evaluation,
                        cls.merge,
                    ),
                ),
                cls.decide,
            ),
            if_(cls.should_retrain)(cls.retrain, cls.inspect_retrain),
            cls.finalize,
        )
        spec.output('potential', valid_type=orm.Data,
                    help='The potential fitted to the final training set (retrain_final; else the last '
                         'iteration\'s); for a committee the member that drove the MD.')
        spec.output_namespace('committee', valid_type=orm.Data, dynamic=True, required=False,
                              help='Every member of the last committee (families that train one).')
        spec.output('training_set', valid_type=TrainingSetData,
                    help='All labelled frames, including those added by the last iteration.')
        spec.output('stop_reason', valid_type=orm.Str, help='Why the loop stopped.')
        spec.output('last_iteration', valid_type=orm.Int, help='Number of the last iteration run.')
        spec.output('summary', valid_type=orm.List, help='One dict per iteration: sizes, errors, fractions, '
                                                          'warnings.')
        spec.output('final_statistics', valid_type=orm.Dict, required=False,
                    help='The final fit\'s statistics (train and test errors of the output potential) when the '
                         'loop retrained on its final training set.')
        spec.output_namespace('iterations', dynamic=True,
                              help='Per iteration: potential, committee, statistics, candidates, exploration, '
                                   'training errors, screening, training set.')
        spec.exit_code(410, 'ERROR_TRAINING_FAILED', message='Training in iteration {iteration} failed.')
        spec.exit_code(420, 'ERROR_EXPLORATION_FAILED', message='Exploration in iteration {iteration} failed.')
        spec.exit_code(430, 'ERROR_LABELLING_FAILED', message='DFT labelling in iteration {iteration} failed.')
        spec.exit_code(440, 'ERROR_EVALUATION_FAILED', message='Evaluating the model in iteration {iteration} failed.')
        spec.exit_code(450, 'ERROR_FINAL_FIT_FAILED', message='The final fit on the whole training set failed: {why}')

    @classmethod
    def get_builder_from_protocol(cls, family: str, training_set, structures, codes: dict, dft_code, *,
                                  protocol: str | None = None, overrides: dict | None = None,
                                  pseudo_family: str | None = None, options: dict | None = None,
                                  temperatures=None, test_set=None):
        """A ready loop for ``family`` at ``protocol`` (``fast``, ``balanced``, ``stringent``), as
        aiida-quantumespresso builds its work chains.

        ``structures``: start structures of the exploration (list or mapping), also the templates of the DFT
        settings; ``codes``: the family's codes by its own keys (``train``, ``explore``); ``dft_code``: pw.x,
        labelled with ``mlcampaign.dft.label``'s protocol named by this protocol's ``label_protocol``, with
        ``pseudo_family`` and ``options`` (the pw.x jobs' resources). ``overrides``: the loop's inputs, plus
        ``label`` (dft.label's overrides) and ``<family>`` (the family protocol's keys).
        """
        families = available_families()
        if family not in families:
            raise ValueError(f'family: {family!r} is not installed; choose one of {sorted(families)}')
        overrides = dict(overrides or {})
        family_overrides, label_overrides = overrides.pop(family, None), overrides.pop('label', None)
        cls.check_overrides(protocol, overrides, 'overrides')
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if not isinstance(structures, dict):
            structures = {f'structure_{i:02d}': structure for i, structure in enumerate(structures)}
        builder = cls.get_builder()
        builder.training_set = training_set
        if test_set is not None:
            builder.test_set = test_set
        label = DftLabelWorkChain.get_builder_from_protocol(
            dft_code, list(structures.values()), protocol=inputs['label_protocol'], overrides=label_overrides,
            options=options, pseudo_family=pseudo_family)
        for key in LABEL_INPUTS:
            setattr(builder.label, key, label[key])
        for key, kind in PROTOCOL_INPUTS.items():
            setattr(builder, key, kind(inputs[key]))
        families[family].fill_from_protocol(builder[family], training_set=training_set, structures=structures,
                                            codes=codes, protocol=protocol, overrides=family_overrides,
                                            temperatures=temperatures)
        return builder

    @classmethod
    def get_builder_restart_from(cls, previous):
        """A builder that continues ``previous`` (a finished loop) with its next iteration."""
        builder = previous.get_builder_restart()
        builder.training_set = previous.outputs.training_set
        builder.first_iteration = orm.Int(previous.outputs.last_iteration.value + 1)
        return builder

    # ----------------------------------------------------------------------------------------- steps
    def setup(self):
        self.ctx.family = family_of(self.inputs)
        self.ctx.iteration = self.inputs.first_iteration.value
        self.ctx.last = self.inputs.first_iteration.value + self.inputs.max_iterations.value - 1
        self.ctx.training_set = self.inputs.training_set
        self.ctx.stop_reason = None
        self.ctx.summary = []

    def should_iterate(self):
        return self.ctx.stop_reason is None

    @property
    def _family(self) -> type:
        return available_families()[self.ctx.family]

    def _label(self, step: str) -> str:
        return f'iteration_{self.ctx.iteration:02d}_{step}'

    def _record(self, name: str, node) -> None:
        self.out(f'iterations.iteration_{self.ctx.iteration:02d}.{name}', node)

    def _family_inputs(self, iteration: int, label: str, train_only: bool = False) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(self._family, namespace=self.ctx.family))
        inputs.training_set = self.ctx.training_set
        if 'test_set' in self.inputs:
            inputs.test_set = self.inputs.test_set
        inputs.iteration = orm.Int(iteration)
        inputs.label_budget = self.inputs.label_budget
        inputs.min_distance = self.inputs.min_distance
        inputs.train_only = orm.Bool(train_only)
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': label}
        return inputs

    def iterate(self):
        self.ctx.row = {'iteration': self.ctx.iteration, 'training_frames': self.ctx.training_set.num_frames}
        inputs = self._family_inputs(self.ctx.iteration, self._label(self.ctx.family))
        return ToContext(iterated=self.submit(self._family, **inputs))

    def inspect_iteration(self):
        node = self.ctx.iterated
        if not node.is_finished_ok:
            self.report(f'{self.ctx.family} iteration {self.ctx.iteration} failed: {node.exit_message}')
            # the family's failure by its label (the contract's codes), else an exploration failure
            labels = {self._family.exit_codes[name].status: name
                      for name in ('ERROR_TRAINING_FAILED', 'ERROR_EVALUATION_FAILED')}
            code = labels.get(node.exit_status, 'ERROR_EXPLORATION_FAILED')
            return self.exit_codes[code].format(iteration=self.ctx.iteration)
        outputs = node.outputs
        self.ctx.potential = outputs.potential
        self.ctx.committee = dict(outputs.committee) if 'committee' in outputs else {}
        self._record('potential', self.ctx.potential)
        for key, member in self.ctx.committee.items():
            self._record(f'committee.{key}', member)
        for name in ('statistics', 'training_errors', 'exploration', 'candidates'):
            if name in outputs:
                self._record(name, outputs[name])
        self.ctx.row.update(outputs.statistics.get_dict())
        self.ctx.row.update(labels_added=0, new_frames_force_rmse=None)
        self.ctx.selected = dict(outputs.selected) if 'selected' in outputs else {}

    def has_selection(self):
        return bool(self.ctx.selected)

    def screen(self):
        outputs = self.run_once(screen_structures, self.inputs.min_distance, **self.ctx.selected,
                                metadata={'call_link_label': self._label('screen')})
        self._record('screening', outputs['screening'])
        refused = outputs['screening']['refused']
        if refused:
            self.report(f'iteration {self.ctx.iteration}: {len(refused)} selected structure(s) have atoms closer '
                        f'than {self.inputs.min_distance.value} Å and are not labelled')
        self.ctx.selected = {key: node for key, node in outputs.items() if key != 'screening'}

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
        """The exploring model scored on the new DFT frames, by the family's own evaluation."""
        result = launch_evaluation(self, self._family, self.inputs[self.ctx.family], self.ctx.potential,
                                   self.ctx.new_frames, self._label('evaluate'))
        if isinstance(result, orm.ProcessNode):
            return ToContext(evaluated=result)
        self.ctx.evaluated = result

    def inspect_evaluation(self):
        errors = evaluation_errors(self.ctx.evaluated)
        self.ctx.evaluated = None
        if errors is None:
            return self.exit_codes.ERROR_EVALUATION_FAILED.format(iteration=self.ctx.iteration)
        self.ctx.row['new_frames_force_rmse'] = errors.get('forces_rmse')

    def merge(self):
        self.ctx.training_set = self.run_once(
            merge_training_sets,  # set_0 first: the earlier label wins
            set_0_previous=self.ctx.training_set, set_1_added=self.ctx.new_frames,
            metadata={'call_link_label': self._label('merge')},
        )
        self._record('training_set', self.ctx.training_set)

    def decide(self):
        row = self.ctx.row
        fraction = row.get('candidate_fraction') or 0.0
        fraction_ok = fraction < self.inputs.max_candidate_fraction.value
        rmse = row['new_frames_force_rmse']
        rmse_ok = rmse is None or rmse < self.inputs.target_force_rmse.value
        if row['labels_added'] == 0 and fraction_ok:
            self.ctx.stop_reason = f'converged: {fraction:.3f} of explored frames extrapolative, nothing left to label'
        elif fraction_ok and rmse_ok:
            self.ctx.stop_reason = (f'converged: candidate fraction {fraction:.3f} < '
                                    f'{self.inputs.max_candidate_fraction.value} and force RMSE on new frames '
                                    f'{rmse:.3f} < {self.inputs.target_force_rmse.value} eV/Å')
        elif self.ctx.iteration >= self.ctx.last:
            self.ctx.stop_reason = f'max_iterations: {self.inputs.max_iterations.value} iteration(s) run'
        row['training_frames_after'] = self.ctx.training_set.num_frames
        row['warnings'] = self._warnings(row)
        for warning in row['warnings']:
            self.report(f'WARNING iteration {self.ctx.iteration}: {warning}')
        self.ctx.summary.append(row)
        self.report(
            f'iteration {self.ctx.iteration}: {row["training_frames"]} training frames, force RMSE train '
            f'{_fmt(row.get("train_force_rmse"))} test {_fmt(row.get("test_force_rmse"))} eV/Å, candidate fraction '
            f'{fraction:.3f}, labels added {row["labels_added"]}'
            + (f'; stop: {self.ctx.stop_reason}' if self.ctx.stop_reason else '')
        )
        if self.ctx.stop_reason is None:
            self.ctx.iteration += 1

    def _warnings(self, row: dict) -> list[str]:
        """What makes this iteration's model untrustworthy, in words: a test error that grew fourfold since the
        previous iteration (a fit that diverged or a pool that drifted), or none measured at all."""
        warnings = []
        now = row.get('test_force_rmse')
        before = self.ctx.summary[-1].get('test_force_rmse') if self.ctx.summary else None
        if now is not None and before and now > 4.0 * before:
            warnings.append(f'test force RMSE grew from {before:.4f} to {now:.4f} eV/Å (more than 4x): check the '
                            'fit (training settings, new labels far from the pool)')
        return warnings

    def should_retrain(self) -> bool:
        """The last iteration's potential was trained before its labels were added: fit once more."""
        return self.inputs.retrain_final.value and bool(self.ctx.summary) and self.ctx.summary[-1]['labels_added'] > 0

    def retrain(self):
        inputs = self._family_inputs(self.ctx.iteration + 1, f'final_{self.ctx.family}', train_only=True)
        return ToContext(retrained=self.submit(self._family, **inputs))

    def inspect_retrain(self):
        node = self.ctx.retrained
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_FINAL_FIT_FAILED.format(why=node.exit_message or f'exit {node.exit_status}')
        self.ctx.potential = node.outputs.potential
        self.ctx.committee = dict(node.outputs.committee) if 'committee' in node.outputs else {}
        self.out('final_statistics', node.outputs.statistics)
        statistics = node.outputs.statistics.get_dict()
        self.report(f'final fit on {self.ctx.training_set.num_frames} frames: force RMSE train '
                    f'{_fmt(statistics.get("train_force_rmse"))} test {_fmt(statistics.get("test_force_rmse"))} eV/Å')

    def finalize(self):
        self.out('potential', self.ctx.potential)
        if self.ctx.committee:
            self.out('committee', dict(self.ctx.committee))
        self.out('training_set', self.ctx.training_set)
        record = self.run_once(loop_summary, summary=orm.List(self.ctx.summary),
                               stop_reason=orm.Str(self.ctx.stop_reason), last_iteration=orm.Int(self.ctx.iteration),
                               metadata={'call_link_label': 'record_summary'})
        for name in ('stop_reason', 'last_iteration', 'summary'):
            self.out(name, record[name])


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.4f}'
