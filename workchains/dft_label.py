"""``mlcampaign.dft.label``: DFT labels for a list of structures, tolerant of a few failures.

Active learning sends tens to hundreds of candidate structures to DFT at once. A campaign should
neither flood a cluster (concurrency cap) nor stop because one frame's SCF refuses to converge
(``max_failed_fraction``), and the resulting frames must be comparable (one set of settings,
recorded as ``dft_settings``).
"""

from __future__ import annotations

import re

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida.plugins import WorkflowFactory

from aiida_mlcampaign.calculations.records import dft_settings_record, failed_structures
from aiida_mlcampaign.calculations.training_set import training_set_from_pw
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains import dft_common
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps

PwBaseWorkChain = WorkflowFactory('quantumespresso.pw.base')

_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def validate_structures(value, _):
    if not value:
        return 'structures: at least one structure is required'
    for key in value:
        if not _KEY.match(key):
            return f'structures: key {key!r} must be a valid identifier'


def validate_fraction(value, _):
    if value is not None and not 0.0 <= value.value <= 1.0:
        return f'max_failed_fraction: must be in [0, 1], got {value.value}'


def validate_positive_int(name):
    def validator(value, _):
        if value is not None and value.value < 1:
            return f'{name}: must be >= 1, got {value.value}'

    return validator


def validate_inputs(inputs, _):
    """Refuse what would fail on the cluster: unknown elements, missing pseudopotentials, overlapping atoms."""
    if 'structures' not in inputs or 'pseudo_family' not in inputs:
        return None
    try:
        family = dft_common.load_family(inputs['pseudo_family'].value)
    except ValueError as exception:
        return str(exception)
    min_distance = inputs['min_distance'].value if 'min_distance' in inputs else 0.5
    for key, structure in inputs['structures'].items():
        problem = dft_common.structure_problem(structure, family, min_distance, field=f'structures.{key}')
        if problem:
            return problem


class DftLabelWorkChain(CrashSafeSteps, dft_common.DftWorkChainMixin, WorkChain):
    """Label structures with pw.x via PwBaseWorkChain and collect the frames in one ``TrainingSetData``."""

    _protocol_name = 'dft_label'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_dft_inputs(spec, origin='dft-label',
                              dft_help='Shared PwBaseWorkChain inputs; structure and pseudos are set per frame.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, validator=validate_structures,
                             help='The structures to label, keyed by a name used in link labels.')
        spec.input('max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(4),
                   validator=validate_positive_int('max_concurrent'),
                   help='At most this many PwBaseWorkChains run at the same time.')
        spec.input('max_failed_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.0),
                   validator=validate_fraction,
                   help='Fraction of structures allowed to fail; more failures make the work chain fail, '
                        'but the frames that did finish are still returned.')
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(0.5),
                   help='Structures with two atoms closer than this (Å) are refused before submission.')
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.has_pending)(
                while_(cls.no_dft_slot)(cls.wait_for_dft_slot),
                cls.submit_batch,
                cls.inspect_batch,
            ),
            cls.collect,
        )
        spec.output('training_set', valid_type=TrainingSetData, help='One frame per successfully labelled structure.')
        spec.output('dft_settings', valid_type=orm.Dict, help='The DFT settings every frame shares.')
        spec.output('failed_structures', valid_type=orm.List, required=False,
                    help='Keys of the structures whose labelling failed.')
        spec.exit_code(301, 'ERROR_NO_FRAMES', message='No structure could be labelled.')
        spec.exit_code(401, 'ERROR_TOO_MANY_FAILURES',
                       message='{failed} of {total} labels failed, more than max_failed_fraction allows.')
        spec.exit_code(501, 'ERROR_INCONSISTENT_SETTINGS',
                       message='The labels were not all computed with the same DFT settings: {detail}')

    @classmethod
    def get_builder_from_protocol(cls, code, structures, protocol=None, overrides=None, options=None,
                                  pseudo_family=None, **_):
        """A ready builder: aiida-quantumespresso's protocol plus this plugin's defaults and the family's cutoffs.

        ``structures`` is a list or a mapping of StructureData; ``overrides`` follows this work chain's input
        layout (``dft.pw.parameters`` etc.).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if not isinstance(structures, dict):
            structures = {f'structure_{i:04d}': s for i, s in enumerate(structures)}
        if not structures:
            raise ValueError('structures: at least one structure is required')
        builder = cls._builder_with_dft(code, structures.values(), inputs, pseudo_family, options)
        builder.structures = structures
        builder.max_concurrent = orm.Int(inputs['max_concurrent'])
        builder.max_failed_fraction = orm.Float(inputs['max_failed_fraction'])
        builder.min_distance = orm.Float(inputs['min_distance'])
        return builder

    def setup(self):
        self.ctx.pending = sorted(self.inputs.structures)
        self.ctx.batch = []
        self.ctx.finished = {}
        self.ctx.failed = []
        self.ctx.family = dft_common.load_family(self.inputs.pseudo_family.value)
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        elements = {s for st in self.inputs.structures.values() for s in st.get_symbols_set()}
        for message in dft_common.cutoff_warnings(dft_inputs.pw['parameters'].get_dict(), self.ctx.family, elements):
            self.report(f'warning: {message}')

    def has_pending(self):
        return bool(self.ctx.pending)

    def submit_batch(self):
        count = self.inputs.max_concurrent.value
        slots = self.dft_slots()
        if slots is not None:  # 0 is impossible here: the outline waited for a slot
            count = min(count, max(slots, 1))
        self.ctx.batch, self.ctx.pending = self.ctx.pending[:count], self.ctx.pending[count:]
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        futures = {}
        for key in self.ctx.batch:
            inputs = dft_common.pw_inputs_for(dft_inputs, self.inputs.structures[key], self.ctx.family,
                                              self.inputs.conv_thr_per_atom.value)
            inputs.metadata = {'call_link_label': f'label_{key}'}
            futures[f'label_{key}'] = self.submit(PwBaseWorkChain, **inputs)
        self.report(f'submitted {len(futures)} PwBaseWorkChain(s); {len(self.ctx.pending)} structure(s) waiting')
        return ToContext(**futures)

    def inspect_batch(self):
        self.seal_interrupted_below(*(self.ctx[f'label_{key}'] for key in self.ctx.batch))
        for key in self.ctx.batch:
            node = self.ctx[f'label_{key}']
            if node.is_finished_ok and 'output_trajectory' in node.outputs:
                self.ctx.finished[key] = node
            else:
                self.ctx.failed.append(key)
                self.report(f'{node.process_label}<{node.pk}> for structure {key!r} failed '
                            f'(exit status {node.exit_status}); it is left out')

    def collect(self):
        total = len(self.inputs.structures)
        if self.ctx.failed:
            self.out('failed_structures', self.run_once(failed_structures, keys=orm.List(self.ctx.failed),
                                                        metadata={'call_link_label': 'record_failed'}))
        if not self.ctx.finished:
            return self.exit_codes.ERROR_NO_FRAMES

        reference = None
        for key, node in self.ctx.finished.items():
            calculation = dft_common.last_calculation(node)
            if calculation is None:
                continue
            physics = dft_common.physics_of(calculation)
            if reference is None:
                reference = physics
            elif physics != reference:
                return self.exit_codes.ERROR_INCONSISTENT_SETTINGS.format(detail=f'{key}: {physics} != {reference}')

        sources = {f'trajectory_{key}': node.outputs.output_trajectory for key, node in self.ctx.finished.items()}
        training_set = self.run_once(
            training_set_from_pw, origin=self.inputs.origin, metadata={'call_link_label': 'collect_frames'}, **sources
        )
        self.out('training_set', training_set)
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        elements = {s for st in self.inputs.structures.values() for s in st.get_symbols_set()}
        record = dft_common.dft_settings_record(dft_inputs, self.ctx.family, elements,
                                                self.inputs.conv_thr_per_atom.value)
        self.out('dft_settings', self.run_once(dft_settings_record, record=orm.Dict(record),
                                               metadata={'call_link_label': 'record_dft_settings'}))
        self.report(f'{len(self.ctx.finished)} of {total} structures labelled; TrainingSetData<{training_set.pk}>')

        if len(self.ctx.failed) > self.inputs.max_failed_fraction.value * total:
            return self.exit_codes.ERROR_TOO_MANY_FAILURES.format(failed=len(self.ctx.failed), total=total)
