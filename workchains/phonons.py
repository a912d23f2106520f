"""``mlcampaign.analysis.phonons``: harmonic phonon DOS by finite displacements, from DFT or a potential.

A potential is only trusted for vibrations once its phonons agree with DFT's. This work chain runs
the *same* displacement dataset through any engine, so the DOS of DFT, MTP and NEP differ only by
their forces and can be compared with ``mlcampaign.analysis.dos_compare``:

* ``engine='dft'``: one ``PwBaseWorkChain`` per displaced supercell (all at once), with this
  project's DFT conventions (``dft_common``: family cutoffs, per-atom SCF threshold);
* ``engine='nep'`` / ``'mtp'``: the forces of all supercells in one calcfunction (calorine
  ``CPUNEP`` / motep on the CPU; seconds for phonon supercells).

Steps are calcfunctions (``generate_displacements`` -> forces -> ``phonon_dos_from_forces``), so
every supercell, force array and DOS is linked in the graph.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_
from aiida.plugins import WorkflowFactory

from aiida_mlcampaign.calculations import analysis_vibrations as _analysis
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.workchains import dft_common
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps

PwBaseWorkChain = WorkflowFactory('quantumespresso.pw.base')

ENGINES = ('dft', 'nep', 'mtp')


def validate_supercell_matrix(value, _):
    if value is None:
        return None
    from aiida_mlcampaign.analysis.phonons import supercell_matrix_3x3

    try:
        supercell_matrix_3x3(value.get_list())
    except (ValueError, TypeError) as exception:
        return str(exception)


def validate_amplitude(value, _):
    if value is not None and not 0.0 < value.value <= 0.2:
        return f'displacement_amplitude: must be in (0, 0.2] Å, got {value.value}'


def validate_engine(value, _):
    if value is not None and value.value not in ENGINES:
        return f'engine: expected one of {list(ENGINES)}, got {value.value!r}'


def validate_conv_thr(value, _):
    if value is not None and not value.value > 0:
        return f'conv_thr_per_atom: must be positive, got {value.value}'


def validate_inputs(inputs, _):
    """Refuse inputs that cannot give a DOS: wrong potential for the engine, missing species or DFT inputs."""
    structure = inputs.get('structure')
    engine = inputs['engine'].value if 'engine' in inputs else None
    if structure is None or engine not in ENGINES:
        return None
    if not all(structure.pbc):
        return 'structure: must be periodic in all three directions for phonons'
    problem = dft_common.structure_problem(structure)
    if problem:
        return problem
    elements = sorted(structure.get_symbols_set())
    potential = inputs.get('potential')
    dft = inputs.get('dft') or {}
    if engine == 'dft':
        if potential is not None:
            return "potential: not used with engine 'dft'; remove it or choose engine 'nep'/'mtp'"
        if not dft or 'pw' not in dft or 'code' not in dft['pw']:
            return "dft: engine 'dft' needs the dft namespace (dft.pw.code, parameters ...)"
        if 'pseudo_family' not in inputs:
            return "pseudo_family: required with engine 'dft'"
        try:
            family = dft_common.load_family(inputs['pseudo_family'].value)
        except ValueError as exception:
            return str(exception)
        return dft_common.structure_problem(structure, family)
    expected = NepPotentialData if engine == 'nep' else MtpPotentialData
    if potential is None:
        return f"potential: engine {engine!r} needs a {expected.__name__}"
    if not isinstance(potential, expected):
        return f'potential: engine {engine!r} needs a {expected.__name__}, got {type(potential).__name__}'
    missing = [e for e in elements if e not in potential.species]
    if missing:
        return f'potential: has no parameters for {missing} (its species: {potential.species})'
    if engine == 'mtp' and not potential.base.attributes.get('is_trained', True):
        return 'potential: the MTP is an untrained template'
    if engine == 'nep' and potential.model_type != 'potential':
        return f'potential: a NEP {potential.model_type} model gives no forces'
    return None


class PhononDosWorkChain(CrashSafeSteps, dft_common.DftWorkChainMixin, WorkChain):
    """Harmonic phonon DOS of a unit cell (phonopy finite displacements) with forces from pw.x, a NEP or an MTP."""

    _protocol_name = 'phonons'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData,
                   help='The unit cell (treated as the primitive cell), relaxed with the engine that gives the forces.')
        spec.input('supercell_matrix', valid_type=orm.List, validator=validate_supercell_matrix,
                   help='Three diagonal entries or a 3x3 integer matrix for the displaced supercells.')
        spec.input('displacement_amplitude', valid_type=orm.Float, default=lambda: orm.Float(0.01),
                   validator=validate_amplitude, help='Finite displacement in Å (phonopy default 0.01).')
        spec.input('engine', valid_type=orm.Str, validator=validate_engine,
                   help="Where the forces come from: 'dft' (pw.x), 'nep' (calorine CPUNEP) or 'mtp' (motep).")
        spec.input('potential', valid_type=(NepPotentialData, MtpPotentialData), required=False,
                   help="The potential for engine 'nep' or 'mtp'.")
        spec.expose_inputs(PwBaseWorkChain, namespace='dft', exclude=('pw.structure', 'pw.pseudos'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': "PwBaseWorkChain inputs for engine 'dft'; structure and "
                                                      'pseudos are set per displaced supercell.'})
        spec.input('pseudo_family', valid_type=orm.Str, required=False,
                   help="Label of a pseudopotential family with recommended cutoffs (engine 'dft').")
        spec.input('conv_thr_per_atom', valid_type=orm.Float, default=lambda: orm.Float(1e-10),
                   validator=validate_conv_thr,
                   help="SCF threshold per atom in Ry (engine 'dft'); forces of 0.01 Å displacements need it tight.")
        spec.input('parameters', valid_type=orm.Dict, required=False,
                   validator=_analysis._validate_phonon_parameters,
                   help='DOS settings: mesh (three integers or a length in Å) and frequency_pitch_THz.')
        spec.input('subtract_residual_forces', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Also compute the undisplaced supercell and subtract its forces (cells not exactly at '
                        'the equilibrium of the engine).')
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.uses_dft)(cls.run_dft, cls.inspect_dft).else_(cls.run_potential),
            cls.compute_dos,
        )
        spec.output('dos', valid_type=orm.ArrayData,
                    help='frequency_THz, dos_per_THz (per unit cell, ∫ = 3N), partial_dos_per_THz per species.')
        spec.output('figure', valid_type=orm.SinglefileData, help='PNG of the total and partial DOS.')
        spec.output('displacement_dataset', valid_type=orm.Dict, help='The phonopy displacement dataset used.')
        spec.output('forces', valid_type=orm.ArrayData, help='Forces of the displaced supercells (eV/Å).')
        spec.exit_code(301, 'ERROR_MISSING_FORCES',
                       message='The pw.x run of {key} finished without forces in its output trajectory.')
        spec.exit_code(401, 'ERROR_DFT_FAILED',
                       message='The pw.x runs of {keys} failed; no DOS from an incomplete force set.')
        spec.exit_code(501, 'ERROR_NON_FINITE_FORCES', message='The {engine} forces contain NaN or infinite values.')

    @classmethod
    def get_builder_from_protocol(cls, structure, supercell_matrix, engine='dft', code=None, potential=None,
                                  protocol=None, overrides=None, options=None, pseudo_family=None, **_):
        """A ready builder; for ``engine='dft'`` the pw.x settings come from aiida-quantumespresso's protocol.

        ``overrides`` follows this work chain's input layout (``dft.pw.parameters``, ``parameters.mesh`` ...).
        """
        from aiida_mlcampaign.analysis.phonons import supercell_matrix_3x3

        inputs = cls.get_protocol_inputs(protocol, overrides)
        matrix = supercell_matrix_3x3(supercell_matrix)
        if engine == 'dft':
            if code is None:
                raise ValueError("code: engine 'dft' needs a pw.x code")
            from ase.build import make_supercell

            template = orm.StructureData(ase=make_supercell(structure.get_ase(), matrix))
            builder = cls._builder_with_dft(code, [template], inputs, pseudo_family, options)
        else:
            if engine not in ENGINES:
                raise ValueError(f'engine: expected one of {list(ENGINES)}, got {engine!r}')
            builder = cls.get_builder()
            builder.potential = potential
        builder.structure = structure
        builder.supercell_matrix = orm.List(matrix.tolist())
        builder.engine = orm.Str(engine)
        builder.displacement_amplitude = orm.Float(inputs['displacement_amplitude'])
        builder.conv_thr_per_atom = orm.Float(inputs['conv_thr_per_atom'])
        builder.subtract_residual_forces = orm.Bool(inputs['subtract_residual_forces'])
        builder.parameters = orm.Dict(inputs['parameters'])
        return builder

    # ------------------------------------------------------------------------------------- steps
    def setup(self):
        outputs = self.run_once(
            _analysis.generate_displacements, self.inputs.structure, self.inputs.supercell_matrix,
            self.inputs.displacement_amplitude,
            metadata={'call_link_label': 'generate_displacements'},
        )
        self.ctx.dataset = outputs['displacement_dataset']
        self.ctx.supercells = {key: node for key, node in outputs.items() if key.startswith('supercell_')}
        count = len(self.ctx.supercells)
        if self.inputs.subtract_residual_forces.value:
            self.ctx.supercells['reference'] = outputs['reference_supercell']
        self.out('displacement_dataset', self.ctx.dataset)
        self.report(f'{count} displaced supercell(s) of {len(outputs["reference_supercell"].sites)} atoms; '
                    f'engine {self.inputs.engine.value}')

    def uses_dft(self):
        return self.inputs.engine.value == 'dft'

    def run_dft(self):
        family = dft_common.load_family(self.inputs.pseudo_family.value)
        dft_inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='dft'))
        futures = {}
        for key, structure in self.ctx.supercells.items():
            inputs = dft_common.pw_inputs_for(
                dft_inputs, structure, family, self.inputs.conv_thr_per_atom.value,
                parameter_updates={'CONTROL': {'calculation': 'scf', 'tprnfor': True}},
            )
            inputs.metadata = {'call_link_label': f'pw_{key}'}
            futures[f'pw_{key}'] = self.submit(PwBaseWorkChain, **inputs)
        self.report(f'submitted {len(futures)} PwBaseWorkChain(s)')
        return ToContext(**futures)

    def inspect_dft(self):
        self.seal_interrupted_below(*(self.ctx[f'pw_{key}'] for key in self.ctx.supercells))
        failed = [key for key in self.ctx.supercells if not self.ctx[f'pw_{key}'].is_finished_ok]
        if failed:
            for key in failed:
                node = self.ctx[f'pw_{key}']
                self.report(f'{node.process_label}<{node.pk}> for {key} failed (exit status {node.exit_status})')
            return self.exit_codes.ERROR_DFT_FAILED.format(keys=', '.join(failed))
        trajectories = {}
        for key in self.ctx.supercells:
            node = self.ctx[f'pw_{key}']
            trajectory = node.outputs.output_trajectory if 'output_trajectory' in node.outputs else None
            if trajectory is None or 'forces' not in trajectory.get_arraynames():
                return self.exit_codes.ERROR_MISSING_FORCES.format(key=key)
            trajectories[key] = trajectory
        self.ctx.forces = self.run_once(
            _analysis.collect_dft_forces, **trajectories, metadata={'call_link_label': 'collect_forces'})['forces']

    def run_potential(self):
        self.ctx.forces = self.run_once(
            _analysis.potential_forces, self.inputs.potential, **self.ctx.supercells,
            metadata={'call_link_label': 'potential_forces'},
        )['forces']

    def compute_dos(self):
        import numpy as np

        forces = self.ctx.forces
        self.out('forces', forces)
        if not all(np.isfinite(forces.get_array(name)).all() for name in forces.get_arraynames()):
            return self.exit_codes.ERROR_NON_FINITE_FORCES.format(engine=self.inputs.engine.value)
        kwargs = {'parameters': self.inputs.parameters} if 'parameters' in self.inputs else {}
        outputs = self.run_once(
            _analysis.phonon_dos_from_forces, self.inputs.structure, self.ctx.dataset, forces, **kwargs,
            metadata={'call_link_label': 'phonon_dos'},
        )
        self.out('dos', outputs['dos'])
        self.out('figure', outputs['figure'])
        lowest = outputs['dos'].base.attributes.get('min_frequency_THz')
        if lowest < -0.05:
            self.report(f'warning: imaginary modes down to {lowest:.3f} THz (dynamically unstable cell, '
                        'not relaxed with this engine, or a too small supercell)')
        self.report(f'DOS<{outputs["dos"].pk}> integrals per species '
                    f'{outputs["dos"].base.attributes.get("integral_per_species")}')
