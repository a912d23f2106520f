"""Schema of ``campaign.yaml`` (pydantic v2) and its loader: every error names the YAML path and line.

``load_config(path)`` reads the file with PyYAML, keeping the line of every key and list item (``yaml.compose``),
refuses duplicate keys and turns YAML syntax errors into a :class:`ConfigError` with the line; then the data go
through the models below (every model refuses unknown keys, naming them) and through the consistency checks that
span several fields (:func:`_consistency_problems`). A :class:`ConfigError` holds every problem found, each a
:class:`Problem`; ``str(error)`` gives one line per problem::

    campaign.yaml:14: stages.active_learning.mtp.level: must be an even number from 2 to 20 (...), got 7

Schema errors are reported first; the consistency checks (which need a valid schema) run once those are fixed.
Nothing is tied to particular elements. AiiDA-free: the AiiDA-side preflight (codes, computers, pseudopotentials)
is ``aiida_mlcampaign.setup.campaign_preflight``. ``docs/campaign.md`` documents every field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import math
import pathlib
import re
import typing as t
from importlib.resources import files

import numpy as np
import yaml
from ase.data import chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.functional_validators import AfterValidator

__all__ = (
    'FAMILIES',
    'CampaignConfig',
    'ConfigError',
    'PlanRow',
    'Problem',
    'load_config',
    'parse_config',
)

#: The active-learning families a campaign file can name, in their default order.
FAMILIES = ('mtp', 'nep')
PROTOCOLS = ('fast', 'balanced', 'stringent')
#: What ``mlcampaign.dft.aimd`` accepts (``workchains/dft_aimd.py`` THERMOSTATS; a test keeps them equal).
THERMOSTATS = ('initial', 'berendsen', 'svr', 'rescaling', 'andersen')
DEFAULT_PSEUDO_FAMILY = 'PSL-US-1.0.0-PBE-mlcampaign'
#: Keys ``dft.overrides`` may hold: aiida-quantumespresso's ``PwBaseWorkChain`` protocol inputs (a test keeps them
#: equal) but ``pseudo_family`` (that is ``dft.pseudo_family``); PwBaseWorkChain ignores unknown keys silently.
DFT_OVERRIDE_KEYS = ('clean_workdir', 'kpoints_distance', 'kpoints_force_parity', 'max_iterations', 'meta_parameters',
                     'pw')
PW_NAMELISTS = ('CONTROL', 'SYSTEM', 'ELECTRONS', 'IONS', 'CELL', 'FCP', 'RISM')
_ELEMENTS = frozenset(chemical_symbols[1:])
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')
_CODE = re.compile(r'[^@\s]+@[^@\s]+')


# ------------------------------------------------------------------------------------------------------ problems
@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of a campaign file: ``path`` is dotted (``stages.md.temperatures[1]``; '' for the whole file),
    ``line`` the line in the YAML file (None when unknown), ``severity`` 'error' or 'warning'."""

    path: str
    line: int | None
    message: str
    severity: str = 'error'

    def format(self, source: str = '<dict>') -> str:
        where = f'{source}:{self.line}' if self.line is not None else source
        prefix = 'warning: ' if self.severity == 'warning' else ''
        return f'{where}: {prefix}{self.path}: {self.message}' if self.path else f'{where}: {prefix}{self.message}'


class ConfigError(ValueError):
    """A campaign file that cannot be used: ``problems`` (list of :class:`Problem`), ``source`` (the file)."""

    def __init__(self, problems: list[Problem], source: str = '<dict>'):
        self.problems = list(problems)
        self.source = source
        super().__init__('\n'.join(problem.format(source) for problem in self.problems))


PathTuple = tuple[t.Union[str, int], ...]


def dotted(path: PathTuple) -> str:
    """``('stages', 'md', 'temperatures', 1)`` -> ``'stages.md.temperatures[1]'``."""
    text = ''
    for element in path:
        text += f'[{element}]' if isinstance(element, int) else (f'.{element}' if text else str(element))
    return text


def split_dotted(path: str) -> PathTuple:
    """The inverse of :func:`dotted`."""
    parts: list = []
    for name, index in re.findall(r'([^.\[\]]+)|\[(\d+)\]', path):
        parts.append(int(index) if index else name)
    return tuple(parts)


def _line_of(lines: dict | None, path: PathTuple) -> int | None:
    """The line of ``path``, else of its closest ancestor present in the file."""
    if not lines:
        return None
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


# ------------------------------------------------------------------------------------------------- field types
def _element(value: str) -> str:
    if value not in _ELEMENTS:
        hint = f" (did you mean '{value.capitalize()}'?)" if value.capitalize() in _ELEMENTS else ''
        raise ValueError(f'{value!r} is not a chemical element symbol{hint}')
    return value


def _supercell(value: list[int]) -> list[int]:
    if len(value) != 3:
        raise ValueError(f'must be 3 integers >= 1 (one repetition per cell vector), got {value}')
    return value


@functools.cache
def mtp_levels() -> tuple[int, ...]:
    """The MTP levels of the shipped templates (``aiida_mlcampaign/mtp/templates/NN.mtp``)."""
    folder = files('aiida_mlcampaign.mtp') / 'templates'
    return tuple(sorted(int(item.name[:-4]) for item in folder.iterdir()
                        if item.name.endswith('.mtp') and item.name[:-4].isdigit()))


Element = t.Annotated[str, AfterValidator(_element)]
PositiveFloat = t.Annotated[float, Field(gt=0)]
Fraction = t.Annotated[float, Field(ge=0, le=1)]
Temperatures = t.Annotated[list[PositiveFloat], Field(min_length=1)]
Supercell = t.Annotated[list[t.Annotated[int, Field(ge=1)]], AfterValidator(_supercell)]
Protocol = t.Literal['fast', 'balanced', 'stringent']
Family = t.Literal['mtp', 'nep']


class _Model(BaseModel):
    # strict: YAML already types its scalars; '5' for an integer or 1 for a name is a mistake worth a message
    model_config = ConfigDict(extra='forbid', strict=True, validate_default=False)


# ------------------------------------------------------------------------------------------------------- models
class Campaign(_Model):
    name: str = Field(description='Name of the campaign: groups, labels and output folders carry it.')
    description: str = ''

    @field_validator('name')
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f'must start with a letter or digit and hold only letters, digits, _ . -, got {value!r}')
        return value


class ArgyroditeBuilder(_Model):
    """Ordered cubic argyrodite (``structures.argyrodite``): 56-atom ``mobile``7 ``center`` ``anion``6, or with a
    ``halide`` the 52-atom ``mobile``6 ``center`` ``anion``5 ``halide`` (Li6PS5Cl: halide and anion share the free
    anion sites, the mobile ion on half the 48h sites)."""

    kind: t.Literal['argyrodite']
    lattice_parameter: PositiveFloat = 9.65
    mobile: Element = 'Cu'
    center: Element = 'P'
    anion: Element = 'S'
    halide: Element | None = None

    def elements(self) -> list[str]:
        return sorted({self.mobile, self.center, self.anion} | ({self.halide} if self.halide else set()))

    def natoms(self) -> int:
        return 52 if self.halide else 56

    def cell(self) -> np.ndarray:
        return np.eye(3) * self.lattice_parameter

    def build(self):
        from aiida_mlcampaign.structures.argyrodite import build_argyrodite

        if self.halide:
            return build_argyrodite(self.lattice_parameter, mobile=self.mobile, center=self.center, anion=self.anion,
                                    free_anions=(self.halide, self.anion), n_mobile=24)
        return build_argyrodite(self.lattice_parameter, mobile=self.mobile, center=self.center, anion=self.anion)


class ZincblendeBuilder(_Model):
    """8-atom zincblende-derived cubic cell: ``fcc`` on the fcc sites, ``tetrahedral`` on half the tetrahedral."""

    kind: t.Literal['zincblende']
    a: PositiveFloat
    fcc: t.Annotated[list[Element], Field(min_length=4, max_length=4)]
    tetrahedral: t.Annotated[list[Element], Field(min_length=4, max_length=4)]

    FCC: t.ClassVar = ((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))
    TETRAHEDRAL: t.ClassVar = ((0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25))

    def elements(self) -> list[str]:
        return sorted(set(self.fcc) | set(self.tetrahedral))

    def natoms(self) -> int:
        return 8

    def cell(self) -> np.ndarray:
        return np.eye(3) * self.a

    def build(self):
        from ase import Atoms

        return Atoms(symbols=list(self.fcc) + list(self.tetrahedral),
                     scaled_positions=list(self.FCC) + list(self.TETRAHEDRAL), cell=self.cell(), pbc=True)


Builder = t.Annotated[t.Union[ArgyroditeBuilder, ZincblendeBuilder], Field(discriminator='kind')]


class Material(_Model):
    structures: list[str] | None = None
    builder: Builder | None = None
    species: list[Element] | None = None
    supercell: Supercell = [1, 1, 1]


class Dft(_Model):
    protocol: Protocol = 'balanced'
    pseudo_family: str = DEFAULT_PSEUDO_FAMILY
    overrides: dict[str, t.Any] = {}
    max_failed_fraction: Fraction = 0.1
    min_distance: PositiveFloat = 0.5


class Relax(_Model):
    enabled: bool = True
    max_steps: t.Annotated[int, Field(ge=1)] = 50


class Rattle(_Model):
    count: t.Annotated[int, Field(ge=1)]
    amplitude: PositiveFloat = 0.05
    strain: t.Annotated[float, Field(ge=0)] = 0.02
    seed: int = 0
    per_species: dict[Element, PositiveFloat] = {}


class Aimd(_Model):
    temperatures: Temperatures
    steps: t.Annotated[int, Field(ge=1)]
    time_step_fs: PositiveFloat = 2.0
    equilibration_steps: t.Annotated[int, Field(ge=0)] = 0
    every: t.Annotated[int, Field(ge=1)] = 1
    thermostat: t.Literal[THERMOSTATS] = 'berendsen'
    segment_steps: t.Annotated[int, Field(ge=1)] = 50

    def kept_frames(self) -> int:
        """Frames kept per temperature: steps equilibration + k * every < steps (as ``mlcampaign.dft.aimd``)."""
        return max(0, -(-(self.steps - self.equilibration_steps) // self.every))


class Seed(_Model):
    rattle: Rattle | None = None
    aimd: Aimd | None = None


class HeldOutSet(_Model):
    fraction: t.Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: int = 0


class _FamilyBase(_Model):
    protocol: Protocol = 'balanced'
    max_iterations: t.Annotated[int, Field(ge=0)] = 3
    label_budget: t.Annotated[int, Field(ge=1)] = 5
    temperatures: Temperatures | None = None
    steps: t.Annotated[int, Field(ge=1)] | None = None
    overrides: dict[str, t.Any] = {}


class MtpFamily(_FamilyBase):
    level: int | None = None

    @field_validator('level')
    @classmethod
    def _level(cls, value):
        levels = mtp_levels()
        if value is not None and value not in levels:
            raise ValueError(f'must be an even number from {min(levels)} to {max(levels)} (a shipped MTP template), '
                             f'got {value}')
        return value


class NepFamily(_FamilyBase):
    committee_size: t.Annotated[int, Field(ge=2)] | None = None
    generations: t.Annotated[int, Field(ge=1)] | None = None


class ActiveLearning(_Model):
    mtp: MtpFamily | None = None
    nep: NepFamily | None = None
    order: list[Family] | None = None
    max_candidate_fraction: Fraction | None = None
    target_force_rmse: PositiveFloat | None = None

    def families(self) -> list[str]:
        """The families given, in ``order`` (default: mtp, nep)."""
        if self.order is not None:
            return list(self.order)
        return [name for name in FAMILIES if getattr(self, name) is not None]


class FinalFit(_Model):
    enabled: bool = True


class Md(_Model):
    temperatures: Temperatures
    steps: t.Annotated[int, Field(ge=1)]
    time_step_fs: PositiveFloat = 1.0
    supercell: Supercell = [1, 1, 1]
    dump_every: t.Annotated[int, Field(ge=1)] = 10
    equilibration_steps: t.Annotated[int, Field(ge=0)] = 0
    families: list[Family] | None = None
    seed: int = 0
    engine: t.Literal['cpu', 'gpumd'] = 'cpu'


class Rdf(_Model):
    r_max: PositiveFloat = 6.0
    bins: t.Annotated[int, Field(ge=10)] = 200


class Msd(_Model):
    species: list[Element] | None = None
    fit_start_ps: t.Annotated[float, Field(ge=0)] | None = None


class Vdos(_Model):
    enabled: bool = True


class Analysis(_Model):
    rdf: Rdf = Rdf()
    msd: Msd = Msd()
    vdos: Vdos = Vdos()
    speed: bool = True


class Stages(_Model):
    relax: Relax | None = None
    seed: Seed
    test_set: HeldOutSet | None = HeldOutSet()
    active_learning: ActiveLearning | None = None
    final_fit: FinalFit = FinalFit()
    md: Md | None = None
    analysis: Analysis | None = None


class Role(_Model):
    code: str
    max_concurrent: t.Annotated[int, Field(ge=1)] = 1
    num_machines: t.Annotated[int, Field(ge=1)] = 1
    num_mpiprocs_per_machine: t.Annotated[int, Field(ge=1)] = 1
    max_wallclock_seconds: t.Annotated[int, Field(ge=60)] = 3600
    queue_name: str | None = None
    account: str | None = None
    gpus: t.Annotated[int, Field(ge=0)] = 0

    @field_validator('code')
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.fullmatch(value):
            raise ValueError(f"must name a code as 'label@computer' (as `verdi code list` shows it), got {value!r}")
        return value

    @property
    def code_label(self) -> str:
        return self.code.split('@', 1)[0]

    @property
    def computer_label(self) -> str:
        return self.code.split('@', 1)[1]

    def resources(self) -> dict:
        return {'num_machines': self.num_machines, 'num_mpiprocs_per_machine': self.num_mpiprocs_per_machine}

    def options(self) -> dict:
        """CalcJob ``metadata.options``: resources, wall time, queue and account when given (GPUs are the
        launcher's business: each CalcJob has its own way to ask for them)."""
        options = {'resources': self.resources(), 'max_wallclock_seconds': self.max_wallclock_seconds}
        if self.queue_name is not None:
            options['queue_name'] = self.queue_name
        if self.account is not None:
            options['account'] = self.account
        return options


class Computers(_Model):
    dft: Role
    mtp_train: Role | None = None
    nep_train: Role | None = None
    explore: Role | None = None
    md: Role | None = None
    gpumd: Role | None = None

    def roles(self) -> dict[str, Role]:
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


#: The roles whose jobs can use GPUs (GPUMD's ``nep`` and ``gpumd``).
GPU_ROLES = ('nep_train', 'gpumd')


class Targets(_Model):
    force_rmse: PositiveFloat = 0.15
    energy_rmse_per_atom: PositiveFloat | None = None


class Budgets(_Model):
    dft_labels: t.Annotated[int, Field(ge=1)] | None = None
    cpu_hours: PositiveFloat | None = None
    gpu_hours: PositiveFloat | None = None


class PlanRow(t.NamedTuple):
    """One line of the plan: ``dft_calls`` are pw.x runs that give labels (or relaxations); hours are core-hours
    (``cpu_hours``) and GPU-hours (``gpu_hours``), crude estimates (:meth:`CampaignConfig.plan_rows`)."""

    stage: str
    what: str
    dft_calls: int
    cpu_hours: float
    gpu_hours: float


class CampaignConfig(_Model):
    """A validated campaign file; build it with :func:`load_config` or :func:`parse_config`."""

    campaign: Campaign
    material: Material
    dft: Dft = Dft()
    stages: Stages
    computers: Computers
    targets: Targets = Targets()
    budgets: Budgets = Budgets()

    _source: str = PrivateAttr('<dict>')
    _lines: dict = PrivateAttr(default_factory=dict)
    _base_dir: pathlib.Path = PrivateAttr(default_factory=pathlib.Path.cwd)
    _warnings: list = PrivateAttr(default_factory=list)
    _atoms: list = PrivateAttr(default_factory=list)
    _preloaded: list | None = PrivateAttr(None)

    # -------------------------------------------------------------------------------------------- provenance
    @property
    def source(self) -> str:
        """The file the configuration came from ('<dict>' for :func:`parse_config` without a source)."""
        return self._source

    @property
    def base_dir(self) -> pathlib.Path:
        """The folder relative structure paths were resolved against (the YAML file's)."""
        return self._base_dir

    @property
    def warnings(self) -> list[Problem]:
        """What is allowed but probably not meant (unused roles, GPUs nothing uses, estimates over budget)."""
        return list(self._warnings)

    def line_of(self, path: str | PathTuple) -> int | None:
        """The line of a dotted path (or of its closest ancestor in the file); None without line information."""
        return _line_of(self._lines, split_dotted(path) if isinstance(path, str) else tuple(path))

    def problem(self, path: str | PathTuple, message: str, severity: str = 'error') -> Problem:
        """A :class:`Problem` at ``path`` with its line in this file (for checks made elsewhere, the preflight)."""
        path = dotted(path) if isinstance(path, tuple) else path
        return Problem(path, self.line_of(path), message, severity)

    # ---------------------------------------------------------------------------------------------- material
    def species(self) -> list[str]:
        """The elements of the material: ``material.species`` as given, else sorted by symbol."""
        if self.material.species is not None:
            return list(self.material.species)
        if self.material.builder is not None:
            return self.material.builder.elements()
        return sorted({symbol for atoms in self._atoms for symbol in atoms.get_chemical_symbols()})

    def start_structures(self) -> list:
        """The start structures as ``ase.Atoms`` (files as read, or the builder's cell), each repeated by
        ``material.supercell``."""
        atoms = [a.copy() for a in self._atoms] if self.material.structures is not None \
            else [self.material.builder.build()]
        return [a.repeat(tuple(self.material.supercell)) for a in atoms]

    def _cells(self) -> list[tuple[int, np.ndarray]]:
        """(natoms, cell) of every start structure, supercell applied, without building anything."""
        repeat = np.asarray(self.material.supercell)
        if self.material.builder is not None:
            builder = self.material.builder
            return [(builder.natoms() * int(repeat.prod()), builder.cell() * repeat[:, None])]
        return [(len(a) * int(repeat.prod()), np.asarray(a.cell) * repeat[:, None]) for a in self._atoms]

    def families(self) -> list[str]:
        """The active-learning families, in their order ([] without active learning)."""
        learning = self.stages.active_learning
        return learning.families() if learning is not None else []

    def md_families(self) -> list[str]:
        """The families production MD runs (``stages.md.families``, default every active-learning family)."""
        if self.stages.md is None:
            return []
        return list(self.stages.md.families) if self.stages.md.families is not None else self.families()

    # ------------------------------------------------------------------------------------------------ counts
    def seed_label_count(self) -> int:
        """DFT labels the seed stage gives: per start structure ``rattle.count`` plus, per AIMD temperature, the
        kept frames ``ceil((steps - equilibration_steps) / every)`` (``mlcampaign.dft.aimd`` keeps steps
        ``equilibration + k * every``)."""
        seed = self.stages.seed
        per_structure = seed.rattle.count if seed.rattle else 0
        if seed.aimd:
            per_structure += len(seed.aimd.temperatures) * seed.aimd.kept_frames()
        return per_structure * len(self._cells())

    def _learning_labels(self) -> dict[str, int]:
        """Labels per family: ``max_iterations * label_budget``, the total capped by ``budgets.dft_labels``
        (families served in their order)."""
        learning = self.stages.active_learning
        left = None if self.budgets.dft_labels is None else max(0, self.budgets.dft_labels - self.seed_label_count())
        labels = {}
        for name in self.families():
            family = getattr(learning, name)
            wanted = family.max_iterations * family.label_budget
            labels[name] = wanted if left is None else min(wanted, left)
            left = None if left is None else left - labels[name]
        return labels

    def expected_dft_calls(self) -> int:
        """pw.x runs at most: one relaxation per start structure (when ``stages.relax`` is enabled), the seed's
        labels and every family's ``max_iterations * label_budget`` labels; the labels are capped by
        ``budgets.dft_labels``. AIMD steps that are not kept (equilibration, thinning) are costed in
        :meth:`plan_rows` but not counted here."""
        relax = self.stages.relax
        relaxations = len(self._cells()) if relax is not None and relax.enabled else 0
        labels = self.seed_label_count() + sum(self._learning_labels().values())
        if self.budgets.dft_labels is not None:
            labels = min(labels, self.budgets.dft_labels)
        return relaxations + labels

    # -------------------------------------------------------------------------------------------------- plan
    def plan_rows(self) -> list[PlanRow]:
        """The campaign stage by stage: what runs, pw.x runs giving labels, core-hours and GPU-hours.

        The hours are crude, order-of-magnitude estimates from the constants of :data:`COST_MODEL`:

        * pw.x, SCF + forces: ``170 s x (natoms / 56)**2.5`` on 2 cores (reference: a 56-atom Cu7PS6 cell at the
          Γ point, normal cutoffs, 2 cores; cost assumed linear in cores), times the protocol's factor (fast 0.5,
          balanced 1, stringent 2: cutoffs and thresholds) and the irreducible k-points
          ``ceil(prod(ceil(|b_i| / d)) / 2)`` (only time-reversal symmetry: rattled frames have no other) for
          ``d = dft.overrides.kpoints_distance`` or aiida-quantumespresso's protocol default (0.30, 0.15,
          0.10 1/Å). An AIMD step costs half an SCF (wavefunctions extrapolated), a relaxation
          ``min(max_steps, 20)`` half-SCFs. AIMD rows cost every MD step; only kept frames count as calls.
        * MTP training (motep / mlip-2): ``5e-5 core-s x BFGS iterations x frames x atoms x (level / 10)**2``.
        * NEP training: ``generations x 50 (population) x frames x atoms`` evaluations per model, at 1e7 per
          GPU-second when the ``nep_train`` role has GPUs, else 1e5 per core-second (neppo).
        * MD (exploration and production): atom-steps at 2e4 /core/s (MTP), 1e4 /core/s (NEP on the CPU),
          1e7 /GPU/s (NEP in GPUMD, ~ an A100). Exploration runs ``len(temperatures) x seeds`` walkers of
          ``steps`` steps per iteration (the family protocol's values unless given).

        Frames of the active-learning trainings grow from the seed's training part by ``label_budget`` per
        iteration. Analysis is counted as free.
        """
        rows: list[PlanRow] = []
        cells = self._cells()
        natoms = [n for n, _ in cells]
        count = len(cells)
        scf_core_h = float(np.mean([_scf_core_seconds(n, cell, self.dft) for n, cell in cells])) / 3600
        mean_atoms = float(np.mean(natoms))
        stages = self.stages
        relax = stages.relax
        if relax is not None and relax.enabled:
            steps = min(relax.max_steps, COST_MODEL['relax_steps'])
            rows.append(PlanRow('relax', f'{count} structure(s), <= {relax.max_steps} ionic steps', count,
                                count * steps * COST_MODEL['md_step_factor'] * scf_core_h, 0.0))
        seed = stages.seed
        if seed.rattle:
            labels = seed.rattle.count * count
            rows.append(PlanRow('seed', f'rattle: {seed.rattle.count} x {count} structure(s), '
                                        f'{seed.rattle.amplitude:g} Å, strain <= {seed.rattle.strain:g}',
                                labels, labels * scf_core_h, 0.0))
        if seed.aimd:
            aimd = seed.aimd
            labels = len(aimd.temperatures) * aimd.kept_frames() * count
            steps = len(aimd.temperatures) * aimd.steps * count
            rows.append(PlanRow('seed', f'aimd: {len(aimd.temperatures)} T x {aimd.steps} steps x {count} '
                                        f'structure(s), every {aimd.every} after {aimd.equilibration_steps}',
                                labels, steps * COST_MODEL['md_step_factor'] * scf_core_h, 0.0))
        seed_labels = self.seed_label_count()
        train_frames = seed_labels
        if stages.test_set is not None:
            test = _held_out(seed_labels, stages.test_set.fraction)
            train_frames = seed_labels - test
            rows.append(PlanRow('test_set', f'hold out {test} of {seed_labels} seed label(s)', 0, 0.0, 0.0))
        learning_labels = self._learning_labels()
        nep_on_gpu = self.computers.nep_train is not None and self.computers.nep_train.gpus > 0
        final_frames = train_frames + sum(learning_labels.values())
        for name in self.families():
            family = getattr(stages.active_learning, name)
            protocol = family_protocol(name, family.protocol)
            labels = learning_labels[name]
            capped = ' (capped by budgets.dft_labels)' if labels < family.max_iterations * family.label_budget else ''
            stage = f'active_learning.{name}'
            rows.append(PlanRow(stage, f'label <= {family.max_iterations} x {family.label_budget}{capped}', labels,
                                labels * scf_core_h, 0.0))
            iterations = family.max_iterations
            frames = [train_frames + min(i * family.label_budget, labels) for i in range(iterations)]
            cpu, gpu = _training_hours(name, family, protocol, frames, mean_atoms, nep_on_gpu)
            rows.append(PlanRow(stage, f'train {iterations} x {_model_words(name, family, protocol)}', 0, cpu, gpu))
            temperatures = family.temperatures or protocol['temperatures']
            steps = family.steps or protocol['steps']
            walkers = len(temperatures) * protocol['seeds']
            atom_steps = iterations * walkers * steps * mean_atoms
            rows.append(PlanRow(stage, f'explore {iterations} x {walkers} walker(s) x {steps} steps', 0,
                                atom_steps / COST_MODEL[f'{name}_cpu_rate'] / 3600, 0.0))
        if stages.final_fit.enabled and self.families():
            cpu = gpu = 0.0
            for name in self.families():
                family = getattr(stages.active_learning, name)
                protocol = family_protocol(name, family.protocol)
                part = _training_hours(name, family, protocol, [final_frames], mean_atoms, nep_on_gpu, models=1)
                cpu, gpu = cpu + part[0], gpu + part[1]
            rows.append(PlanRow('final_fit', f'{", ".join(self.families())} on {final_frames} frame(s)', 0, cpu, gpu))
        if stages.md is not None:
            md = stages.md
            md_atoms = mean_atoms * int(np.prod(md.supercell))
            for name in self.md_families():
                atom_steps = len(md.temperatures) * md.steps * md_atoms
                where = f'{md.engine}'
                if md.engine == 'gpumd':
                    cpu, gpu = 0.0, atom_steps / COST_MODEL['nep_gpu_rate'] / 3600
                else:
                    cpu, gpu = atom_steps / COST_MODEL[f'{name}_cpu_rate'] / 3600, 0.0
                rows.append(PlanRow('md', f'{name}: {len(md.temperatures)} T x {md.steps} steps, {md_atoms:.0f} '
                                          f'atoms ({where})', 0, cpu, gpu))
        if stages.analysis is not None:
            analysis = stages.analysis
            parts = ['rdf', 'msd'] + (['vdos'] if analysis.vdos.enabled else []) + (['speed'] if analysis.speed else [])
            rows.append(PlanRow('analysis', ', '.join(parts), 0, 0.0, 0.0))
        return rows


# -------------------------------------------------------------------------------------------------- cost model
#: Constants of the crude cost estimate of :meth:`CampaignConfig.plan_rows` (seconds, atom-steps per second).
COST_MODEL = {
    'scf_reference_natoms': 56,  # Cu7PS6 conventional cell
    'scf_reference_seconds': 170.0,  # Γ point, normal cutoffs, SCF + forces
    'scf_reference_cores': 2,
    'scf_exponent': 2.5,
    'protocol_factor': {'fast': 0.5, 'balanced': 1.0, 'stringent': 2.0},
    'kpoints_distance': {'fast': 0.30, 'balanced': 0.15, 'stringent': 0.10},  # aiida-quantumespresso pw.base
    'md_step_factor': 0.5,  # an AIMD or relaxation step: an SCF from extrapolated wavefunctions
    'relax_steps': 20,
    'mtp_train_core_seconds': 5e-5,  # per BFGS iteration x frame x atom at level 10, x (level/10)**2
    'nep_population': 50,
    'nep_train_gpu_rate': 1e7,  # atom evaluations per GPU-second (GPUMD nep)
    'nep_train_cpu_rate': 1e5,  # atom evaluations per core-second (neppo)
    'mtp_cpu_rate': 2e4,  # MD atom-steps per core-second
    'nep_cpu_rate': 1e4,
    'nep_gpu_rate': 1e7,  # GPUMD, NEP4, ~ an A100 (docs/gpu-clusters.md)
}

#: Family protocol values the plan needs when ``workchains/protocols/al_*.yaml`` cannot be read.
_FALLBACK_PROTOCOLS = {
    'mtp': {'fast': {'level': 6, 'max_iter': 150, 'temperatures': [300.0, 600.0], 'seeds': 1, 'steps': 200},
            'balanced': {'level': 10, 'max_iter': 1000, 'temperatures': [300.0, 600.0, 900.0], 'seeds': 2,
                         'steps': 2000},
            'stringent': {'level': 16, 'max_iter': 3000, 'temperatures': [300.0, 600.0, 900.0], 'seeds': 3,
                          'steps': 10000}},
    'nep': {'fast': {'committee_size': 2, 'generation': 300, 'temperatures': [300.0, 600.0], 'seeds': 1,
                     'steps': 200},
            'balanced': {'committee_size': 4, 'generation': 10000, 'temperatures': [300.0, 600.0, 900.0],
                         'seeds': 2, 'steps': 2000},
            'stringent': {'committee_size': 5, 'generation': 50000, 'temperatures': [300.0, 600.0, 900.0],
                          'seeds': 3, 'steps': 10000}},
}


@functools.cache
def family_protocol(family: str, protocol: str) -> dict:
    """The values of ``mlcampaign.al.<family>``'s protocol the plan needs (level or committee size, training
    length, exploration temperatures, seeds and steps), read from its YAML file without importing the plugin."""
    values = dict(_FALLBACK_PROTOCOLS[family][protocol])
    spec = importlib.util.find_spec('aiida_mlcampaign.workchains')  # finds the folder; imports nothing of it
    if spec is None or not spec.submodule_search_locations:
        return values
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / 'protocols' / f'al_{family}.yaml'
    try:
        chosen = yaml.safe_load(path.read_text())['protocols'][protocol]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return values
    explore, train = chosen.get('explore', {}), chosen.get('train', {})
    values.update({key: chosen[key] for key in ('level', 'committee_size') if key in chosen})
    values.update({key: train[key] for key in ('max_iter', 'generation') if key in train})
    values.update({key: explore[key] for key in ('temperatures', 'steps') if key in explore})
    if 'seeds' in explore:
        values['seeds'] = len(explore['seeds'])
    return values


def cell_widths(cell) -> np.ndarray:
    """Perpendicular widths ``V / |a_j x a_k|`` of a cell (Å)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def _scf_core_seconds(natoms: int, cell, dft: Dft) -> float:
    model = COST_MODEL
    distance = dft.overrides.get('kpoints_distance', model['kpoints_distance'][dft.protocol])
    try:
        mesh = [max(1, math.ceil(2 * math.pi / width / float(distance))) for width in cell_widths(cell)]
    except (TypeError, ValueError, ZeroDivisionError):
        mesh = [1, 1, 1]
    kpoints = math.ceil(math.prod(mesh) / 2) if math.prod(mesh) > 1 else 1
    seconds = (model['scf_reference_seconds'] * (natoms / model['scf_reference_natoms']) ** model['scf_exponent']
               * model['protocol_factor'][dft.protocol] * kpoints)
    return seconds * model['scf_reference_cores']


def _held_out(frames: int, fraction: float) -> int:
    """Frames the test split holds out (``TrainingSetData.split_indices``)."""
    test = int(round(fraction * frames))
    if fraction > 0 and test == 0 and frames > 1:
        test = 1
    return min(test, max(frames - 1, 0))


def _model_words(name: str, family, protocol: dict) -> str:
    if name == 'mtp':
        return f'MTP level {family.level or protocol["level"]}'
    size = family.committee_size or protocol['committee_size']
    return f'NEP committee of {size}, {family.generations or protocol["generation"]} generations'


def _training_hours(name, family, protocol, frames: list[int], natoms: float, nep_on_gpu: bool,
                    models: int | None = None):
    """(core-hours, GPU-hours) of one training per entry of ``frames``; ``models``: NEPs per training (default
    the committee)."""
    model = COST_MODEL
    if name == 'mtp':
        level = family.level or protocol['level']
        seconds = sum(model['mtp_train_core_seconds'] * protocol['max_iter'] * n * natoms * (level / 10) ** 2
                      for n in frames)
        return seconds / 3600, 0.0
    size = models or family.committee_size or protocol['committee_size']
    generations = family.generations or protocol['generation']
    evaluations = sum(size * generations * model['nep_population'] * n * natoms for n in frames)
    if nep_on_gpu:
        return 0.0, evaluations / model['nep_train_gpu_rate'] / 3600
    return evaluations / model['nep_train_cpu_rate'] / 3600, 0.0


# ------------------------------------------------------------------------------------------------- YAML loading
def load_config(path: str | pathlib.Path) -> CampaignConfig:
    """Read and check a campaign file; a :class:`ConfigError` names every problem with its path and line.

    Relative structure paths are resolved against the file's folder.
    """
    source = str(path)
    try:
        text = pathlib.Path(path).read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exception:
        raise ConfigError([Problem('', None, f'cannot read the file: {exception}')], source) from None
    data, lines = _compose(text, source)
    return parse_config(data, source=source, lines=lines, base_dir=pathlib.Path(path).resolve().parent)


def parse_config(data: dict, source: str = '<dict>', lines: dict | None = None,
                 base_dir: str | pathlib.Path | None = None, atoms: list | None = None) -> CampaignConfig:
    """Check ``data`` (what the YAML file holds) and return the configuration.

    ``lines`` maps paths (tuples of keys and indices) to lines, as :func:`load_config` makes them; ``base_dir``
    resolves relative structure paths (default: the working directory). ``atoms`` (ase Atoms, one per entry of
    ``material.structures``) stand for the structure files, which are then not read: a campaign work chain checks
    its stored config against its ``structures`` inputs, wherever the files are.
    """
    lines = lines or {}
    if data is None:
        raise ConfigError([Problem('', _line_of(lines, ()), 'the file is empty: it needs campaign, material, '
                                                              'stages and computers')], source)
    if not isinstance(data, dict):
        raise ConfigError([Problem('', _line_of(lines, ()), f'the top level must be a mapping (campaign: ..., '
                                                              f'material: ...), got {_kind(data)}')], source)
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as exception:
        raise ConfigError(_schema_problems(exception, data, lines), source) from None
    config._source = source
    config._lines = dict(lines)
    config._base_dir = pathlib.Path(base_dir) if base_dir is not None else pathlib.Path.cwd()
    config._preloaded = None if atoms is None else list(atoms)
    problems = _consistency_problems(config)
    errors = [problem for problem in problems if problem.severity == 'error']
    if errors:
        raise ConfigError(errors, source)
    config._warnings = [problem for problem in problems if problem.severity == 'warning']
    return config


_MERGE_TAG = 'tag:yaml.org,2002:merge'


def _compose(text: str, source: str) -> tuple[t.Any, dict]:
    """The data of a YAML document and the line of every key and list item; duplicate keys refused."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict = {(): node.start_mark.line + 1}
        problems: list[Problem] = []
        _walk(loader, node, (), lines, problems, set())
        if problems:
            raise ConfigError(problems, source)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exception:
        mark = exception.problem_mark or exception.context_mark
        message = ' '.join(part for part in (exception.context, exception.problem) if part)
        line = min(mark.line + 1, max(1, len(text.splitlines()))) if mark else None
        raise ConfigError([Problem('', line, f'YAML syntax error: {message}')], source) from None
    except yaml.YAMLError as exception:
        raise ConfigError([Problem('', None, f'YAML error: {exception}')], source) from None
    finally:
        loader.dispose()


def _walk(loader, node, path: PathTuple, lines: dict, problems: list, active: set) -> None:
    if id(node) in active:  # an alias of one of its own ancestors
        problems.append(Problem(dotted(path), node.start_mark.line + 1, 'recursive YAML alias'))
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(dotted(path), line, 'keys must be plain names, not lists or mappings'))
                continue
            key = loader.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                key = key_node.value
            if key in seen:
                problems.append(Problem(dotted(path + (key,)), line,
                                        f'duplicate key {key!r} (first at line {seen[key]})'))
                continue
            seen[key] = line
            lines[path + (key,)] = line
            _walk(loader, value_node, path + (key,), lines, problems, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk(loader, item, path + (index,), lines, problems, active)


# ------------------------------------------------------------------------------------------------ schema errors
def _kind(value) -> str:
    if value is None:
        return 'nothing (null)'
    if isinstance(value, dict):
        return 'a mapping'
    if isinstance(value, list):
        return 'a list'
    return _show(value)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _unwrap(annotation) -> list:
    """The model classes an annotation can hold (through Optional, Union, Annotated, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for argument in t.get_args(annotation):
        found += _unwrap(argument)
    return found


def _models_at(loc: tuple) -> list[type[BaseModel]]:
    """The model classes at a pydantic ``loc`` (which may hold union tags and '[key]')."""
    candidates: list = [CampaignConfig]
    for element in loc:
        if isinstance(element, int) or element == '[key]':
            continue
        following = [model for candidate in candidates if element in getattr(candidate, 'model_fields', {})
                     for model in _unwrap(candidate.model_fields[element].annotation)]
        if following:
            candidates = following
            continue
        tagged = [c for c in candidates if 'kind' in c.model_fields
                  and element in t.get_args(c.model_fields['kind'].annotation)]
        if tagged:
            candidates = tagged
    return candidates


def _data_path(loc: tuple, data) -> PathTuple:
    """A pydantic ``loc`` as a path in the data: union tags and '[key]' markers left out."""
    path: list = []
    node = data
    for position, element in enumerate(loc):
        if element == '[key]':
            continue
        if isinstance(node, dict) and element in node:
            path.append(element)
            node = node[element]
        elif isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
            path.append(element)
            node = node[element]
        elif isinstance(node, dict) and position == len(loc) - 1:
            path.append(element)  # a missing key
            node = None
    return tuple(path)


def _schema_problems(exception: ValidationError, data: dict, lines: dict) -> list[Problem]:
    problems, seen = [], set()
    for error in exception.errors(include_url=False):
        path, message = _translate(error, data)
        problem = Problem(dotted(path), _line_of(lines, path), message)
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.line if p.line is not None else 0, p.path))


def _translate(error: dict, data) -> tuple[PathTuple, str]:
    """Path and message of one pydantic error, in this file's words."""
    kind, loc, ctx = error['type'], tuple(error['loc']), error.get('ctx') or {}
    value = error.get('input')
    path = _data_path(loc, data)
    got = f', got {_show(value)}'
    if kind == 'missing':
        return path, 'required'
    if kind == 'extra_forbidden':
        allowed = sorted({name for model in _models_at(loc[:-1]) for name in model.model_fields})
        key = loc[-1]
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ''
        return path, f'unknown key {key!r}{hint} (allowed: {", ".join(allowed)})'
    if kind in ('union_tag_not_found', 'union_tag_invalid'):
        expected = ctx.get('expected_tags', '')
        if kind == 'union_tag_not_found':
            return path + ('kind',), f'required: one of {expected}'
        return path + ('kind',), f'must be one of {expected}, got {_show(ctx.get("tag"))}'
    if kind in ('model_type', 'model_attributes_type', 'dict_type', 'dataclass_type'):
        if value is None:
            return path, 'is empty: expected a mapping of keys (or leave the key out)'
        return path, f'must be a mapping of keys, got {_kind(value)}'
    if kind == 'list_type':
        return path, f'must be a list{" (write [" + str(value) + "])" if isinstance(value, (int, float)) else ""}' \
                     f', got {_kind(value)}'
    if kind in ('int_type', 'int_parsing', 'int_from_float'):
        return path, f'must be an integer{got}'
    if kind in ('float_type', 'float_parsing', 'finite_number'):
        if isinstance(value, str) and _looks_numeric(value):
            return path, (f'must be a number, got the text {value!r} (YAML reads exponents without a decimal '
                          f'point as text: write {_with_point(value)})')
        return path, f'must be a number{got}'
    if kind in ('bool_type', 'bool_parsing'):
        return path, f'must be true or false{got}'
    if kind in ('string_type', 'string_sub_type'):
        return path, f'must be text{got}'
    if kind == 'literal_error':
        return path, f'must be one of {ctx.get("expected")}{got}'
    bounds = {'greater_than': ('>', 'gt'), 'greater_than_equal': ('>=', 'ge'), 'less_than': ('<', 'lt'),
              'less_than_equal': ('<=', 'le')}
    if kind in bounds:
        sign, key = bounds[kind]
        bound = ctx.get(key)
        return path, f'must be {sign} {bound:g}{got}' if isinstance(bound, (int, float)) else \
            f'must be {sign} {bound}{got}'
    if kind in ('too_short', 'too_long'):
        lowest, highest = _length_bounds(loc)
        count = ctx.get('actual_length')
        if lowest is not None and lowest == highest:
            return path, f'must have exactly {lowest} items, got {count}'
        if kind == 'too_short':
            return path, f'must have at least {ctx.get("min_length")} item(s), got {count}'
        return path, f'must have at most {ctx.get("max_length")} item(s), got {count}'
    if kind in ('value_error', 'assertion_error'):
        message = error['msg']
        for prefix in ('Value error, ', 'Assertion failed, '):
            message = message.removeprefix(prefix)
        return path, message
    return path, error['msg']


def _length_bounds(loc: tuple) -> tuple[int | None, int | None]:
    models = _models_at(loc[:-1])
    for model in models:
        field = model.model_fields.get(loc[-1]) if isinstance(loc[-1], str) else None
        if field is None:
            continue
        lowest = highest = None
        for item in field.metadata:
            lowest = getattr(item, 'min_length', lowest)
            highest = getattr(item, 'max_length', highest)
        return lowest, highest
    return None, None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _with_point(text: str) -> str:
    mantissa, _, exponent = text.lower().partition('e')
    return f'{mantissa}.0e{exponent}' if exponent and '.' not in mantissa else text


# ------------------------------------------------------------------------------------------- consistency checks
def _consistency_problems(config: CampaignConfig) -> list[Problem]:
    """Checks that span several fields, each naming its path; warnings have severity 'warning'."""
    problems: list[Problem] = []

    def error(path: str, message: str) -> None:
        problems.append(config.problem(path, message))

    def warn(path: str, message: str) -> None:
        problems.append(config.problem(path, message, 'warning'))

    _check_dft_overrides(config.dft.overrides, error)
    _check_material(config, error)
    if any(problem.path.startswith('material') for problem in problems):
        return problems  # the rest needs the species and cells
    species = set(config.species())
    stages = config.stages
    seed = stages.seed

    # seed
    if seed.rattle is None and seed.aimd is None:
        error('stages.seed', 'needs rattle, aimd or both: the first labels come from them')
    if seed.rattle is not None:
        for element in seed.rattle.per_species:
            if element not in species:
                error(f'stages.seed.rattle.per_species.{element}',
                      f'{element} is not a species of the material ({", ".join(sorted(species))})')
    if seed.aimd is not None:
        aimd = seed.aimd
        if aimd.equilibration_steps >= aimd.steps:
            error('stages.seed.aimd.equilibration_steps',
                  f'must be < steps ({aimd.steps}): {aimd.equilibration_steps} drops every step, got '
                  f'{aimd.equilibration_steps}')
        _duplicates(aimd.temperatures, 'stages.seed.aimd.temperatures', warn)
    seed_labels = config.seed_label_count() if seed.rattle or seed.aimd else 0
    if stages.test_set is not None and (seed.rattle or seed.aimd) and seed_labels < 2:
        error('stages.seed', f'gives {seed_labels} label(s); holding out a test set (stages.test_set) needs at '
                             'least 2 (raise rattle.count or the AIMD steps, or set stages.test_set: null)')

    # active learning
    learning = stages.active_learning
    given = [name for name in FAMILIES if learning is not None and getattr(learning, name) is not None]
    if learning is not None:
        if not given:
            error('stages.active_learning', f'names no family: give at least one of {", ".join(FAMILIES)}')
        elif learning.order is not None:
            if len(set(learning.order)) != len(learning.order):
                error('stages.active_learning.order', f'names a family twice, got {learning.order}')
            elif set(learning.order) != set(given):
                error('stages.active_learning.order',
                      f'must name exactly the families given ({", ".join(given)}), got {learning.order}')

    # production MD and analysis
    md = stages.md
    if md is not None:
        if learning is None or not given:
            error('stages.md', 'needs stages.active_learning: its families are the potentials MD runs')
        if md.equilibration_steps >= md.steps:
            error('stages.md.equilibration_steps',
                  f'must be < steps ({md.steps}): {md.equilibration_steps} drops every step')
        elif md.dump_every > md.steps - md.equilibration_steps:
            error('stages.md.dump_every', f'{md.dump_every} is more than the {md.steps - md.equilibration_steps} '
                                          'production steps: no frame would be written')
        _duplicates(md.temperatures, 'stages.md.temperatures', warn)
        if md.families is not None:
            for index, name in enumerate(md.families):
                if name not in given:
                    error(f'stages.md.families[{index}]', f'{name!r} is not an active-learning family of this '
                                                          f'campaign ({", ".join(given) or "none"})')
            if len(set(md.families)) != len(md.families):
                error('stages.md.families', f'names a family twice, got {md.families}')
        if md.engine == 'gpumd' and 'mtp' in config.md_families():
            path = 'stages.md.families' if md.families is not None else 'stages.md.engine'
            error(path, "engine 'gpumd' runs NEP potentials only, and the MD families include 'mtp' (set "
                        "stages.md.families: [nep], or engine: cpu)")
    analysis = stages.analysis
    if analysis is not None:
        if md is None:
            error('stages.analysis', 'needs stages.md: the analysis reads its trajectories')
        if analysis.msd.species is not None:
            for index, element in enumerate(analysis.msd.species):
                if element not in species:
                    error(f'stages.analysis.msd.species[{index}]',
                          f'{element} is not a species of the material ({", ".join(sorted(species))})')
        if md is not None:
            repeat = np.asarray(md.supercell)[:, None]
            limit = min(cell_widths(cell * repeat).min() for _, cell in config._cells()) / 2
            if analysis.rdf.r_max > limit + 1e-9:
                error('stages.analysis.rdf.r_max',
                      f'{analysis.rdf.r_max:g} Å exceeds half the smallest width of the MD cell ({limit:.3f} Å); '
                      f'use r_max <= {math.floor(limit * 100) / 100:g} or a larger stages.md.supercell')
            production_ps = (md.steps - md.equilibration_steps) * md.time_step_fs / 1000
            fit_start = analysis.msd.fit_start_ps
            if fit_start is not None and md.equilibration_steps < md.steps and fit_start >= production_ps:
                error('stages.analysis.msd.fit_start_ps',
                      f'{fit_start:g} ps is not before the end of the production run ({production_ps:g} ps)')

    # computers
    computers = config.computers
    needed = {'dft': 'labels every structure'}
    if 'mtp' in given:
        needed['mtp_train'] = 'trains the MTPs of stages.active_learning.mtp'
    if 'nep' in given:
        needed['nep_train'] = 'trains the NEPs of stages.active_learning.nep'
    learning = config.stages.active_learning
    if any(getattr(learning, family).max_iterations > 0 for family in given):
        # a family with max_iterations 0 is only fitted to the pool: nothing is explored
        needed['explore'] = 'runs the exploration MD of stages.active_learning'
    if md is not None:
        needed['md' if md.engine == 'cpu' else 'gpumd'] = f'runs stages.md (engine {md.engine})'
    for role, why in needed.items():
        if getattr(computers, role) is None:
            error(f'computers.{role}', f'required: it {why}')
    for role, settings in computers.roles().items():
        if role not in needed:
            warn(f'computers.{role}', 'not used by any stage of this campaign')
        elif settings.gpus > 0 and role not in GPU_ROLES:
            warn(f'computers.{role}.gpus', f'{settings.gpus} GPU(s) requested, but only {" and ".join(GPU_ROLES)} '
                                           'jobs use GPUs here')
    if computers.gpumd is not None and 'gpumd' in needed and computers.gpumd.gpus == 0:
        warn('computers.gpumd.gpus', "0: GPUMD needs a GPU; this relies on the computer's own GPU settings")

    # budgets
    budgets = config.budgets
    if budgets.dft_labels is not None and budgets.dft_labels < seed_labels:
        error('budgets.dft_labels', f'{budgets.dft_labels} is less than the {seed_labels} label(s) the seed '
                                    'stage alone gives')
    if not any(problem.severity == 'error' for problem in problems):
        rows = config.plan_rows()
        for key, column in (('cpu_hours', 3), ('gpu_hours', 4)):
            limit = getattr(budgets, key)
            estimate = sum(row[column] for row in rows)
            if limit is not None and estimate > limit:
                warn(f'budgets.{key}', f'the plan estimates {estimate:.3g} h, more than the {limit:g} h budget')
    return problems


def _check_dft_overrides(overrides: dict, error) -> None:
    for key in overrides:
        if key == 'pseudo_family':
            error('dft.overrides.pseudo_family', 'set dft.pseudo_family instead (the labels take the family from it)')
        elif key not in DFT_OVERRIDE_KEYS:
            close = difflib.get_close_matches(str(key), DFT_OVERRIDE_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            error(f'dft.overrides.{key}', f'unknown key {key!r}{hint} (allowed: {", ".join(DFT_OVERRIDE_KEYS)})')
    pw = overrides.get('pw', {})
    if not isinstance(pw, dict):
        error('dft.overrides.pw', f'must be a mapping of keys, got {_kind(pw)}')
        return
    parameters = pw.get('parameters', {})
    if not isinstance(parameters, dict):
        error('dft.overrides.pw.parameters', f'must be a mapping of namelists, got {_kind(parameters)}')
        return
    for name, namelist in parameters.items():
        if name not in PW_NAMELISTS:
            error(f'dft.overrides.pw.parameters.{name}',
                  f'{name!r} is not a pw.x namelist (one of {", ".join(PW_NAMELISTS)}; upper case)')
        elif not isinstance(namelist, dict):
            error(f'dft.overrides.pw.parameters.{name}', f'must be a mapping of keywords, got {_kind(namelist)}')


def _duplicates(values: list, path: str, warn) -> None:
    if len(set(values)) != len(values):
        warn(path, f'a temperature is given twice, got {values}')


def _check_material(config: CampaignConfig, error) -> None:
    material = config.material
    if material.structures is not None and material.builder is not None:
        error('material.builder', 'give either material.structures or material.builder, not both')
        return
    if material.structures is None and material.builder is None:
        error('material', 'needs structures (files) or a builder')
        return
    if material.structures is not None:
        if not material.structures:
            error('material.structures', 'is empty: give at least one structure file')
            return
        import ase.io

        from aiida_mlcampaign.structures.variants import check_structure

        resolved, atoms_list = [], []
        if config._preloaded is not None:
            if len(config._preloaded) != len(material.structures):
                error('material.structures', f'names {len(material.structures)} file(s) but '
                                             f'{len(config._preloaded)} structure(s) were given')
                return
            resolved, atoms_list = list(material.structures), list(config._preloaded)
        for index, name in enumerate(material.structures if config._preloaded is None else []):
            path = f'material.structures[{index}]'
            file = pathlib.Path(name).expanduser()
            file = file if file.is_absolute() else config.base_dir / file
            resolved.append(str(file))
            if not file.is_file():
                error(path, f'{name}: no such file (relative paths start at {config.base_dir})')
                continue
            try:
                images = ase.io.read(str(file), index=':')
            except Exception as exception:  # noqa: BLE001 - ASE raises many types for unreadable files
                error(path, f'{name}: not readable by ASE ({type(exception).__name__}: {exception})')
                continue
            if len(images) != 1:
                error(path, f'{name}: holds {len(images)} structures; give one file per start structure')
                continue
            atoms = images[0]
            if not atoms.pbc.all():
                error(path, f'{name}: must be periodic in 3 dimensions, got pbc={atoms.pbc.tolist()}')
                continue
            try:
                check_structure(atoms, min_distance=config.dft.min_distance, field=name)
            except ValueError as exception:
                error(path, f'{exception} (dft.min_distance)' if 'apart' in str(exception) else str(exception))
                continue
            atoms_list.append(atoms)
        material.structures = resolved
        config._atoms = atoms_list
        if len(atoms_list) != len(material.structures):
            return
        elements = sorted({s for atoms in atoms_list for s in atoms.get_chemical_symbols()})
    else:
        builder = material.builder
        elements = builder.elements()
        if isinstance(builder, ZincblendeBuilder):
            nearest = builder.a * math.sqrt(3) / 4
            if nearest < config.dft.min_distance:
                error('material.builder.a', f'{builder.a:g} Å puts neighbours {nearest:.3f} Å apart, closer than '
                                            f'dft.min_distance ({config.dft.min_distance:g} Å)')
    if material.species is not None:
        if len(set(material.species)) != len(material.species):
            error('material.species', f'names an element twice, got {material.species}')
        elif set(material.species) != set(elements):
            missing = sorted(set(elements) - set(material.species))
            extra = sorted(set(material.species) - set(elements))
            words = ([f'missing {", ".join(missing)}'] if missing else []) + \
                ([f'{", ".join(extra)} not in the structures'] if extra else [])
            error('material.species', f'must be the elements of the structures ({", ".join(elements)}): '
                                      f'{"; ".join(words)}')
