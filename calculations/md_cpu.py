"""``MdCpuCalculation``: production MD of a trained MTP or NEP on the CPU (ASE + motep / calorine).

Why a CalcJob of its own: the campaign runs, for every potential family and temperature, a restartable production
MD whose outputs feed the same analyses as a GPUMD run. The driver ``mlcampaign-md``
(:mod:`aiida_mlcampaign.md_production`) writes GPUMD's ``thermo.out``, ``dump.xyz`` and ``restart.xyz``, and the
parser gives them the output names, array names and units of :class:`~aiida_mlcampaign.calculations.gpumd.
GpumdCalculation` (``thermo``, ``trajectory``, ``restart``, ``speed``, ``output_parameters``), so
``compute_rdf``, ``compute_msd``, ``compute_vdos`` and ``compare_speed`` take either.

The CalcJob only moves data: the potential (``potential.mtp`` or ``nep.txt``), the structure as GPUMD's
``model.xyz``, a previous run's ``restart.xyz`` (copied to ``restart_in.xyz``) and the settings (JSON). What the
driver would refuse after waiting in a queue is refused before submission, naming the input.
"""

from __future__ import annotations

import json

from aiida import orm

from aiida_mlcampaign.calculations.base import PluginCalcJob
from aiida_mlcampaign.calculations.explore import _structure_symbols, _validate_structures
from aiida_mlcampaign.calculations.explore import _validate_potential as _validate_trained_mtp
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.md_production import (
    DUMP_FILENAME,
    RESTART_FILENAME,
    SUMMARY_FILENAME,
    THERMO_FILENAME,
    check_md_settings,
    restart_point,
)

__all__ = ('MdCpuCalculation', 'potential_family')


def potential_family(potential) -> str:
    """``'mtp'`` or ``'nep'`` from the potential node's type."""
    return 'nep' if isinstance(potential, NepPotentialData) else 'mtp'


def _settings_error(message: str) -> str:
    """A :func:`check_md_settings` message (it starts with the key) as a message about ``parameters``."""
    return 'parameters: ' + message[len('settings: '):] if message.startswith('settings: ') else f'parameters.{message}'


def _validate_parameters(value, _):
    if value is None:
        return None
    try:
        check_md_settings(value.get_dict())
    except ValueError as exception:
        return _settings_error(str(exception))
    return None


def _validate_potential(value, _):
    if value is None:
        return None
    if isinstance(value, MtpPotentialData):
        return _validate_trained_mtp(value, None)
    if isinstance(value, NepPotentialData):
        if value.model_type != 'potential':
            return f'potential: a {value.model_type} model predicts no forces; an energy model is needed'
        if value.base.attributes.get('body_matches') is False:
            return 'potential: the parameter count does not match the header'
    return None


def _validate_structure(value, _):
    if value is None:
        return None
    message = _validate_structures({'structure': value}, None)
    if message:
        return message.replace('structures.structure', 'structure', 1)
    if not all(value.pbc):
        return 'structure: must be periodic in all three directions (pressures need a volume; nep_cpu treats every ' \
               'cell as periodic)'
    return None


def _restart_problem(restart, structure, settings: dict | None) -> str | None:
    try:
        with restart.open(mode='r') as handle:
            point = restart_point(handle)
    except ValueError as exception:
        return str(exception)
    if structure is not None and list(point['frame']['species']) != _structure_symbols(structure):
        return (f"restart: its {len(point['frame']['species'])} atoms (elements, order) differ from the structure's "
                f'{len(structure.sites)}')
    if settings is not None and point['step'] >= settings['steps']:
        return (f"parameters.steps: the restart is at step {point['step']}, nothing is left of steps = "
                f"{settings['steps']}; raise steps to continue")
    return None


def _validate_inputs(inputs, _):
    potential, structure = inputs.get('potential'), inputs.get('structure')
    settings = None
    if potential is not None and 'parameters' in inputs:
        try:
            settings = check_md_settings(inputs['parameters'].get_dict(), potential_family(potential))
        except ValueError as exception:
            return _settings_error(str(exception))
    if potential is not None and structure is not None:
        extra = sorted(set(_structure_symbols(structure)) - set(potential.species))
        if extra:
            return f"structure: elements {extra} are not in the potential's species {potential.species}"
    if 'restart' in inputs:
        return _restart_problem(inputs['restart'], structure, settings)
    return None


class MdCpuCalculation(PluginCalcJob):
    """Production MD (Langevin NVT or NVE) of an MTP or a NEP on the CPU, restartable, in GPUMD's output formats.

    See :func:`aiida_mlcampaign.md_production.check_md_settings` for ``parameters``. The run is serial (one
    process; motep's C engine, calorine's CPUNEP).
    """

    _DEFAULT_PARSER = 'mlcampaign.md.cpu'
    _STDOUT = 'md.out'
    _STDERR = 'md.err'
    _SETTINGS = 'settings.json'
    _MODEL = 'model.xyz'
    _RESTART_IN = 'restart_in.xyz'
    _THERMO = THERMO_FILENAME
    _DUMP = DUMP_FILENAME
    _RESTART = RESTART_FILENAME
    _SUMMARY = SUMMARY_FILENAME

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, validator=_validate_structure,
                   help='Starting configuration, periodic in 3 directions; with restart, the same atoms in the same '
                        'order (the positions and velocities come from the restart).')
        spec.input('potential', valid_type=(MtpPotentialData, NepPotentialData), validator=_validate_potential,
                   help='The trained MTP (motep) or NEP energy model (calorine CPUNEP) that drives the MD; its '
                        'species must include every element of the structure.')
        spec.input('parameters', valid_type=orm.Dict, validator=_validate_parameters,
                   help='temperature (K), steps (total, counted from the first segment), time_step (fs) and the '
                        'optional keys of aiida_mlcampaign.md_production.check_md_settings (ensemble nvt/nve, '
                        'friction, seed, thermo_every, dump_every, restart_every, blowup_factor, engine).')
        spec.input('restart', valid_type=orm.SinglefileData, required=False,
                   help='The restart output of a previous MdCpuCalculation (its restart.xyz, with step= and '
                        'velocities): the run continues from it to steps in total, time going on.')
        spec.inputs.validator = _validate_inputs

        spec.output('thermo', valid_type=orm.ArrayData, required=False,
                    help='thermo.out as GpumdCalculation gives it: temperature_K, kinetic/potential_energy_eV, '
                         'pressure_GPa (xx yy zz), shear_pressure_GPa (yz xz xy), cell_A, and per row stage (0), '
                         'step_in_stage, step, time_fs counted from the start of this job; attribute units.')
        spec.output('trajectory', valid_type=orm.SinglefileData, required=False,
                    help='dump.xyz (GPUMD dump_exyz style: Time in fs, positions, velocities in Å/fs, '
                         'unwrapped_position); attribute num_frames.')
        spec.output('restart', valid_type=orm.SinglefileData, required=False,
                    help='The last restart.xyz (checked readable; attributes step and time_fs): pass it as the '
                         'restart input to continue, also after an early stop.')
        spec.output('speed', valid_type=orm.Dict, required=False,
                    help='atom_steps_per_second (and atom_steps_per_s), seconds, natoms, steps, ns_per_day, '
                         'hardware (CPU label), cpu, family: the MD loop of this job.')
        spec.output('output_parameters', valid_type=orm.Dict, required=False,
                    help='finished, stop_reason, steps done, step_offset/time_offset_fs of this job, rows and '
                         'frames written, where the restart sits, blow-up, problems.')
        spec.default_output_node = 'output_parameters'

        spec.exit_code(500, 'ERROR_BLOWUP', message='The MD blew up: {detail}')

    def prepare_for_submission(self, folder):
        from aiida_mlcampaign.formats.gpumd_model import model_xyz

        potential, structure = self.inputs.potential, self.inputs.structure
        family = potential_family(potential)
        settings = check_md_settings(self.inputs.parameters.get_dict(), family)
        name = 'potential.mtp' if family == 'mtp' else 'nep.txt'
        document = {**settings, 'family': family, 'species': list(potential.species), 'potential': name,
                    'start': self._MODEL}
        local_copy_list = [(potential.uuid, potential.filename, name)]
        if 'restart' in self.inputs:
            document['restart'] = self._RESTART_IN
            local_copy_list.append((self.inputs.restart.uuid, self.inputs.restart.filename, self._RESTART_IN))
        with folder.open(self._SETTINGS, 'w') as handle:
            json.dump(document, handle, indent=1)

        kinds = {kind.name: kind for kind in structure.kinds}
        with folder.open(self._MODEL, 'w') as handle:
            handle.write(model_xyz(_structure_symbols(structure), structure.cell,
                                   [site.position for site in structure.sites], pbc=structure.pbc,
                                   masses=[kinds[site.kind_name].mass for site in structure.sites]))

        calcinfo = self._calcinfo([self._SETTINGS], [self._SUMMARY, self._THERMO])
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_temporary_list = [self._DUMP, self._RESTART]
        return calcinfo
