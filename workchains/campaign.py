"""``mlcampaign.campaign``: the whole study of one material, from one validated ``campaign.yaml``.

Why one work chain: the study of arXiv:2411.10911 (DFT data -> an MTP and a NEP on the same labels -> their MD
against DFT -> transport and speed) is a dozen processes wired in a fixed order. Wired by hand it is a few hundred
lines of script and a graph nobody can walk; here every stage is a child under a fixed call link label, so that
``campaign status``, ``report``, ``query`` and ``cost`` read the graph itself, and a campaign resumed after a crash
or from an earlier campaign (``resume_from``) reuses every finished stage.

Stages (each optional in the config except the seed), and the call link labels of their children:

* ``relax_<key>``: positions relaxed with pw.x (PwBaseWorkChain, the labels' own DFT settings), so that AIMD does
  not start from a strained approximant;
* ``supercell_<key>``: the start structures repeated by ``material.supercell``;
* ``rattle_<key>`` + ``seed_label``: rattled and strained copies (amplitude per species, see
  :func:`aiida_mlcampaign.structures.variants.species_rattle_amplitudes`) labelled by ``mlcampaign.dft.label``;
  ``seed_aimd_<key>_<T>K``: ``mlcampaign.dft.aimd`` per temperature; ``seed_merge``: one pool, de-duplicated;
* ``split``: the test set, split off once and never trained on;
* ``al_<family>``: ``mlcampaign.al.loop`` of each family in ``order`` on ONE growing pool: the next family starts
  from the previous loop's training set, so a frame one family selected trains the other and no structure is
  labelled twice (``merge_training_sets`` de-duplicates by structure hash);
* ``final_<family>``: every family fitted to the final pool (skipped where the loop's own potential already was);
* ``predict_<family>`` + ``compare_errors``: both families scored on the same test set, with a parity figure;
* ``md_<family>_<T>K``: production MD (``mlcampaign.md.cpu``), from the relaxed start structure;
* analysis: ``rdf_*``/``rdf_compare_*`` and ``vdos_*``/``vdos_compare_*`` against the AIMD at the same
  temperature, ``msd_*`` -> ``diffusion_*`` -> ``arrhenius_*``, ``speed``;
* ``report``: every number of the study in one ``Dict`` (``mlcampaign.campaign.report``), with its warnings.

An analysis that cannot be done on the data at hand (too short a run, no AIMD at that temperature) is skipped
with a WARNING in the process report and in the report's ``warnings``; it never fails the campaign.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_mlcampaign.calculations.analysis_models import compare_errors, compare_speed
from aiida_mlcampaign.calculations.analysis_structure import (
    compare_rdfs,
    compute_msd,
    compute_rdf,
    fit_arrhenius,
    fit_diffusion,
)
from aiida_mlcampaign.calculations.analysis_vibrations import compare_dos, compute_vdos
from aiida_mlcampaign.calculations.md_cpu import MdCpuCalculation
from aiida_mlcampaign.calculations.structures import generate_rattled_set, make_supercell
from aiida_mlcampaign.calculations.training_set import merge_training_sets, split_training_set
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains import dft_common
from aiida_mlcampaign.workchains.active_learning import LABEL_INPUTS, ActiveLearningWorkChain
from aiida_mlcampaign.workchains.al_family import CONTRACT_INPUTS, available_families, evaluation_errors, \
    launch_evaluation, shortest_distance
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps, _outputs
from aiida_mlcampaign.workchains.dft_aimd import DftAimdWorkChain
from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

__all__ = ('CODE_ROLES', 'CampaignWorkChain', 'campaign_report', 'config_of')

#: The codes a campaign uses, by role (``computers.<role>`` of the config).
CODE_ROLES = ('dft', 'mtp_train', 'nep_train', 'explore', 'md')
#: Stage names in their order (``campaign status`` shows them; the node's extra ``campaign_stage``).
STAGES = ('setup', 'relax', 'seed', 'test_set', 'active_learning', 'final_fit', 'errors', 'md', 'analysis', 'report',
          'done')
#: Explored frames with a pair closer than this fraction of the seed data's closest pair are never labelled.
MIN_DISTANCE_FRACTION = 0.75
#: Config sections a resumed campaign must share with the one it resumes (its labels depend on them).
RESUME_SECTIONS = ('material', 'dft', 'stages')


def config_of(node_or_dict, structures=None):
    """The :class:`~aiida_mlcampaign.campaign.config.CampaignConfig` of a campaign's ``config`` input (a Dict or a
    dict), with ``structures`` (ase Atoms, in order) standing for the structure files it names."""
    from aiida_mlcampaign.campaign.config import parse_config

    data = node_or_dict.get_dict() if isinstance(node_or_dict, orm.Dict) else dict(node_or_dict)
    return parse_config(data, source='config', atoms=structures)


def _atoms_of(structures) -> list:
    return [structures[key].get_ase() for key in sorted(structures)]


def validate_inputs(inputs, _):
    from aiida_mlcampaign.campaign.config import ConfigError

    if 'config' not in inputs:
        return None
    structures = inputs.get('structures') or {}
    if not structures:
        return 'structures: give the start structures (get_builder_from_config builds them from the config)'
    try:
        config = config_of(inputs['config'], _atoms_of(structures))
    except ConfigError as exception:
        return '; '.join(problem.format('config') for problem in exception.problems)
    codes = inputs.get('codes') or {}
    unknown = sorted(set(codes) - set(CODE_ROLES))
    if unknown:
        return f'codes: unknown role(s) {unknown}; the roles are {list(CODE_ROLES)}'
    needed = ['dft'] + [f'{family}_train' for family in config.families()]
    if any(getattr(config.stages.active_learning, family).max_iterations for family in config.families()):
        needed.append('explore')
    if config.md_families():
        needed.append('md')
    missing = [role for role in needed if role not in codes]
    if missing:
        return f'codes: the config needs a code for {missing} (computers.<role>.code)'
    species = set(config.species())
    for key, structure in structures.items():
        extra = sorted(set(structure.get_kind_names()) - species)
        if extra:
            return f'structures.{key}: species {extra} are not in material.species {sorted(species)}'
    return None


class CampaignWorkChain(CrashSafeSteps, WorkChain):
    """A material's whole MLP campaign: seed DFT data -> test set -> active learning of every family on one pool ->
    final fits -> production MD -> analysis -> report."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('config', valid_type=orm.Dict,
                   help='The campaign file as checked by `campaign validate` (aiida_mlcampaign.campaign.config); '
                        'structure files stand for the `structures` inputs.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='The start structures (unit cells, before material.supercell), keyed by name.')
        spec.input_namespace('codes', valid_type=orm.AbstractCode, dynamic=True,
                             help=f'The code of each role: {", ".join(CODE_ROLES)} (computers.<role>.code).')
        spec.input('resume_from', valid_type=orm.Str, required=False,
                   help='UUID of an earlier campaign with the same material, dft and stages: every child of it that '
                        'finished is reused under its call link label instead of being run again.')
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.should_relax)(cls.relax, cls.inspect_relax),
            cls.prepare_structures,
            cls.seed, cls.inspect_seed,
            cls.split,
            while_(cls.has_family_to_learn)(cls.learn, cls.inspect_learning),
            cls.final_fit, cls.inspect_final_fit,
            if_(cls.has_test_set)(cls.predict, cls.inspect_predictions),
            if_(cls.should_run_md)(cls.run_md, cls.inspect_md),
            cls.analyse,
            cls.write_report,
        )
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                              help='The start structures as the campaign used them (relaxed, supercell applied).')
        spec.output('seed_set', valid_type=TrainingSetData, help='Every seed label (rattled and AIMD), merged.')
        spec.output('test_set', valid_type=TrainingSetData, required=False,
                    help='The held-out frames every family is scored on; no family trains on them.')
        spec.output('training_set', valid_type=TrainingSetData,
                    help='The final pool: seed labels (minus the test set) and every family\'s selected labels.')
        spec.output_namespace('potentials', valid_type=orm.Data, dynamic=True,
                              help='Per family, the potential fitted to the final pool.')
        spec.output_namespace('learning', dynamic=True,
                              help='Per family, the active-learning loop\'s summary (List) and stop reason (Str).')
        spec.output('errors', valid_type=orm.Dict, required=False,
                    help='Errors of every family on the test set (mlcampaign.analysis.errors).')
        spec.output_namespace('figures', valid_type=orm.SinglefileData, dynamic=True,
                              help='Every figure of the study (parity, RDF, VDOS, MSD, Arrhenius, speed), PNG.')
        spec.output('report', valid_type=orm.Dict,
                    help='Every number of the study and its warnings (mlcampaign.campaign.report).')
        spec.exit_code(401, 'ERROR_RELAX_FAILED', message='The relaxation of {key} failed: {why}')
        spec.exit_code(402, 'ERROR_SEED_FAILED', message='The seed stage failed: {why}')
        spec.exit_code(403, 'ERROR_LEARNING_FAILED', message='Active learning of {family} failed: {why}')
        spec.exit_code(404, 'ERROR_FINAL_FIT_FAILED', message='The final fit of {family} failed: {why}')
        spec.exit_code(405, 'ERROR_PREDICTION_FAILED', message='Scoring {family} on the test set failed.')

    # ------------------------------------------------------------------------------------------------ builder
    @classmethod
    def get_builder_from_config(cls, config, *, resume_from: str | None = None):
        """A ready builder from a :class:`~aiida_mlcampaign.campaign.config.CampaignConfig` (``load_config``):
        codes loaded by their ``label@computer``, start structures from the files or the builder."""
        builder = cls.get_builder()
        data = config.model_dump(mode='json')
        builder.config = orm.Dict(data)
        atoms = [a.copy() for a in config._atoms] if config.material.structures is not None \
            else [config.material.builder.build()]
        name = config.campaign.name
        builder.structures = {f'{name}_{i:02d}' if len(atoms) > 1 else name: orm.StructureData(ase=a)
                              for i, a in enumerate(atoms)}
        builder.codes = {role: orm.load_code(r.code) for role, r in config.computers.roles().items()
                         if role in CODE_ROLES}
        if resume_from is not None:
            builder.resume_from = orm.Str(resume_from)
        builder.metadata.label = name
        builder.metadata.description = config.campaign.description or f'campaign {name}'
        return builder

    # ------------------------------------------------------------------------------------- resume by label
    def _previous_child(self, label: str):
        """A child that finished under ``label`` in the resumed campaign, or in the one it resumed, and so on (a
        campaign resumed twice reuses what the first run made); None when there is none."""
        uuid = self.inputs.resume_from.value if 'resume_from' in self.inputs else None
        if not uuid or self._children_labelled(label):
            return None
        seen = set()
        while uuid and uuid not in seen:
            seen.add(uuid)
            previous = orm.load_node(uuid)
            links = previous.base.links.get_outgoing(link_label_filter=label).all()
            done = [link.node for link in links
                    if isinstance(link.node, orm.ProcessNode) and link.node.is_finished_ok]
            if done:
                return done[-1]
            uuid = previous.inputs.resume_from.value if 'resume_from' in previous.inputs else None
        return None

    def submit(self, process, inputs=None, **kwargs):
        label = ((inputs or kwargs).get('metadata') or {}).get('call_link_label')
        node = self._previous_child(label) if label else None
        if node is not None:
            self.report(f'{label}: reusing {node.process_label}<{node.pk}> of the resumed campaign')
            return node
        return super().submit(process, inputs, **kwargs)

    def submit_builder(self, builder):
        """Submit a filled builder through :meth:`submit` (which needs the call link label among the inputs)."""
        return self.submit(builder.process_class, **builder._inputs(prune=True))

    def run_once(self, function, *args, **kwargs):
        label = (kwargs.get('metadata') or {}).get('call_link_label')
        node = self._previous_child(label) if label else None
        if node is not None:
            self.report(f'{label}: reusing {node.process_label}<{node.pk}> of the resumed campaign')
            return _outputs(node)
        return super().run_once(function, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def config(self):
        if getattr(self, '_config', None) is None:
            self._config = config_of(self.inputs.config, _atoms_of(self.inputs.structures))
        return self._config

    def _stage(self, name: str, what: str) -> None:
        """Where the campaign stands, for ``campaign status``: a process report line and the ``campaign_stage``
        extra."""
        self.node.base.extras.set('campaign_stage', name)
        self.report(f'stage {name}: {what}')

    def _warn(self, message: str) -> None:
        self.ctx.warnings.append(message)
        self.report(f'WARNING {message}')

    def _options(self, role: str) -> dict:
        r = getattr(self.config.computers, role)
        return r.options() if r is not None else {}

    def _label_builder(self, structures: dict):
        """``mlcampaign.dft.label`` at the campaign's DFT protocol: the one source of every label's settings."""
        dft = self.config.dft
        builder = DftLabelWorkChain.get_builder_from_protocol(
            self.inputs.codes.dft, structures, protocol=dft.protocol, overrides={'dft': dict(dft.overrides)},
            options=self._options('dft'), pseudo_family=dft.pseudo_family)
        builder.max_concurrent = orm.Int(self.config.computers.dft.max_concurrent)
        # ... and for every DFT work chain of the campaign together (seed labels and AIMD, AL labels) on that computer
        builder.max_concurrent_on_computer = orm.Int(self.config.computers.dft.max_concurrent)
        builder.max_failed_fraction = orm.Float(dft.max_failed_fraction)
        builder.min_distance = orm.Float(dft.min_distance)
        return builder

    def _family_settings(self, family: str) -> tuple[dict, list | None]:
        """The family protocol's overrides from the config (level, committee, training length, MD steps), and the
        exploration temperatures."""
        settings = getattr(self.config.stages.active_learning, family)
        overrides = {}
        if family == 'mtp' and settings.level is not None:
            overrides['level'] = settings.level
        if family == 'nep':
            if settings.committee_size is not None:
                overrides['committee_size'] = settings.committee_size
            if settings.generations is not None:
                overrides['train'] = {'generation': settings.generations}
        if settings.steps is not None:
            overrides['explore'] = {'steps': settings.steps}
        from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

        overrides = recursive_merge(overrides, dict(settings.overrides)) if settings.overrides else overrides
        return overrides, settings.temperatures

    def _loop_builder(self, family: str, training_set):
        settings = getattr(self.config.stages.active_learning, family)
        learning = self.config.stages.active_learning
        overrides, temperatures = self._family_settings(family)
        loop = {'max_iterations': max(1, settings.max_iterations), 'label_budget': settings.label_budget,
                'min_distance': self.ctx.get('label_min_distance', self.config.dft.min_distance),
                'target_force_rmse': learning.target_force_rmse or self.config.targets.force_rmse}
        if learning.max_candidate_fraction is not None:
            loop['max_candidate_fraction'] = learning.max_candidate_fraction
        codes = {'train': self.inputs.codes[f'{family}_train']}
        if 'explore' in self.inputs.codes:
            codes['explore'] = self.inputs.codes.explore
        else:  # a final fit only: the builder wants an exploration code; nothing is explored
            codes['explore'] = self.inputs.codes[f'{family}_train']
        builder = ActiveLearningWorkChain.get_builder_from_protocol(
            family, training_set, dict(self.ctx.structures), codes, self.inputs.codes.dft, protocol=settings.protocol,
            overrides={**loop, family: overrides}, pseudo_family=self.config.dft.pseudo_family,
            options=self._options('dft'), temperatures=temperatures, test_set=self.ctx.get('test_set'))
        label = self._label_builder(dict(self.ctx.structures))
        for key in (*LABEL_INPUTS, 'max_concurrent_on_computer'):
            setattr(builder.label, key, label[key])
        namespace = builder[family]
        for sub, role in (('train', f'{family}_train'), ('explore', 'explore')):
            if sub in namespace and self._options(role):
                namespace[sub].metadata.options = {**namespace[sub].metadata.get('options', {}),
                                                   **self._options(role)}
        return builder

    # -------------------------------------------------------------------------------------------------- steps
    def setup(self):
        self.ctx.warnings = [f'config: {problem.format("config")}' for problem in self.config.warnings]
        for warning in self.ctx.warnings:
            self.report(f'WARNING {warning}')
        self.ctx.structures = {key: self.inputs.structures[key] for key in sorted(self.inputs.structures)}
        self.ctx.families = list(self.config.families())
        self.ctx.learned = {}
        self.ctx.potentials = {}
        self.ctx.figures = {}
        self.ctx.report_inputs = {}
        self._stage('setup', f'{len(self.ctx.structures)} start structure(s), families {self.ctx.families or "none"}')

    def should_relax(self):
        relax = self.config.stages.relax
        return relax is not None and relax.enabled

    def relax(self):
        self._stage('relax', f'relaxing the positions of {len(self.ctx.structures)} structure(s) with pw.x')
        builder = self._label_builder(self.ctx.structures)
        dft_inputs = AttributeDict(builder.dft._inputs(prune=True))
        family = dft_common.load_family(self.config.dft.pseudo_family)
        futures = {}
        for key, structure in self.ctx.structures.items():
            inputs = dft_common.pw_inputs_for(
                dft_inputs, structure, family, builder.conv_thr_per_atom.value,
                parameter_updates={'CONTROL': {'calculation': 'relax', 'nstep': self.config.stages.relax.max_steps},
                                   'IONS': {}})
            inputs.max_iterations = orm.Int(1)  # max_steps bounds the whole relaxation: no restart after it
            inputs.metadata = {'call_link_label': f'relax_{key}'}
            from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

            futures[f'relax_{key}'] = self.submit(PwBaseWorkChain, **inputs)
        return ToContext(**futures)

    def inspect_relax(self):
        for key in list(self.ctx.structures):
            node = self.ctx[f'relax_{key}']
            outputs = node.outputs
            if 'output_structure' not in outputs:  # stopped at max_steps: the last pw.x run's last structure
                last = dft_common.last_calculation(node)
                outputs = last.outputs if last is not None else outputs
            if 'output_structure' not in outputs:
                return self.exit_codes.ERROR_RELAX_FAILED.format(key=key, why=node.exit_message or
                                                                 f'exit status {node.exit_status}')
            if not node.is_finished_ok:
                self._warn(f'relax {key}: not converged within stages.relax.max_steps '
                           f'({self.config.stages.relax.max_steps}; exit status {node.exit_status}): the last '
                           'structure is used')
            self.ctx.structures[key] = outputs.output_structure

    def prepare_structures(self):
        supercell = list(self.config.material.supercell)
        if supercell != [1, 1, 1]:
            for key in list(self.ctx.structures):
                self.ctx.structures[key] = self.run_once(make_supercell, self.ctx.structures[key], orm.List(supercell),
                                                         metadata={'call_link_label': f'supercell_{key}'})
        for key, structure in self.ctx.structures.items():
            self.out(f'structures.{key}', structure)

    def seed(self):
        from aiida_mlcampaign.structures.variants import species_rattle_amplitudes

        seed = self.config.stages.seed
        futures = {}
        words = []
        if seed.rattle is not None:
            rattled = {}
            for key, structure in self.ctx.structures.items():
                factors = {element: factor * seed.rattle.amplitude  # per_species: factors on the amplitude
                           for element, factor in seed.rattle.per_species.items()}
                amplitudes = species_rattle_amplitudes(structure.get_ase(), seed.rattle.amplitude, factors)
                outputs = self.run_once(
                    generate_rattled_set, structure, orm.Int(seed.rattle.count), orm.Float(seed.rattle.amplitude),
                    orm.Float(seed.rattle.strain), orm.Int(seed.rattle.seed), per_species=orm.Dict(amplitudes),
                    metadata={'call_link_label': f'rattle_{key}'})
                rattled.update({f'{key}_{name}': node for name, node in sorted(outputs.items())})
                self.report(f'rattle {key}: amplitude per species (Å) {amplitudes}')
            builder = self._label_builder(rattled)
            builder.origin = orm.Str('seed-rattle')
            builder.metadata.call_link_label = 'seed_label'
            futures['seed_label'] = self.submit_builder(builder)
            words.append(f'{len(rattled)} rattled structure(s) to label')
        if seed.aimd is not None:
            aimd = seed.aimd
            for key, structure in self.ctx.structures.items():
                for temperature in aimd.temperatures:
                    label = f'seed_aimd_{key}_{_t(temperature)}K'
                    overrides = {'dft': dict(self.config.dft.overrides), 'time_step': aimd.time_step_fs,
                                 'segment_steps': aimd.segment_steps, 'thermostat': aimd.thermostat,
                                 'equilibration_steps': aimd.equilibration_steps, 'every': aimd.every}
                    builder = DftAimdWorkChain.get_builder_from_protocol(
                        self.inputs.codes.dft, structure, temperature=temperature, steps=aimd.steps,
                        protocol=self.config.dft.protocol, overrides=overrides, options=self._options('dft'),
                        pseudo_family=self.config.dft.pseudo_family)
                    builder.max_concurrent_on_computer = orm.Int(self.config.computers.dft.max_concurrent)
                    builder.metadata.call_link_label = label
                    futures[label] = self.submit_builder(builder)
            words.append(f'AIMD at {", ".join(f"{t:g}" for t in aimd.temperatures)} K')
        self._stage('seed', '; '.join(words))
        return ToContext(**futures)

    def inspect_seed(self):
        sets = {}
        self.ctx.aimd = {}  # temperature -> AIMD frames (first start structure), for the RDF/VDOS references
        if 'seed_label' in self.ctx:
            node = self.ctx.seed_label
            if 'training_set' not in node.outputs:
                return self.exit_codes.ERROR_SEED_FAILED.format(why=f'dft.label<{node.pk}>: {node.exit_message}')
            sets['set_0_rattle'] = node.outputs.training_set
        aimd = self.config.stages.seed.aimd
        if aimd is not None:
            for number, key in enumerate(self.ctx.structures):
                for temperature in aimd.temperatures:
                    node = self.ctx[f'seed_aimd_{key}_{_t(temperature)}K']
                    if 'training_set' not in node.outputs:
                        return self.exit_codes.ERROR_SEED_FAILED.format(
                            why=f'dft.aimd<{node.pk}> at {temperature:g} K: {node.exit_message}')
                    sets[f'set_1_aimd_{key}_{temperature:07.1f}K'.replace('.', '_')] = node.outputs.training_set
                    if number == 0:
                        self.ctx.aimd[_t(temperature)] = node.outputs.training_set
        pool = sets[next(iter(sets))] if len(sets) == 1 else self.run_once(
            merge_training_sets, **sets, metadata={'call_link_label': 'seed_merge'})
        self.out('seed_set', pool)
        self.ctx.pool = pool
        # Frames explored by a young potential can end next to an explosion (atoms 0.6 Å apart): labelled, their
        # forces of hundreds of eV/Å ruin the next fit. No explored frame is labelled with a pair closer than 75 %
        # of the closest pair the seed data holds (nor than dft.min_distance).
        shortest = shortest_distance(pool, [])
        self.ctx.label_min_distance = round(max(self.config.dft.min_distance, MIN_DISTANCE_FRACTION * shortest), 3)
        self.report(f'seed: {pool.num_frames} labelled frames; closest pair {shortest:.3f} Å, so explored frames '
                    f'with a pair closer than {self.ctx.label_min_distance} Å are never labelled')

    def split(self):
        held_out = self.config.stages.test_set
        if held_out is None:
            self._stage('test_set', 'no test set (stages.test_set: null): errors are training errors only')
            return
        outputs = self.run_once(split_training_set, self.ctx.pool, orm.Float(held_out.fraction),
                                orm.Int(held_out.seed), metadata={'call_link_label': 'split'})
        if 'test' not in outputs:
            self._warn(f'test_set: a fraction of {held_out.fraction} of {self.ctx.pool.num_frames} frames holds no '
                       'frame out; no test set')
            return
        self.ctx.pool = outputs['train']
        self.ctx.test_set = outputs['test']
        self.out('test_set', self.ctx.test_set)
        self._stage('test_set', f'{self.ctx.test_set.num_frames} frame(s) held out, {self.ctx.pool.num_frames} to '
                                'train on')

    def has_family_to_learn(self):
        return any(family not in self.ctx.learned for family in self.ctx.families)

    def learn(self):
        family = next(family for family in self.ctx.families if family not in self.ctx.learned)
        self.ctx.learning = family
        settings = getattr(self.config.stages.active_learning, family)
        if settings.max_iterations == 0:
            self.ctx.learned[family] = None
            self.report(f'{family}: max_iterations 0, fitted to the pool without active learning')
            return
        self._stage('active_learning', f'{family}: up to {settings.max_iterations} iteration(s) of '
                                       f'{settings.label_budget} label(s), from {self.ctx.pool.num_frames} frames')
        builder = self._loop_builder(family, self.ctx.pool)
        builder.metadata.call_link_label = f'al_{family}'
        builder.metadata.label = f'al_{family}'
        return ToContext(loop=self.submit_builder(builder))

    def inspect_learning(self):
        family = self.ctx.learning
        if family in self.ctx.learned:  # nothing was submitted
            return
        node = self.ctx.loop
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LEARNING_FAILED.format(family=family, why=node.exit_message or
                                                                f'exit status {node.exit_status}')
        self.ctx.learned[family] = node.uuid
        self.ctx.pool = node.outputs.training_set
        for name in ('summary', 'stop_reason'):
            self.out(f'learning.{family}.{name}', node.outputs[name])
        for row in node.outputs.summary.get_list():
            for warning in row.get('warnings') or []:
                self._warn(f'{family} iteration {row["iteration"]}: {warning}')
        self.report(f'{family}: {node.outputs.stop_reason.value}; the pool has {self.ctx.pool.num_frames} frames')

    def final_fit(self):
        """Every family on the final pool; a loop whose training set is the final pool already gave that fit."""
        self.out('training_set', self.ctx.pool)
        if not self.config.stages.final_fit.enabled:
            for family, uuid in self.ctx.learned.items():
                if uuid is not None:
                    self.ctx.potentials[family] = orm.load_node(uuid).outputs.potential
            self._stage('final_fit', 'disabled: each family keeps its loop\'s potential')
            return
        futures = {}
        for family in self.ctx.families:
            uuid = self.ctx.learned.get(family)
            loop = orm.load_node(uuid) if uuid else None
            if loop is not None and loop.outputs.training_set.uuid == self.ctx.pool.uuid:
                self.ctx.potentials[family] = loop.outputs.potential
                self.report(f'{family}: the loop\'s potential was fitted to the final pool; no final fit needed')
                continue
            futures[f'final_{family}'] = self.submit(available_families()[family], **self._final_inputs(family))
        self._stage('final_fit', f'fitting {", ".join(sorted(f[6:] for f in futures)) or "nothing"} to the final pool '
                                 f'of {self.ctx.pool.num_frames} frames')
        return ToContext(**futures)

    def _family_inputs(self, family: str) -> dict:
        builder = self._loop_builder(family, self.ctx.pool)
        return builder[family]._inputs(prune=True)

    def _final_inputs(self, family: str) -> dict:
        inputs = self._family_inputs(family)
        for key in CONTRACT_INPUTS:
            inputs.pop(key, None)
        inputs.update(training_set=self.ctx.pool, train_only=orm.Bool(True), iteration=orm.Int(0))
        if 'test_set' in self.ctx:
            inputs['test_set'] = self.ctx.test_set
        inputs['metadata'] = {**inputs.get('metadata', {}), 'call_link_label': f'final_{family}'}
        return inputs

    def inspect_final_fit(self):
        for family in self.ctx.families:
            if family in self.ctx.potentials:
                continue
            node = self.ctx.get(f'final_{family}')
            if node is None:
                continue
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_FINAL_FIT_FAILED.format(family=family, why=node.exit_message or
                                                                     f'exit status {node.exit_status}')
            self.ctx.potentials[family] = node.outputs.potential
            self.ctx.report_inputs[f'final_{family}'] = node.outputs.statistics
        for family, potential in self.ctx.potentials.items():
            self.out(f'potentials.{family}', potential)

    def has_test_set(self):
        return 'test_set' in self.ctx and bool(self.ctx.potentials)

    def predict(self):
        self._stage('errors', f'scoring {", ".join(self.ctx.potentials)} on the {self.ctx.test_set.num_frames} test '
                              'frame(s)')
        futures = {}
        self.ctx.predicted = {}
        for family, potential in self.ctx.potentials.items():
            result = launch_evaluation(self, available_families()[family], self._family_inputs(family), potential,
                                       self.ctx.test_set, f'predict_{family}')
            if isinstance(result, orm.ProcessNode):
                futures[f'predict_{family}'] = result
            else:
                self.ctx.predicted[family] = result['predictions']
        return ToContext(**futures)

    def inspect_predictions(self):
        for family in self.ctx.potentials:
            node = self.ctx.get(f'predict_{family}')
            if node is None:
                continue
            if evaluation_errors(node) is None or 'predictions' not in node.outputs:
                return self.exit_codes.ERROR_PREDICTION_FAILED.format(family=family)
            self.ctx.predicted[family] = node.outputs.predictions
        outputs = self.run_once(compare_errors, reference=self.ctx.test_set, **self.ctx.predicted,
                                metadata={'call_link_label': 'compare_errors'})
        self.out('errors', outputs['errors'])
        self.ctx.figures['parity'] = outputs['figure']
        self.ctx.report_inputs['errors'] = outputs['errors']

    def should_run_md(self):
        md = self.config.stages.md
        families = [f for f in self.config.md_families() if f in self.ctx.potentials]
        if md is not None and md.engine == 'gpumd':
            self._warn('stages.md.engine gpumd: not run by the campaign yet; use mlcampaign.gpumd.base on the '
                       'potentials.nep output')
            return False
        return md is not None and bool(families)

    def run_md(self):
        md = self.config.stages.md
        key = next(iter(self.ctx.structures))
        structure = self.ctx.structures[key]
        if list(md.supercell) != [1, 1, 1]:
            structure = self.run_once(make_supercell, structure, orm.List(list(md.supercell)),
                                      metadata={'call_link_label': 'md_structure'})
        self.ctx.md_structure = structure
        futures = {}
        for family in self.config.md_families():
            if family not in self.ctx.potentials:
                continue
            for temperature in md.temperatures:
                label = f'md_{family}_{_t(temperature)}K'
                parameters = {'temperature': float(temperature), 'steps': md.steps, 'time_step': md.time_step_fs,
                              'dump_every': md.dump_every, 'thermo_every': md.dump_every, 'seed': md.seed}
                futures[label] = self.submit(MdCpuCalculation, code=self.inputs.codes.md, structure=structure,
                                             potential=self.ctx.potentials[family], parameters=orm.Dict(parameters),
                                             metadata={'call_link_label': label, 'options': self._options('md')})
        self._stage('md', f'{len(futures)} run(s): {", ".join(self.config.md_families())} at '
                          f'{", ".join(f"{t:g}" for t in md.temperatures)} K, {md.steps} steps of {md.time_step_fs} fs '
                          f'on {len(structure.sites)} atoms')
        return ToContext(**futures)

    def inspect_md(self):
        self.ctx.md = {}
        for family in self.config.md_families():
            for temperature in self.config.stages.md.temperatures:
                node = self.ctx.get(f'md_{family}_{_t(temperature)}K')
                if node is None:
                    continue
                if not node.is_finished_ok or 'trajectory' not in node.outputs:
                    self._warn(f'md {family} {temperature:g} K: {node.process_label}<{node.pk}> ended with exit '
                               f'status {node.exit_status} ({node.exit_message}); its analysis is skipped')
                    continue
                self.ctx.md[f'{family}_{_t(temperature)}K'] = node.pk

    # --------------------------------------------------------------------------------------------- analysis
    def _analysis(self, function, label: str, *args, **kwargs):
        """One analysis calcfunction, crash-safe; a refusal (bad data for it) becomes a warning, not a failure."""
        try:
            return self.run_once(function, *args, **kwargs, metadata={'call_link_label': label})
        except Exception as exception:  # noqa: BLE001 - any refusal of the analysis is reported, the study goes on
            self._warn(f'{label}: skipped ({type(exception).__name__}: {exception})')
            return None

    def analyse(self):
        config = self.config
        analysis, md = config.stages.analysis, config.stages.md
        if analysis is None:
            return
        self._stage('analysis', 'RDF, VDOS, MSD and diffusion of every MD run against the AIMD; speed')
        runs = {key: orm.load_node(pk) for key, pk in (self.ctx.get('md') or {}).items()}
        frame_fs = md.time_step_fs * md.dump_every if md is not None else None
        skip = (md.equilibration_steps // md.dump_every) if md is not None else 0
        reference_rdf, reference_vdos = {}, {}
        aimd = config.stages.seed.aimd
        for temperature, frames in self.ctx.aimd.items():
            name = f'dft_{temperature}K'
            rdf = self._analysis(compute_rdf, f'rdf_{name}', frames, orm.Float(analysis.rdf.r_max),
                                 orm.Int(analysis.rdf.bins))
            if rdf is not None:
                reference_rdf[temperature] = rdf['rdf']
            if analysis.vdos.enabled and frames.num_frames >= 8:
                parameters = {'timestep_fs': aimd.time_step_fs * aimd.every,
                              'max_lag': max(2, min(256, frames.num_frames // 2))}
                vdos = self._analysis(compute_vdos, f'vdos_{name}', frames, orm.Dict(parameters))
                if vdos is not None:
                    reference_vdos[temperature] = vdos['dos']
        diffusion = {}
        for key, node in runs.items():
            family, temperature = key.rsplit('_', 1)
            temperature = temperature[:-1]
            trajectory = node.outputs.trajectory
            frames = node.outputs.trajectory.base.attributes.get('num_frames', None)
            rdf = self._analysis(compute_rdf, f'rdf_{key}', trajectory, orm.Float(analysis.rdf.r_max),
                                 orm.Int(analysis.rdf.bins), skip=orm.Int(skip))
            if rdf is not None:
                self.ctx.figures[f'rdf_{key}'] = rdf['figure']
                if temperature in reference_rdf:
                    compared = self._analysis(compare_rdfs, f'rdf_compare_{key}', reference_rdf[temperature],
                                              rdf['rdf'], label_a=orm.Str(f'DFT {temperature} K'),
                                              label_b=orm.Str(f'{family.upper()} {temperature} K'))
                    if compared is not None:
                        self.ctx.report_inputs[f'rdf_{key}'] = compared['overlap']
                        self.ctx.figures[f'rdf_compare_{key}'] = compared['figure']
            msd = self._analysis(compute_msd, f'msd_{key}', trajectory, orm.Float(frame_fs), skip=orm.Int(skip))
            if msd is not None:
                self.ctx.figures[f'msd_{key}'] = msd['figure']
                kwargs = {'temperature_K': orm.Float(float(temperature.replace('p', '.')))}
                if analysis.msd.fit_start_ps is not None:
                    kwargs['fit_start_ps'] = orm.Float(analysis.msd.fit_start_ps)
                fitted = self._analysis(fit_diffusion, f'diffusion_{key}', msd['msd'], **kwargs)
                if fitted is not None:
                    diffusion.setdefault(family, {})[temperature] = fitted['diffusion']
                    self.ctx.report_inputs[f'diffusion_{key}'] = fitted['diffusion']
                    self._warn_diffusion(key, fitted['diffusion'])
            if analysis.vdos.enabled:
                parameters = {'timestep_fs': frame_fs}
                if frames:
                    parameters['max_lag'] = max(2, min(256, (frames - skip) // 2))
                vdos = self._analysis(compute_vdos, f'vdos_{key}', trajectory, orm.Dict(parameters))
                if vdos is not None:
                    self.ctx.setdefault('vdos', {}).setdefault(temperature, {})[family] = vdos['dos']
        for temperature, curves in (self.ctx.get('vdos') or {}).items():
            curves = dict(curves)
            if temperature in reference_vdos:
                curves['dft'] = reference_vdos[temperature]
            if len(curves) > 1:
                compared = self._analysis(compare_dos, f'vdos_compare_{temperature}K', **curves)
                if compared is not None:
                    self.ctx.report_inputs[f'vdos_{temperature}K'] = compared['overlap']
                    self.ctx.figures[f'vdos_compare_{temperature}K'] = compared['figure']
        for family, results in diffusion.items():
            if len(results) < 2:
                continue
            for element in (analysis.msd.species or [_most_mobile(results)]):
                label = f'arrhenius_{family}' + (f'_{element}' if element else '')
                kwargs = {'species': orm.Str(element)} if element else {}
                fitted = self._analysis(fit_arrhenius, label, quantity=orm.Str('diffusion'), **kwargs,
                                        **{f'T{t}': d for t, d in results.items()})
                if fitted is not None:
                    self.ctx.report_inputs[label] = fitted['arrhenius']
                    self.ctx.figures[label] = fitted['figure']
        if analysis.speed and runs:
            speeds = {}
            for key, node in runs.items():
                if 'speed' in node.outputs and key.split('_', 1)[0] not in speeds:
                    speeds[key.split('_', 1)[0]] = node.outputs.speed
            outputs = self._analysis(compare_speed, 'speed', **speeds)
            if outputs is not None:
                self.ctx.report_inputs['speed'] = outputs['table']
                self.ctx.figures['speed'] = outputs['figure']

    def _warn_diffusion(self, key: str, diffusion: orm.Dict) -> None:
        """One warning per MD run whose D is not trustworthy (the species it concerns, the first reason)."""
        warnings = diffusion.get('warnings') or []
        if warnings:
            species = [name for name, value in (diffusion.get('species') or {}).items()
                       if isinstance(value, dict) and value.get('diffusive') is False]
            self._warn(f'diffusion {key}: not diffusive for {", ".join(species) or "some species"}: {warnings[0]}')

    def write_report(self):
        self._stage('report', 'collecting the numbers of the study')
        inputs = dict(self.ctx.report_inputs)
        for family in self.ctx.families:
            uuid = self.ctx.learned.get(family)
            if uuid:
                inputs[f'al_{family}'] = orm.load_node(uuid).outputs.summary
        if 'test_set' in self.ctx:
            inputs['test_set'] = self.ctx.test_set
        report = self.run_once(campaign_report, config=self.inputs.config, warnings=orm.List(self.ctx.warnings),
                               pool=self.ctx.pool, **inputs, metadata={'call_link_label': 'report'})
        self.out('report', report)
        for name, figure in self.ctx.figures.items():
            self.out(f'figures.{name}', figure)
        self.node.base.extras.set('campaign_stage', 'done')
        self.report(f'stage done: report Dict<{report.pk}>, {len(report["warnings"])} warning(s)')


def _most_mobile(results: dict) -> str | None:
    """The species with the largest D at the highest temperature (the mobile ion of a superionic conductor), for an
    Arrhenius fit when ``analysis.msd.species`` names none."""
    hottest = results[max(results, key=lambda t: float(t.replace('p', '.')))]
    values = {name: value.get('D_A2_per_ps') for name, value in (hottest.get('species') or {}).items()
              if isinstance(value, dict) and value.get('D_A2_per_ps') is not None}
    return max(values, key=values.get) if values else None


def _t(temperature: float) -> str:
    """A temperature in link labels and keys: '600', '612p5' (link labels allow no dot)."""
    return f'{temperature:g}'.replace('.', 'p')


@calcfunction
def campaign_report(config: orm.Dict, warnings: orm.List, pool: TrainingSetData,
                    test_set: TrainingSetData | None = None, **results) -> orm.Dict:
    """Every number of the study in one Dict (see :func:`aiida_mlcampaign.campaign.report.summarize`)."""
    from aiida_mlcampaign.campaign.report import summarize

    plain = {}
    for name, node in results.items():
        if isinstance(node, orm.Dict):
            plain[name] = node.get_dict()
        elif isinstance(node, orm.List):
            plain[name] = node.get_list()
        elif isinstance(node, orm.ArrayData):  # compare_dos overlap
            plain[name] = {'labels': node.base.attributes.get('labels', None),
                           'overlap': node.get_array('overlap').tolist()}
    pool_info = {'frames': pool.num_frames, 'species': list(pool.species),
                 'test_frames': test_set.num_frames if test_set is not None else None}
    return orm.Dict(summarize(config.get_dict(), plain, warnings.get_list(), pool_info))

