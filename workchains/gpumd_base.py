"""``GpumdBaseWorkChain`` (``mlcampaign.gpumd.base``): GPUMD MD that survives walltimes, node failures and blow-ups.

A ``BaseRestartWorkChain`` over :class:`~aiida_mlcampaign.calculations.gpumd.GpumdCalculation`:

* **Stopped early** (exit 400 walltime, 401 node failure / killed): the next job starts from the stopped job's
  ``restart`` output node (never from its remote folder) and runs what is left. The step that restart.xyz holds
  is exact: GPUMD writes it every ``dump_restart`` steps and thermo.out every ``dump_thermo`` steps, counting from 0
  in each run block, and the work chain requires ``dump_restart`` to be a multiple of ``dump_thermo`` (it adds a
  ``dump_restart`` where one is missing), so the rows of thermo.out tell which dump was the last. Finished blocks
  are dropped, the current block is shortened (thermostat ramps restart where they had got to, ``velocity`` and
  ``minimize`` dropped, the ``time_step`` in effect carried over), ``compute_*`` keywords are kept. Without a
  readable restart the segment is rerun from its own start.
* **Blow-up** (exit 500: NaN, inf or a temperature far above the target): the same segment is rerun from the same
  start with the time step halved, with run lengths, coupling constants and output intervals doubled so the
  simulated time and output spacing stay; a second blow-up ends the work chain with
  ``ERROR_BLOWUP_AFTER_TIMESTEP_HALVING`` (501).

Outputs. Each job (segment) keeps its own output nodes: correlation functions (msd, rdf, ...) and trajectories are
per segment, because GPUMD restarts their accumulation in every job; find them on the called CalcJobs. The work
chain returns the last segment's outputs (its ``restart``, ``output_parameters``, ``speed`` ...) and ``thermo``
merged over the kept segments (rows a later segment redid are dropped; ``step``/``time_fs`` count from the start,
``segment`` says which job wrote each row), made by the ``merge_thermo`` calcfunction.
"""

from __future__ import annotations


from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, calcfunction, process_handler, while_

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation, gpumd_legacy, stages_of
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import merge_thermo_segments
from aiida_mlcampaign.parsers.gpumd import reader_array_node
from aiida_mlcampaign.formats.gpumd_run import (
    canonical_stages, ensure_restart_dumps, remaining_stages, scale_time_step,
)
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps
from aiida_mlcampaign.workchains.protocol import PluginProtocolMixin

__all__ = ('GpumdBaseWorkChain', 'merge_thermo', 'protocol_stages')


@calcfunction
def merge_thermo(segments: orm.Dict, **thermo) -> orm.ArrayData:
    """``thermo`` of a restarted MD: the segments' thermo nodes (``thermo_0``, ``thermo_1`` ...) joined in order,
    with the offsets and cut-off steps in ``segments`` (see ``merge_thermo_segments``)."""
    described = segments.get_dict()
    parts = []
    for label in sorted(thermo, key=lambda name: int(name.rsplit('_', 1)[1])):
        node = thermo[label]
        parts.append({'arrays': {name: node.get_array(name) for name in node.get_arraynames()}, **described[label]})
    return reader_array_node(merge_thermo_segments(parts))


def protocol_stages(temperature: float, settings: dict) -> list[dict]:
    """Equilibration then production at ``temperature`` (K), both ``nvt_nhc``, from a protocol's settings."""
    if not temperature > 0:
        raise ValueError(f'temperature: must be > 0 K, got {temperature}')
    thermostat = {'name': 'nvt_nhc', 'T1': temperature, 'T2': temperature, 'T_coup': settings['thermostat_coupling']}
    common = {'ensemble': thermostat, 'dump_thermo': settings['dump_thermo'], 'dump_restart': settings['dump_restart']}
    production = {**common}
    if settings.get('dump_xyz'):
        production['dump_xyz'] = {'interval': settings['dump_xyz'], 'file': 'dump.xyz', 'velocity': True}
    return [
        {'velocity': temperature, 'time_step': settings['time_step'], **common, 'run': settings['equilibration_steps']},
        {**production, 'run': settings['production_steps']},
    ]


def _validate_restartable(inputs, _):
    """The protocol must let a stopped job's restart step be known exactly (names the stage and keyword)."""
    gpumd = inputs.get('gpumd', {})
    if 'stages' not in gpumd and 'run_in' not in gpumd:
        return None
    try:
        stages = stages_of(gpumd, gpumd_legacy(gpumd))
        ensure_restart_dumps(stages)
    except FormatError as exception:
        return f'gpumd.{"stages" if "stages" in gpumd else "run_in"}: {exception}'
    return None


class GpumdBaseWorkChain(CrashSafeSteps, PluginProtocolMixin, BaseRestartWorkChain):
    """GPUMD MD in as many jobs as walltimes and node failures need, with one time-step halving on a blow-up."""

    _process_class = GpumdCalculation
    _protocol_name = 'gpumd_base'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GpumdCalculation, namespace='gpumd',
                           namespace_options={'help': 'Inputs of the first GpumdCalculation (structure or restart, '
                                                      'potential, stages or run_in, options).'})
        spec.input('min_restart_steps', valid_type=orm.Int, default=lambda: orm.Int(1000),
                   help='A run block without dump_restart gets the smallest multiple of its dump_thermo interval '
                        'that is at least this many steps (restart.xyz is rewritten at every dump).')
        spec.inputs.validator = _validate_restartable
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.expose_outputs(GpumdCalculation)
        spec.exit_code(501, 'ERROR_BLOWUP_AFTER_TIMESTEP_HALVING',
                       message='The MD blew up again after its time step was halved: {detail}')

    @classmethod
    def get_builder_from_protocol(cls, code, potential, structure, *, temperature: float, protocol=None,
                                  overrides=None, options=None):
        """A builder for NVT MD at ``temperature`` (K): equilibration then production (``fast`` or ``moderate``)."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.gpumd.code = code
        builder.gpumd.potential = potential
        builder.gpumd.structure = structure
        builder.gpumd.stages = orm.List(protocol_stages(float(temperature), inputs['md']))
        builder.gpumd.blowup_temperature_factor = orm.Float(inputs['blowup_temperature_factor'])
        if options:
            builder.gpumd.metadata.options = options
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        return builder

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(GpumdCalculation, 'gpumd'))
        stages = stages_of(self.ctx.inputs, gpumd_legacy(self.ctx.inputs))
        stages, notes = ensure_restart_dumps(stages, min_restart_steps=self.inputs.min_restart_steps.value)
        for note in notes:
            self.report(note)
        self.ctx.inputs.pop('run_in', None)
        self._set_stages(stages)
        self.ctx.offset = {'step': 0, 'time_fs': 0.0}
        self.ctx.segments = []
        self.ctx.halved = False
        self.ctx.closed = False

    def _set_stages(self, stages: list[dict]) -> None:
        self.ctx.stages = canonical_stages(stages, legacy=gpumd_legacy(self.ctx.inputs))
        self.ctx.inputs.stages = orm.List(self.ctx.stages)

    def _keep_segment(self, calculation, cutoff_step: int | None) -> None:
        if 'thermo' in calculation.outputs:
            self.ctx.segments.append({'thermo': calculation.outputs.thermo.uuid, 'step_offset': self.ctx.offset['step'],
                                      'time_offset_fs': self.ctx.offset['time_fs'], 'cutoff_step': cutoff_step})

    @process_handler(priority=600, exit_codes=[GpumdCalculation.exit_codes.ERROR_BLOWUP])
    def handle_blowup(self, calculation):
        """Halve the time step once and rerun the segment from the same start; a second blow-up is final."""
        detail = calculation.exit_message or 'blow-up'
        if self.ctx.halved:
            self.report(f'{calculation.process_label}<{calculation.pk}> blew up again with the halved time step')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_BLOWUP_AFTER_TIMESTEP_HALVING.format(detail=detail))
        try:
            stages = scale_time_step(self.ctx.stages, 2)
        except FormatError as exception:
            self.report(f'cannot halve the time step: {exception}')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_BLOWUP_AFTER_TIMESTEP_HALVING.format(
                detail=f'{detail}; the time step could not be halved: {exception}'))
        self._set_stages(stages)
        self.ctx.halved = True
        self.report(f'{calculation.process_label}<{calculation.pk}> blew up ({detail}): rerunning from the same '
                    'start with the time step halved')
        return ProcessHandlerReport(True)

    @process_handler(priority=500, exit_codes=[GpumdCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
                                               GpumdCalculation.exit_codes.ERROR_NOT_FINISHED])
    def handle_stopped_early(self, calculation):
        """Continue from the stopped job's restart node with the steps that are left."""
        parameters = calculation.outputs.output_parameters.get_dict() if 'output_parameters' in calculation.outputs \
            else {}
        point = parameters.get('restart')
        if 'restart' not in calculation.outputs or not point or not point.get('exact'):
            self.report(f'{calculation.process_label}<{calculation.pk}> stopped without a usable restart.xyz: '
                        'rerunning the segment from its start')
            return ProcessHandlerReport(True)
        remaining, notes = remaining_stages(self.ctx.stages, point['stage'], point['step_in_stage'])
        for note in notes:
            self.report(note)
        self._keep_segment(calculation, cutoff_step=point['step'])
        self.ctx.offset = {'step': self.ctx.offset['step'] + point['step'],
                           'time_fs': self.ctx.offset['time_fs'] + point['time_fs']}
        if not remaining:
            self.report(f'{calculation.process_label}<{calculation.pk}> stopped after its last restart dump, at the '
                        'end of the protocol: done')
            self.ctx.closed = True
            self.ctx.is_finished = True
            return ProcessHandlerReport(True, ExitCode(0))
        self._set_stages(remaining)
        for key in ('structure', 'groups', 'velocities'):
            self.ctx.inputs.pop(key, None)
        self.ctx.inputs.restart = calculation.outputs.restart
        self.report(f'{calculation.process_label}<{calculation.pk}> stopped; continuing from its restart at stage '
                    f'{point["stage"]} step {point["step_in_stage"]} with {len(remaining)} stage(s) left')
        return ProcessHandlerReport(True)

    def results(self):
        """Attach the last segment's outputs, with ``thermo`` merged over the kept segments when there are several."""
        node = self.ctx.children[self.ctx.iteration - 1]
        if not self.ctx.closed:
            self._keep_segment(node, cutoff_step=None)
        outputs = self.exposed_outputs(node, GpumdCalculation)
        if len(self.ctx.segments) > 1:
            described = {f'thermo_{i}': {k: v for k, v in s.items() if k != 'thermo'}
                         for i, s in enumerate(self.ctx.segments)}
            thermo = {f'thermo_{i}': orm.load_node(s['thermo']) for i, s in enumerate(self.ctx.segments)}
            outputs['thermo'] = self.run_once(merge_thermo, orm.Dict(described), **thermo,
                                              metadata={'call_link_label': 'merge_thermo'})
        self.report(f'work chain completed after {self.ctx.iteration} iterations, {len(self.ctx.segments)} segment(s)')
        self.out_many(outputs)
