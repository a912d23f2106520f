"""``mlcampaign.fit.compare``: an MTP and a NEP fitted to the same labels, compared on one held-out test set.

The comparison the paper makes (MTP and NEP trained on the same AIMD frames, errors side by side) needs both
models to descend from one ``TrainingSetData`` node and to be judged on one ``test_set`` node by one function, so
that the graph itself proves the comparison is like for like. The steps are today's pieces: motep
(``mlcampaign.motep.train``) and GPUMD ``nep``/neppo (``mlcampaign.nep.train``) train side by side; motep
(``mlcampaign.motep.evaluate``) and calorine (``mlcampaign.nep.evaluate``) predict the test frames; and
``mlcampaign.analysis.errors`` computes energy/force/virial errors per model and per element with a parity
figure. Neither trainer sees the test set.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain

from aiida_mlcampaign.calculations.analysis_models import compare_errors
from aiida_mlcampaign.calculations.motep import MotepEvaluateCalculation, MotepTrainCalculation
from aiida_mlcampaign.calculations.nep import NepTrainCalculation
from aiida_mlcampaign.calculations.nep_cpu import evaluate_nep
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps

__all__ = ('FitCompareWorkChain',)

_NEP_EXCLUDED = ('training_set', 'test_set', 'restart', 'foundation', 'foundation_restart', 'potential')


def _namespace_check(process_class, namespace: str, values: dict) -> str | None:
    """The CalcJob's own inputs validator with the frames it will get (an exposed namespace runs it without them)."""
    message = process_class.spec().inputs.validator(values, None)
    return f'{namespace}: {message}' if message else None


def validate_inputs(inputs, _):
    training_set, test_set = inputs.get('training_set'), inputs.get('test_set')
    if training_set is None or test_set is None:
        return None
    if test_set.num_frames == 0:
        return 'test_set: no frames to compare the models on'
    extra = sorted(set(test_set.species) - set(training_set.species))
    if extra:
        return f'test_set: species {extra} do not occur in training_set; neither model could predict them'
    mtp = {key: value for key, value in inputs.get('mtp', {}).items() if key != 'metadata'}
    message = _namespace_check(MotepTrainCalculation, 'mtp', {**mtp, 'training_set': training_set})
    if message:
        return message
    nep = {key: value for key, value in inputs.get('nep', {}).items() if key != 'metadata'}
    return _namespace_check(NepTrainCalculation, 'nep', {**nep, 'training_set': training_set})


class FitCompareWorkChain(CrashSafeSteps, WorkChain):
    """Fit an MTP (motep) and a NEP (GPUMD nep or neppo) to one training set; compare them on one test set."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData,
                   help='The labels both models are fitted to (e.g. the output of mlcampaign.dft.aimd, or of a '
                        'split).')
        spec.input('test_set', valid_type=TrainingSetData,
                   help='Held-out labelled frames both models are evaluated on; neither trainer sees them.')
        spec.expose_inputs(MotepTrainCalculation, namespace='mtp', exclude=('training_set',),
                           namespace_options={'help': 'The MTP fit with motep: code, potential (a level template '
                                                      'with species and distances), settings.'})
        spec.expose_inputs(NepTrainCalculation, namespace='nep', exclude=_NEP_EXCLUDED,
                           namespace_options={'help': 'The NEP fit: code (GPUMD nep, or neppo on a CPU), settings, '
                                                      'species.'})
        spec.inputs.validator = validate_inputs
        spec.outline(cls.train, cls.inspect_training, cls.predict_nep, cls.predict_mtp, cls.inspect_predictions,
                     cls.compare)
        spec.output('mtp_potential', valid_type=MtpPotentialData, help='The fitted MTP (motep).')
        spec.output('nep_potential', valid_type=NepPotentialData, help='The fitted NEP.')
        spec.output('mtp_predictions', valid_type=TrainingSetData,
                    help='The test frames labelled by the MTP (mlcampaign.motep.evaluate).')
        spec.output('nep_predictions', valid_type=TrainingSetData,
                    help='The test frames labelled by the NEP (mlcampaign.nep.evaluate, calorine CPUNEP).')
        spec.output('errors', valid_type=orm.Dict,
                    help='Per model (mtp, nep): energy, force and virial RMSE/MAE/max on the test set, force RMSE '
                         'per element (mlcampaign.analysis.errors; units in every key).')
        spec.output('parity', valid_type=orm.ArrayData, help='Reference and predicted values of both models.')
        spec.output('figure', valid_type=orm.SinglefileData, help='Parity figure of both models (PNG).')
        spec.exit_code(401, 'ERROR_MTP_FIT_FAILED', message='motep returned no potential (exit status {status}).')
        spec.exit_code(402, 'ERROR_NEP_FIT_FAILED', message='The NEP training returned no potential (exit status '
                                                            '{status}).')
        spec.exit_code(403, 'ERROR_MTP_PREDICTION_FAILED',
                       message='motep could not evaluate the MTP on the test set (exit status {status}).')

    def train(self):
        mtp = AttributeDict(self.exposed_inputs(MotepTrainCalculation, namespace='mtp'))
        mtp.training_set = self.inputs.training_set
        mtp.metadata = {**mtp.get('metadata', {}), 'call_link_label': 'fit_mtp'}
        nep = AttributeDict(self.exposed_inputs(NepTrainCalculation, namespace='nep'))
        nep.training_set = self.inputs.training_set
        nep.metadata = {**nep.get('metadata', {}), 'call_link_label': 'fit_nep'}
        return ToContext(mtp=self.submit(MotepTrainCalculation, **mtp), nep=self.submit(NepTrainCalculation, **nep))

    def inspect_training(self):
        for name, exit_code in (('mtp', self.exit_codes.ERROR_MTP_FIT_FAILED),
                                ('nep', self.exit_codes.ERROR_NEP_FIT_FAILED)):
            node = self.ctx[name]
            if 'potential' not in node.outputs:
                return exit_code.format(status=node.exit_status)
            if not node.is_finished_ok:  # e.g. motep not converged, a NEP stopped at its walltime: still a model
                self.report(f'{name} fit <{node.pk}> ended with exit status {node.exit_status}; its potential is '
                            'compared anyway')
        self.out('mtp_potential', self.ctx.mtp.outputs.potential)
        self.out('nep_potential', self.ctx.nep.outputs.potential)

    def predict_nep(self):
        """calorine on the daemon (seconds); in a step of its own, before anything is submitted."""
        outputs = self.run_once(evaluate_nep, self.ctx.nep.outputs.potential, self.inputs.test_set,
                               metadata={'call_link_label': 'predict_nep'})
        self.ctx.nep_predictions = outputs['predictions']

    def predict_mtp(self):
        mtp = self.exposed_inputs(MotepTrainCalculation, namespace='mtp')
        options = {key: value for key, value in mtp.get('metadata', {}).get('options', {}).items()
                   if key != 'parser_name'}  # same computer resources, its own parser
        return ToContext(mtp_evaluated=self.submit(
            MotepEvaluateCalculation, code=mtp['code'], potential=self.ctx.mtp.outputs.potential,
            frames=self.inputs.test_set, metadata={'call_link_label': 'predict_mtp', 'options': options}))

    def inspect_predictions(self):
        node = self.ctx.mtp_evaluated
        if not node.is_finished_ok or 'predictions' not in node.outputs:
            return self.exit_codes.ERROR_MTP_PREDICTION_FAILED.format(status=node.exit_status)
        self.out('mtp_predictions', node.outputs.predictions)
        self.out('nep_predictions', self.ctx.nep_predictions)

    def compare(self):
        outputs = self.run_once(compare_errors, reference=self.inputs.test_set,
                                mtp=self.ctx.mtp_evaluated.outputs.predictions, nep=self.ctx.nep_predictions,
                                metadata={'call_link_label': 'compare'})
        for name in ('errors', 'parity', 'figure'):
            self.out(name, outputs[name])
