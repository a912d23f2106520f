"""``mlcampaign.dft.aimd``: Born-Oppenheimer MD with pw.x in restartable segments.

A long AIMD run is the classic seed of a training set, and the first thing a cluster's walltime
kills. Running it as a chain of short PwBaseWorkChains (segments) means a crash, a walltime or a
daemon restart costs at most one segment; each finished segment is checkpointed in the graph.

How segments continue (measured with QE 6.7):

* NVE (``thermostat='initial'``: random velocities at ``temperature`` once, then no control): the next
  segment starts from the geometry after the last Verlet move with ``ion_velocities='from_input'`` and
  velocities reconstructed from the last two geometries and the last forces. The continued energies match
  an uninterrupted run to 1e-6 Ry.
* With a thermostat (``berendsen``, ``svr``, ``rescaling``, ``andersen``): pw.x 6.7 returns NaN
  temperatures when a thermostat is combined with input velocities, so each segment draws fresh
  Maxwell-Boltzmann velocities at ``temperature``: the segment boundary acts as an Andersen collision.
  That samples the canonical ensemble, which is what a training set needs, but it is not a trajectory for
  dynamical properties (use MLP MD for those).

aiida-quantumespresso's MD parsing: frame i of ``output_trajectory`` is the geometry of SCF i, with
its energy and forces; ``output_structure`` is the geometry after the last move and has no labels; the
temperature is read here from stdout.
"""

from __future__ import annotations


import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, while_
from aiida.plugins import WorkflowFactory

from aiida_mlcampaign.calculations.records import dft_settings_record
from aiida_mlcampaign.calculations.training_set import training_set_from_pw
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.qe import RY_TIME_IN_FS, continuation_velocities, read_md_thermo
from aiida_mlcampaign.workchains import dft_common
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps

PwBaseWorkChain = WorkflowFactory('quantumespresso.pw.base')

THERMOSTATS = ('initial', 'berendsen', 'svr', 'rescaling', 'andersen')


def _positive(name, kind=float):
    def validator(value, _):
        if value is not None and not kind(value.value) > 0:
            return f'{name}: must be positive, got {value.value}'

    return validator


def validate_thermostat(value, _):
    if value is not None and value.value not in THERMOSTATS:
        return f'thermostat: {value.value!r} is not one of {THERMOSTATS}'


def validate_inputs(inputs, _):
    if 'structure' not in inputs or 'pseudo_family' not in inputs:
        return None
    try:
        family = dft_common.load_family(inputs['pseudo_family'].value)
    except ValueError as exception:
        return str(exception)
    problem = dft_common.structure_problem(inputs['structure'], family, 0.5, field='structure')
    if problem:
        return problem
    steps = inputs['steps'].value
    equilibration = inputs['equilibration_steps'].value if 'equilibration_steps' in inputs else 0
    if equilibration < 0:
        return f'equilibration_steps: must be >= 0, got {equilibration}'
    if equilibration >= steps:
        return f'equilibration_steps: {equilibration} drops every one of the {steps} steps'


def segment_skips(lengths: list[int], equilibration: int, every: int) -> dict[str, int]:
    """Per segment, the first local step to keep so that the kept global steps are equilibration + k * every.

    Segments holding no kept step are absent from the result.
    """
    skips, start = {}, 0
    for index, length in enumerate(lengths):
        first = max(equilibration, start)
        first += (every - (first - equilibration) % every) % every
        if first < start + length:
            skips[f'{index:03d}'] = first - start
        start += length
    return skips


@calcfunction
def join_md_thermo(**retrieved) -> orm.ArrayData:
    """Temperature, kinetic and conserved energy of every step of every segment, in segment order."""
    columns = {'temperature': [], 'kinetic_energy': [], 'conserved_energy': []}
    for key in sorted(retrieved):
        thermo = read_md_thermo(retrieved[key].base.repository.get_object_content('aiida.out'))
        for name in columns:
            columns[name].append(thermo[name])
    array = orm.ArrayData()
    for name, parts in columns.items():
        array.set_array(name, np.concatenate(parts) if parts else np.array([]))
    array.base.attributes.set('units', {'temperature': 'K', 'kinetic_energy': 'eV', 'conserved_energy': 'eV'})
    return array


class DftAimdWorkChain(CrashSafeSteps, dft_common.DftWorkChainMixin, WorkChain):
    """Run AIMD with pw.x in segments and return every ``every``-th frame after equilibration."""

    _protocol_name = 'dft_aimd'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        cls.define_dft_inputs(spec, origin='dft-aimd',
                              dft_help='Shared PwBaseWorkChain inputs; MD keywords are set by this work chain.')
        spec.input('structure', valid_type=orm.StructureData, help='Starting geometry.')
        spec.input('temperature', valid_type=orm.Float, validator=_positive('temperature'),
                   help='Target (and initial) ionic temperature in K.')
        spec.input('steps', valid_type=orm.Int, validator=_positive('steps', int),
                   help='Total number of MD steps (= SCF calculations) over all segments.')
        spec.input('time_step', valid_type=orm.Float, validator=_positive('time_step'),
                   help='MD time step in fs (converted to pw.x Rydberg time units).')
        spec.input('segment_steps', valid_type=orm.Int, default=lambda: orm.Int(50),
                   validator=_positive('segment_steps', int),
                   help='Steps per pw.x run; a crash loses at most one segment.')
        spec.input('thermostat', valid_type=orm.Str, default=lambda: orm.Str('berendsen'),
                   validator=validate_thermostat,
                   help="pw.x ion_temperature: 'initial' gives NVE with exact continuation, the others a "
                        'thermostat with fresh velocities at each segment start.')
        spec.input('thermostat_steps', valid_type=orm.Int, default=lambda: orm.Int(10),
                   help='pw.x nraise: thermostat relaxation time in steps (berendsen, svr) or rescaling period.')
        spec.input('equilibration_steps', valid_type=orm.Int, default=lambda: orm.Int(0),
                   help='Steps dropped from the start before frames are kept.')
        spec.input('every', valid_type=orm.Int, default=lambda: orm.Int(1), validator=_positive('every', int),
                   help='Keep every k-th step after equilibration.')
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.has_steps_left)(
                while_(cls.no_dft_slot)(cls.wait_for_dft_slot),
                cls.run_segment,
                cls.inspect_segment,
            ),
            cls.collect,
        )
        spec.output('training_set', valid_type=TrainingSetData, help='Kept frames with energy, forces, stress, T.')
        spec.output('thermo', valid_type=orm.ArrayData, help='Temperature and energies of every step.')
        spec.output('final_structure', valid_type=orm.StructureData,
                    help='Geometry after the last MD move, to start further MD.')
        spec.output('dft_settings', valid_type=orm.Dict, help='The DFT settings of every segment.')
        spec.exit_code(310, 'ERROR_NO_FRAMES_KEPT', message='No frame is left after equilibration and thinning.')
        spec.exit_code(410, 'ERROR_SEGMENT_FAILED', message='MD segment {index} failed with exit status {status}.')

    @classmethod
    def get_builder_from_protocol(cls, code, structure, *, temperature, steps, protocol=None, overrides=None,
                                  options=None, pseudo_family=None, **_):
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls._builder_with_dft(code, [structure], inputs, pseudo_family, options)
        builder.structure = structure
        builder.temperature = orm.Float(temperature)
        builder.steps = orm.Int(steps)
        builder.time_step = orm.Float(inputs['time_step'])
        builder.segment_steps = orm.Int(inputs['segment_steps'])
        builder.thermostat = orm.Str(inputs['thermostat'])
        builder.equilibration_steps = orm.Int(inputs['equilibration_steps'])
        builder.every = orm.Int(inputs['every'])
        return builder

    def setup(self):
        self.ctx.steps_done = 0
        self.ctx.segments = []
        self.ctx.structure = self.inputs.structure
        self.ctx.velocities = None
        self.ctx.family = dft_common.load_family(self.inputs.pseudo_family.value)

    def has_steps_left(self):
        return self.ctx.steps_done < self.inputs.steps.value

    def run_segment(self):
        index = len(self.ctx.segments)
        nstep = min(self.inputs.segment_steps.value, self.inputs.steps.value - self.ctx.steps_done)
        thermostat = self.inputs.thermostat.value
        ions = {'ion_dynamics': 'verlet'}
        settings = None
        if self.ctx.velocities is not None:
            ions.update({'ion_velocities': 'from_input', 'ion_temperature': 'not_controlled'})
            settings = {'ATOMIC_VELOCITIES': self.ctx.velocities}
        else:
            ions.update({'ion_temperature': thermostat, 'tempw': self.inputs.temperature.value})
            if thermostat != 'initial':
                ions['nraise'] = self.inputs.thermostat_steps.value
        updates = {
            'CONTROL': {'calculation': 'md', 'nstep': nstep, 'dt': self.inputs.time_step.value / RY_TIME_IN_FS},
            # Random initial velocities break the crystal symmetry; pw.x aborts in checkallsym otherwise.
            'SYSTEM': {'nosym': True},
            'IONS': ions,
        }
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        inputs = dft_common.pw_inputs_for(dft_inputs, self.ctx.structure, self.ctx.family,
                                          self.inputs.conv_thr_per_atom.value, updates, settings)
        inputs.metadata = {'call_link_label': f'segment_{index:03d}'}
        self.ctx.current_nstep = nstep
        self.report(f'segment {index}: {nstep} steps from step {self.ctx.steps_done}')
        return ToContext(current=self.submit(PwBaseWorkChain, **inputs))

    def inspect_segment(self):
        node = self.ctx.current
        self.seal_interrupted_below(node)
        index = len(self.ctx.segments)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_SEGMENT_FAILED.format(index=index, status=node.exit_status)
        self.ctx.segments.append(node)
        self.ctx.steps_done += self.ctx.current_nstep
        trajectory = node.outputs.output_trajectory
        self.ctx.structure = node.outputs.output_structure
        if self.inputs.thermostat.value == 'initial':
            masses = [self.ctx.structure.get_kind(site.kind_name).mass for site in self.ctx.structure.sites]
            self.ctx.velocities = continuation_velocities(
                trajectory.get_array('positions')[-1], self.ctx.structure.get_ase().get_positions(),
                trajectory.get_array('forces')[-1], masses, self.inputs.time_step.value / RY_TIME_IN_FS,
            ).tolist()

    def collect(self):
        retrieved = {f'retrieved_{i:03d}': node.outputs.retrieved for i, node in enumerate(self.ctx.segments)}
        thermo = self.run_once(join_md_thermo, metadata={'call_link_label': 'join_thermo'}, **retrieved)
        self.out('thermo', thermo)
        self.out('final_structure', self.ctx.structure)

        lengths = [len(node.outputs.output_trajectory.get_array('positions')) for node in self.ctx.segments]
        skips = segment_skips(lengths, self.inputs.equilibration_steps.value, self.inputs.every.value)
        sources = {}
        for i, node in enumerate(self.ctx.segments):
            if f'{i:03d}' in skips:
                sources[f'trajectory_{i:03d}'] = node.outputs.output_trajectory
                sources[f'retrieved_{i:03d}'] = node.outputs.retrieved
        kept = sum(len(range(skip, lengths[int(key)], self.inputs.every.value)) for key, skip in skips.items())
        if not sources:
            return self.exit_codes.ERROR_NO_FRAMES_KEPT
        training_set = self.run_once(
            training_set_from_pw, origin=self.inputs.origin, skip=orm.Dict(skips), every=self.inputs.every,
            metadata={'call_link_label': 'collect_frames'}, **sources,
        )
        self.out('training_set', training_set)
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        record = dft_common.dft_settings_record(dft_inputs, self.ctx.family, self.inputs.structure.get_symbols_set(),
                                                self.inputs.conv_thr_per_atom.value)
        record.update({'time_step_fs': self.inputs.time_step.value, 'thermostat': self.inputs.thermostat.value,
                       'temperature': self.inputs.temperature.value})
        self.out('dft_settings', self.run_once(dft_settings_record, record=orm.Dict(record),
                                               metadata={'call_link_label': 'record_dft_settings'}))
        self.report(f'{self.ctx.steps_done} MD steps in {len(self.ctx.segments)} segment(s); '
                    f'{kept} frames kept in TrainingSetData<{training_set.pk}>')
