"""What the DFT work chains share: one set of pw.x settings for many structures, and input checks.

Training data is only consistent if every frame is computed with the same functional, pseudopotentials,
cutoffs, smearing and k-point density. The helpers here build those settings once, from
aiida-quantumespresso's protocols and the pseudopotential family's recommended cutoffs for the union
of all elements, and refuse inputs that would waste a submission.
"""

from __future__ import annotations

import copy
import typing as t
import warnings

from aiida import orm
from aiida.common import AttributeDict

from aiida_mlcampaign.workchains.protocol import PluginProtocolMixin

#: Keys of the pw.x parameters that change the physics of a label; they must agree across frames.
PHYSICS_KEYS = {
    'SYSTEM': ('ecutwfc', 'ecutrho', 'occupations', 'smearing', 'degauss', 'input_dft', 'nspin', 'tot_charge',
               'vdw_corr', 'lspinorb', 'noncolin'),
}


def load_family(label: str):
    """The pseudopotential family with recommended cutoffs; the error names the ``pseudo_family`` field."""
    from aiida.common.exceptions import NotExistent

    try:
        family = orm.load_group(label)
    except NotExistent:
        raise ValueError(
            f'pseudo_family: no family labelled {label!r}; run `aiida-mlcampaign setup` or '
            '`aiida-mlcampaign pseudos install` to create it'
        ) from None
    if not hasattr(family, 'get_recommended_cutoffs'):
        raise ValueError(f'pseudo_family: {label!r} is a {family.type_string} without recommended cutoffs')
    return family


def structure_problem(structure: orm.StructureData, family=None, min_distance: float = 0.5,
                      field: str = 'structure') -> str | None:
    """Why ``structure`` must not be submitted to pw.x (None when fine); the message starts with ``field``."""
    from aiida_mlcampaign.structures.variants import check_structure

    try:
        check_structure(structure.get_ase(), min_distance=min_distance, field=field)
    except ValueError as exception:
        return str(exception)
    if family is not None:
        missing = sorted(s for s in structure.get_symbols_set() if s not in family.elements)
        if missing:
            return (f'{field}: no pseudopotential for {missing} in family {family.label!r} '
                    f'(it has {sorted(family.elements)})')
    return None


def recommended_cutoffs(family, elements: t.Iterable[str], stringency: str | None = None) -> tuple[float, float]:
    return family.get_recommended_cutoffs(elements=tuple(sorted(set(elements))), stringency=stringency, unit='Ry')


def cutoff_warnings(parameters: dict, family, elements: t.Iterable[str]) -> list[str]:
    """Cutoffs below the family's lowest stringency are allowed (tests use them) but said out loud."""
    system = parameters.get('SYSTEM', {})
    lowest = min(
        (recommended_cutoffs(family, elements, s) for s in family.get_cutoff_stringencies()),
        key=lambda pair: pair[0],
    )
    messages = []
    if 'ecutwfc' in system and system['ecutwfc'] < lowest[0]:
        messages.append(f'dft.pw.parameters.SYSTEM.ecutwfc = {system["ecutwfc"]} Ry is below the lowest '
                        f'recommendation {lowest[0]} Ry of {family.label!r}')
    if 'ecutrho' in system and system['ecutrho'] < lowest[1]:
        messages.append(f'dft.pw.parameters.SYSTEM.ecutrho = {system["ecutrho"]} Ry is below the lowest '
                        f'recommendation {lowest[1]} Ry of {family.label!r}')
    return messages


def dft_builder_inputs(code, structures: t.Sequence[orm.StructureData], *, pseudo_family: str, qe_protocol: str,
                       stringency: str | None = None, overrides: dict | None = None, options: dict | None = None
                       ) -> dict:
    """PwBaseWorkChain inputs (without structure and pseudos) shared by all ``structures``.

    aiida-quantumespresso's protocol supplies the parameters; the cutoffs are the family's recommendation for
    the union of elements of all structures (not only the first), unless the overrides set them.
    """
    from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

    family = load_family(pseudo_family)
    elements = sorted({s for structure in structures for s in structure.get_symbols_set()})
    overrides = copy.deepcopy(overrides or {})
    overrides['pseudo_family'] = pseudo_family
    system = overrides.setdefault('pw', {}).setdefault('parameters', {}).setdefault('SYSTEM', {})
    if 'ecutwfc' not in system or 'ecutrho' not in system:
        ecutwfc, ecutrho = recommended_cutoffs(family, elements, stringency)
        system.setdefault('ecutwfc', ecutwfc)
        system.setdefault('ecutrho', ecutrho)
    # The largest structure decides the template; per-frame values (conv_thr, pseudos) are set at submission.
    template = max(structures, key=lambda s: (len(s.get_symbols_set()), len(s.sites)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        builder = PwBaseWorkChain.get_builder_from_protocol(
            code, template, protocol=qe_protocol, overrides=overrides, options=options
        )
    inputs = builder._inputs(prune=True)
    inputs['pw'].pop('structure', None)
    inputs['pw'].pop('pseudos', None)
    parameters = inputs['pw']['parameters'].get_dict()
    parameters.setdefault('CONTROL', {}).update({'tprnfor': True, 'tstress': True})
    natoms = len(template.sites)
    electrons = parameters.setdefault('ELECTRONS', {})
    conv_thr_per_atom = electrons.pop('conv_thr') / natoms
    parameters['CONTROL'].pop('etot_conv_thr', None)
    inputs['pw']['parameters'] = orm.Dict(parameters)
    inputs['conv_thr_per_atom'] = conv_thr_per_atom
    for message in cutoff_warnings(parameters, family, elements):
        warnings.warn(message, stacklevel=2)
    return inputs


def pw_inputs_for(dft_inputs: AttributeDict, structure: orm.StructureData, family, conv_thr_per_atom: float,
                  parameter_updates: dict | None = None, settings_updates: dict | None = None) -> AttributeDict:
    """The shared settings, specialised to one structure (its pseudos and its per-atom SCF threshold)."""
    inputs = AttributeDict(copy.deepcopy(dict(dft_inputs)))
    inputs.pw = AttributeDict(dict(dft_inputs.pw))
    inputs.pw['structure'] = structure
    inputs.pw['pseudos'] = family.get_pseudos(structure=structure)
    parameters = inputs.pw['parameters'].get_dict()
    parameters.setdefault('ELECTRONS', {})['conv_thr'] = conv_thr_per_atom * len(structure.sites)
    for namelist, values in (parameter_updates or {}).items():
        parameters.setdefault(namelist, {}).update(values)
    inputs.pw['parameters'] = orm.Dict(parameters)
    if settings_updates:
        settings = inputs.pw['settings'].get_dict() if 'settings' in inputs.pw else {}
        settings.update(settings_updates)
        inputs.pw['settings'] = orm.Dict(settings)
    return inputs


def dft_settings_record(dft_inputs: AttributeDict, family, elements, conv_thr_per_atom: float) -> dict:
    """What makes two labels comparable, stored as the ``dft_settings`` output of every DFT work chain."""
    parameters = dft_inputs.pw['parameters'].get_dict()
    pseudos = family.get_pseudos(elements=sorted(elements))
    record = {
        'pseudo_family': family.label,
        'pseudo_md5': {element: pseudo.md5 for element, pseudo in pseudos.items()},
        'conv_thr_per_atom': conv_thr_per_atom,
        'code': dft_inputs.pw['code'].full_label,
    }
    for namelist, keys in PHYSICS_KEYS.items():
        for key in keys:
            if key in parameters.get(namelist, {}):
                record[key] = parameters[namelist][key]
    if 'kpoints_distance' in dft_inputs:
        record['kpoints_distance'] = float(dft_inputs['kpoints_distance'].value)
    if 'kpoints' in dft_inputs:
        kpoints = dft_inputs['kpoints']
        try:
            mesh, offset = kpoints.get_kpoints_mesh()
            record['kpoints_mesh'] = [list(mesh), list(offset)]
        except AttributeError:
            record['kpoints_list'] = kpoints.get_kpoints().tolist()
    return record


def last_calculation(workchain):
    """The last CalcJob a ``PwBaseWorkChain`` ran (the highest pk), or None.

    Why not ``workchain.called[-1]``: ``called`` lists the outgoing links in the order the database returns them,
    which PostgreSQL does not fix; the ``create_kpoints_from_distance`` calcfunction can come last.
    """
    calculations = [node for node in workchain.called if isinstance(node, orm.CalcJobNode)]
    return max(calculations, key=lambda node: node.pk) if calculations else None


def physics_of(calculation) -> dict:
    """The physics keys a PwCalculation actually ran with, to check that frames agree."""
    parameters = calculation.inputs.parameters.get_dict()
    result = {}
    for namelist, keys in PHYSICS_KEYS.items():
        for key in keys:
            if key in parameters.get(namelist, {}):
                result[key] = parameters[namelist][key]
    result['pseudo_md5'] = {p.element: p.md5 for p in calculation.inputs.pseudos.values()}
    return result


def _validate_computer_limit(value, _):
    if value is not None and value.value < 1:
        return f'max_concurrent_on_computer: must be at least 1, got {value.value}'


#: Process states of a process that holds (or will hold) a job on its computer.
ACTIVE_STATES = ('created', 'waiting', 'running')
PW_BASE_PROCESS_TYPE = 'aiida.workflows:quantumespresso.pw.base'


def active_pw_processes(computer) -> list:
    """The PwBaseWorkChains of the whole profile that have not terminated and whose pw.x code is on ``computer``,
    oldest first.

    Why PwBaseWorkChains and not CalcJobs: a PwBaseWorkChain's node exists from the moment it is submitted, its
    CalcJob only a step later; counting the work chains, two DFT work chains deciding in the same daemon round both
    see the other's submission, so the limit holds."""
    query = orm.QueryBuilder()
    query.append(orm.Computer, filters={'id': computer.pk}, tag='computer')
    query.append(orm.AbstractCode, with_computer='computer', tag='code')
    query.append(orm.WorkflowNode, with_incoming='code', edge_filters={'label': 'pw__code'}, project='*',
                 filters={'process_type': PW_BASE_PROCESS_TYPE,
                          'attributes.process_state': {'in': list(ACTIVE_STATES)}})
    query.order_by({orm.WorkflowNode: {'ctime': 'asc'}})
    return [node for (node,) in query.iterall()]


class DftWorkChainMixin(PluginProtocolMixin):
    """Inputs, protocol file and builder steps that the DFT work chains share."""

    @staticmethod
    def define_dft_inputs(spec, origin: str, dft_help: str):
        from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

        spec.expose_inputs(PwBaseWorkChain, namespace='dft', exclude=('pw.structure', 'pw.pseudos'),
                           namespace_options={'help': dft_help})
        spec.input('pseudo_family', valid_type=orm.Str,
                   help='Label of a pseudopotential family with recommended cutoffs (aiida-pseudo).')
        spec.input('conv_thr_per_atom', valid_type=orm.Float, default=lambda: orm.Float(4e-10),
                   help='SCF threshold per atom in Ry; conv_thr = value * number of atoms, the same for every frame.')
        spec.input('origin', valid_type=orm.Str, default=lambda: orm.Str(origin),
                   help='Tag stored with every frame (e.g. "rattle", "al-iter-02").')
        spec.input('max_concurrent_on_computer', valid_type=orm.Int, required=False,
                   validator=_validate_computer_limit,
                   help='At most this many pw.x calculations (PwBaseWorkChains of any process of the profile) on '
                        "the code's computer at once: this work chain waits for a free slot before it submits. "
                        'The campaign sets it from computers.dft.max_concurrent, a limit for all its DFT together.')

    # ------------------------------------------------------------------------------- computer-wide throttling
    def _computer_limit(self) -> int | None:
        return self.inputs.max_concurrent_on_computer.value if 'max_concurrent_on_computer' in self.inputs else None

    def dft_slots(self) -> int | None:
        """Free pw.x slots on the DFT computer now (None: no computer-wide limit)."""
        limit = self._computer_limit()
        if limit is None:
            return None
        return max(0, limit - len(active_pw_processes(self.inputs.dft.pw.code.computer)))

    def no_dft_slot(self) -> bool:
        """Outline condition: the computer-wide limit is reached."""
        return self.dft_slots() == 0

    def wait_for_dft_slot(self):
        """Wait until the oldest pw.x process on the computer terminates (whoever launched it), then look again."""
        from aiida.engine import ToContext

        computer = self.inputs.dft.pw.code.computer
        active = active_pw_processes(computer)
        if not active:
            return None
        self.report(f'computer {computer.label}: {len(active)} pw.x calculation(s) running or queued, the limit is '
                    f'{self._computer_limit()}; waiting for {active[0].process_label}<{active[0].pk}> to finish')
        return ToContext(slot_wait=active[0])

    @classmethod
    def _builder_with_dft(cls, code, structures, inputs: dict, pseudo_family, options):
        """A builder with ``dft``, ``pseudo_family`` and ``conv_thr_per_atom`` filled from the protocol inputs."""
        family_label = pseudo_family or inputs['pseudo_family']
        dft_inputs = dft_builder_inputs(
            code, list(structures), pseudo_family=family_label, qe_protocol=inputs['qe_protocol'],
            stringency=inputs.get('cutoff_stringency'), overrides=inputs.get('dft', {}), options=options,
        )
        builder = cls.get_builder()
        builder.pseudo_family = orm.Str(family_label)
        builder.conv_thr_per_atom = orm.Float(dft_inputs.pop('conv_thr_per_atom'))
        builder.dft = dft_inputs
        if 'origin' in inputs:
            builder.origin = orm.Str(inputs['origin'])
        return builder
