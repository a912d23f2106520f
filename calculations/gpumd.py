"""``GpumdCalculation``: GPUMD's ``gpumd`` (molecular dynamics with a NEP) on a GPU computer.

The CalcJob only moves data: ``model.xyz`` from a ``StructureData`` (with optional grouping methods and velocities)
or, for a continuation, GPUMD's own ``restart.xyz`` copied unchanged; ``run.in`` from checked stages (or a raw text
still read by the grammar checker); ``nep.txt`` from the potential node. Everything GPUMD would refuse after
waiting in a GPU queue (unknown species, grammar, group indices beyond the model's grouping methods, a NEP3 model
for GPUMD >= 5.3, nonsense GPU requests) is refused before submission, naming the input.

GPUs (``gpus``, ``metadata.options.gres_syntax``, ``metadata.options.cuda_visible_devices``) as for the ``nep``
CalcJob: :mod:`aiida_mlcampaign.calculations.gpu`, ``docs/gpu-clusters.md``. ``gpumd`` uses every GPU it sees.
"""

from __future__ import annotations

from aiida import orm

from aiida_mlcampaign.calculations.gpu import GpuCalcJob, validate_gpu_options
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import OUTPUT_FILES, read_restart_xyz
from aiida_mlcampaign.formats.gpumd_model import model_xyz, read_model_header
from aiida_mlcampaign.formats.gpumd_run import canonical_stages, read_run_in, run_in
from aiida_mlcampaign.formats.nep import parse_gpumd_version

__all__ = ('GpumdCalculation', 'dump_files', 'gpumd_legacy', 'stages_of')


def _gpumd_version(text: str) -> tuple[int, ...]:
    """The version of a ``gpumd_version`` input; ``ValueError`` naming the input when unreadable or before v3.6.

    The shared parser also refuses versions before v3.5 (nep.in writing); those read xyz.in as well.
    """
    try:
        version = parse_gpumd_version(text)
    except FormatError:
        version = None
    if version is None or version < (3, 6):
        raise ValueError(f'gpumd_version: cannot use {text!r} (expected e.g. "5.6" or "master"; GPUMD before 3.6 '
                         'reads xyz.in and a driver file, model.xyz needs GPUMD >= 3.6)')
    return version


def gpumd_legacy(inputs) -> bool:
    """The run.in grammar to use: ``legacy`` if given, else True for a ``gpumd_version`` up to 5.6 (whose keywords the
    current grammar dropped), else False."""
    if 'legacy' in inputs and inputs['legacy'] is not None:
        return bool(inputs['legacy'].value)
    if 'gpumd_version' in inputs and inputs['gpumd_version'] is not None:
        try:
            return _gpumd_version(inputs['gpumd_version'].value) <= (5, 6, 0)  # master is (5, 6, 99)
        except ValueError:
            return False
    return False


def stages_of(inputs, legacy: bool) -> list[dict]:
    """The canonical stages of a calculation's ``stages`` or ``run_in`` input."""
    if 'stages' in inputs and inputs['stages'] is not None:
        return canonical_stages(inputs['stages'].get_list(), legacy=legacy)
    return read_run_in(inputs['run_in'].value, legacy=legacy, allow_raw=True)['stages']


def dump_files(stages: list[dict]) -> list[str]:
    """Trajectory files the stages write (``dump_xyz`` file names, ``dump.xyz`` of the legacy ``dump_exyz`` and
    ``movie.xyz`` of ``dump_position``); per-frame names ending in ``*`` are not collected."""
    names: list[str] = []
    for stage in stages:
        for entry in (stage.get('dump_xyz') if isinstance(stage.get('dump_xyz'), list) else [stage.get('dump_xyz')]):
            if entry and not entry['file'].endswith('*'):
                names.append(entry['file'])
        if 'dump_exyz' in stage:
            names.append('dump.xyz')
        if 'dump_position' in stage:
            names.append('movie.xyz')
    return list(dict.fromkeys(names))


def _group_references(stages: list[dict]) -> list[tuple[str, int]]:
    """(where, grouping method) for every group a stage refers to."""
    found = []
    for index, stage in enumerate(stages):
        for keyword, value in stage.items():
            for entry in (value if isinstance(value, list) else [value]):
                if not isinstance(entry, dict):
                    continue
                if 'group' in entry and isinstance(entry['group'], list) and len(entry['group']) == 2:
                    found.append((f'stages[{index}]: {keyword} group', int(entry['group'][0])))
                if 'all_groups' in entry:
                    found.append((f'stages[{index}]: {keyword} all_groups', int(entry['all_groups'])))
                if keyword == 'fix':
                    found.append((f'stages[{index}]: fix', int(entry.get('grouping_method', 0))))
                if keyword == 'compute':
                    found.append((f'stages[{index}]: compute', int(entry['grouping_method'])))
                if keyword == 'ensemble' and entry.get('name', '').startswith('heat_'):
                    found.append((f'stages[{index}]: ensemble {entry["name"]} source/sink groups', 0))
    return found


# ------------------------------------------------------------------------------------------------ validators
def _validate_stages(value, _):
    if value is None:
        return None
    try:
        run_in(value.get_list(), legacy=True)
    except FormatError as exception:
        return str(exception)


def _validate_run_in(value, _):
    if value is None:
        return None
    try:
        parsed = read_run_in(value.value, legacy=True, allow_raw=True)
    except FormatError as exception:
        return f'run_in: {exception}'
    if parsed['potential'].split()[0] != 'nep.txt':
        return f'run_in: potential must be nep.txt (where the potential input is written), got {parsed["potential"]!r}'


def _validate_version(value, _):
    if value is None:
        return None
    try:
        _gpumd_version(value.value)
    except ValueError as exception:
        return str(exception)


def _validate_positive_float(value, _):
    if value is not None and not value.value > 0:
        return f'blowup_temperature_factor: must be > 0, got {value.value}'


def _model_species(inputs) -> tuple[set[str], int, int]:
    """(species, number of atoms, number of grouping methods) of the starting configuration."""
    if 'structure' in inputs:
        structure = inputs['structure']
        groups = inputs['groups'].get_dict() if 'groups' in inputs else {}
        return {kind.symbol for kind in structure.kinds}, len(structure.sites), len(groups)
    restart = inputs['restart']
    with restart.open(mode='r') as handle:
        header = read_model_header(handle)
    species = restart.base.attributes.get('species', None)
    if species is None:
        with restart.open(mode='r') as handle:
            species = read_restart_xyz(handle)['species']
    return set(species), header['num_atoms'], header['num_grouping_methods']


def _validate_inputs(inputs, ctx):
    """Cross-input checks; ports a work chain fills itself may be absent from ``ctx``."""
    has_structure, has_restart = 'structure' in inputs, 'restart' in inputs
    if ctx is not None and ('structure' not in ctx or 'restart' not in ctx):
        return None
    if has_structure == has_restart:
        return 'give exactly one of structure (a new start) and restart (a GPUMD restart.xyz to continue from)'
    if ('stages' in inputs) == ('run_in' in inputs):
        return 'give exactly one of stages and run_in'
    if has_restart and ('groups' in inputs or 'velocities' in inputs):
        return 'groups/velocities: only with structure (a restart.xyz already carries its groups and velocities)'
    legacy = gpumd_legacy(inputs)
    try:
        stages = stages_of(inputs, legacy)
    except FormatError as exception:
        return f'{"stages" if "stages" in inputs else "run_in"}: {exception} (legacy grammar: {legacy})'
    if has_structure:
        n = len(inputs['structure'].sites)
        if 'groups' in inputs:
            for name, labels in inputs['groups'].get_dict().items():
                if not isinstance(labels, list) or len(labels) != n:
                    return f'groups: {name}: expected a list of {n} integer labels (one per atom)'
                bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, int) or x < 0]
                if bad:
                    return f'groups: {name}: labels must be integers >= 0, got {bad[0]!r}'
        if 'velocities' in inputs:
            try:
                velocities = inputs['velocities'].get_array('velocities')
            except (KeyError, AttributeError):
                return 'velocities: the ArrayData needs an array named "velocities" (Å/fs, one row per atom)'
            if velocities.shape != (n, 3):
                return f'velocities: expected shape ({n}, 3), got {velocities.shape}'
    if 'potential' in inputs:
        potential = inputs['potential']
        try:
            species, _, methods = _model_species(inputs)
        except (FormatError, OSError) as exception:
            return f'restart: not a readable restart.xyz: {exception}'
        extra = sorted(species - set(potential.species))
        if extra:
            where = 'structure' if has_structure else 'restart'
            return f'{where}: species {extra} are not in the potential\'s species {potential.species}'
        for where, method in _group_references(stages):
            if method >= methods:
                return (f'{where}: grouping method {method} does not exist: the model has {methods} grouping '
                        'method(s) (groups input)')
        if 'gpumd_version' in inputs and potential.base.attributes.get('loadable_by_gpumd_5_3_plus') is False:
            if _gpumd_version(inputs['gpumd_version'].value) >= (5, 3):
                return (f'potential: a {potential.model} model cannot be loaded by GPUMD '
                        f'{inputs["gpumd_version"].value} (NEP3 was removed in v5.3)')
    return validate_gpu_options(inputs)


class GpumdCalculation(GpuCalcJob):
    """GPUMD ``gpumd``: MD with a NEP potential from a structure or a restart.xyz, following checked ``run.in``
    stages; parsed into thermo and the requested correlation functions, a trajectory and a restart node."""

    _STDOUT = 'gpumd.out'
    _STDERR = 'gpumd.err'
    _MODEL = 'model.xyz'
    _RUN_IN = 'run.in'
    _POTENTIAL = 'nep.txt'
    _RESTART = 'restart.xyz'
    _DEFAULT_PARSER = 'mlcampaign.gpumd.md'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, required=False,
                   help='Starting configuration (a new start). Exactly one of structure and restart.')
        spec.input('groups', valid_type=orm.Dict, required=False,
                   help='Grouping methods: name -> one integer label >= 0 per atom. Method k in run.in is the k-th '
                        'name in sorted order (stored dicts do not keep key order): name them "0_layers", '
                        '"1_species" to choose.')
        spec.input('velocities', valid_type=orm.ArrayData, required=False,
                   help='Initial velocities: array "velocities", Å/fs, one row per atom (ASE velocities times '
                        'ase.units.fs). Without them run.in\'s velocity keyword draws them.')
        spec.input('restart', valid_type=orm.SinglefileData, required=False,
                   help='A GPUMD restart.xyz (cell, positions, masses, velocities, groups) to continue from; copied '
                        'unchanged to model.xyz. Exactly one of structure and restart.')
        spec.input('potential', valid_type=NepPotentialData,
                   help='The NEP model, written to nep.txt; its species must include every species of the model.')
        spec.input('stages', valid_type=orm.List, required=False, validator=_validate_stages,
                   help='run.in stages (see aiida_mlcampaign.formats.gpumd_run.run_in); exactly one of stages and '
                        'run_in.')
        spec.input('run_in', valid_type=orm.Str, required=False, validator=_validate_run_in,
                   help='A hand-written run.in (escape hatch); still grammar-checked, unknown keywords are '
                        'allowed. Its potential line must read nep.txt.')
        spec.input('gpumd_version', valid_type=orm.Str, required=False, validator=_validate_version,
                   help='GPUMD version of the code ("5.6", "4.0", "master"): up to 5.6 the legacy run.in keywords '
                        'are accepted, from 5.3 NEP3 models are refused.')
        spec.input('legacy', valid_type=orm.Bool, required=False,
                   help='Accept the run.in keywords GPUMD dropped after v5.6 (dump_exyz, positional dump_xyz ...); '
                        'default from gpumd_version.')
        spec.input('blowup_temperature_factor', valid_type=orm.Float, default=lambda: orm.Float(5.0),
                   validator=_validate_positive_float,
                   help='A thermo row hotter than this times the block\'s target temperature counts as a blow-up '
                        '(exit 500), like NaN or inf.')
        spec.inputs.validator = _validate_inputs

        spec.output('thermo', valid_type=orm.ArrayData, required=False,
                    help='thermo.out: temperature_K, kinetic/potential_energy_eV, pressure_GPa (xx yy zz), '
                         'shear_pressure_GPa (yz xz xy), cell_A, and per row stage, step_in_stage, step, time_fs '
                         'counted from the start of this job; attribute units.')
        for label, _, _ in (entry for entries in OUTPUT_FILES.values() for entry in entries):
            if label != 'thermo':
                spec.output(label, valid_type=orm.ArrayData, required=False,
                            help=f'{label}.out through its reader in aiida_mlcampaign.formats.gpumd; attribute '
                                 'units names the unit of every array.')
        spec.output('trajectory', valid_type=orm.SinglefileData, required=False,
                    help='The dump file (dump_xyz) when the stages write exactly one; attribute num_frames.')
        spec.output_namespace('trajectories', valid_type=orm.SinglefileData, dynamic=True, required=False,
                              help='Dump files by name when the stages write several.')
        spec.output('restart', valid_type=orm.SinglefileData, required=False,
                    help='The last restart.xyz (checked readable): continue from it without the remote folder.')
        spec.output('speed', valid_type=orm.Dict, required=False,
                    help='Per run: seconds and atom*step/s from stdout, and the overall figures.')
        spec.output('output_parameters', valid_type=orm.Dict, required=False,
                    help='Runs finished, steps done per stage, where the restart sits, finished flag, version.')
        spec.default_output_node = 'output_parameters'

        spec.exit_code(500, 'ERROR_BLOWUP', message='The MD blew up: {detail}')

    def prepare_for_submission(self, folder):
        legacy = gpumd_legacy(self.inputs)
        if 'stages' in self.inputs:
            text = run_in(self.inputs.stages.get_list(), potential=self._POTENTIAL, legacy=legacy)
        else:
            text = run_in(None, raw=self.inputs.run_in.value)
        with folder.open(self._RUN_IN, 'w') as handle:
            handle.write(text)
        stages = read_run_in(text, legacy=legacy, allow_raw=True)['stages']

        local_copy_list = [(self.inputs.potential.uuid, self.inputs.potential.filename, self._POTENTIAL)]
        if 'restart' in self.inputs:
            local_copy_list.append((self.inputs.restart.uuid, self.inputs.restart.filename, self._MODEL))
        else:
            with folder.open(self._MODEL, 'w') as handle:
                handle.write(self._model_text())

        outputs = [name for keyword in OUTPUT_FILES for _, name, _ in OUTPUT_FILES[keyword]]
        calcinfo = self._calcinfo([], outputs)
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_temporary_list = [self._RESTART, *dump_files(stages)]
        return self._export_visible_devices(calcinfo)

    def _model_text(self) -> str:
        structure = self.inputs.structure
        kinds = {kind.name: kind for kind in structure.kinds}
        symbols = [kinds[site.kind_name].symbol for site in structure.sites]
        masses = [kinds[site.kind_name].mass for site in structure.sites]
        positions = [site.position for site in structure.sites]
        velocities = self.inputs.velocities.get_array('velocities') if 'velocities' in self.inputs else None
        groups = None
        if 'groups' in self.inputs:
            methods = self.inputs.groups.get_dict()
            groups = [methods[name] for name in sorted(methods)]
        return model_xyz(symbols, structure.cell, positions, pbc=structure.pbc, masses=masses, velocities=velocities,
                         groups=groups)
