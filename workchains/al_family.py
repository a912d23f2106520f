"""The contract between the active-learning loop and a potential family (MTP, NEP, or one of your own).

Why a contract: the loop (``mlcampaign.al.loop``) does what every family shares (label the chosen structures
with DFT, refuse unsafe ones, merge, score the exploring model on the new labels, decide whether to go on);
a family does what only it knows (train, explore with an uncertainty measure, choose frames). With this split
a third family (MACE, ACE...) is one module and one ``aiida.workflows`` entry point named
``mlcampaign.al.<family>``: the loop finds it there, exposes its inputs under ``<family>`` and runs it once per
iteration, without a line changed in the loop (as aiida-common-workflows serves several codes behind one
interface).

A family is a subclass of :class:`ActiveLearningIterationWorkChain`:

* inputs: the contract's :data:`CONTRACT_INPUTS`, given by the loop, and its own, given by the user under the
  loop's ``<family>`` namespace;
* outputs: the contract's (``potential``, optionally ``committee``, ``candidates``, ``selected.structure_NNN``,
  ``statistics`` with :data:`STATISTICS_KEYS` in eV units, optionally ``training_errors`` and ``exploration``);
* :meth:`~ActiveLearningIterationWorkChain.get_evaluation`: how to score one of its potentials on labelled
  frames (a calculation or calcfunction whose ``errors`` output has ``forces_rmse`` in eV/Å and
  ``energy_per_atom_rmse`` in eV/atom).
"""

from __future__ import annotations

import functools

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_mlcampaign.calculations.records import iteration_statistics
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.crash_safe import CrashSafeSteps
from aiida_mlcampaign.workchains.protocol import PluginProtocolMixin

#: Entry points ``mlcampaign.al.<family>`` in ``aiida.workflows`` are families, except these.
NOT_FAMILIES = ('loop',)
ENTRY_POINT_PREFIX = 'mlcampaign.al.'
#: Inputs the loop gives every family; the user gives the rest under the family's namespace.
CONTRACT_INPUTS = ('training_set', 'test_set', 'iteration', 'label_budget', 'min_distance', 'train_only')
#: The keys of every family's ``statistics`` (a value is None where the family cannot measure it).
STATISTICS_KEYS = ('explored_frames', 'candidates', 'candidate_fraction', 'selected', 'train_force_rmse',
                   'train_energy_rmse_per_atom', 'test_force_rmse', 'test_energy_rmse_per_atom')


@functools.lru_cache(maxsize=1)
def available_families() -> dict[str, type]:
    """Every installed family: ``{name: work chain class}`` from the ``mlcampaign.al.<name>`` entry points."""
    from aiida.plugins.entry_point import get_entry_point_names, load_entry_point

    families = {}
    for name in get_entry_point_names('aiida.workflows'):
        if name.startswith(ENTRY_POINT_PREFIX) and name[len(ENTRY_POINT_PREFIX):] not in NOT_FAMILIES:
            cls = load_entry_point('aiida.workflows', name)
            if isinstance(cls, type) and issubclass(cls, ActiveLearningIterationWorkChain):
                families[name[len(ENTRY_POINT_PREFIX):]] = cls
    return dict(sorted(families.items()))


def given(inputs, name) -> bool:
    """Whether ``name`` was given: an exposed namespace holding only metadata defaults was not."""
    value = inputs.get(name)
    if value is None:
        return False
    if isinstance(value, dict):
        return any(key != 'metadata' for key in value)
    return True


def launch_evaluation(caller, family, family_inputs, potential, frames, label: str):
    """Score ``potential`` on ``frames`` by ``family``'s own evaluation (:meth:`~ActiveLearningIterationWorkChain.
    get_evaluation`), under ``caller`` (a ``CrashSafeSteps`` work chain: the loop or the family) and ``label``: a
    calcfunction runs at once and its outputs come back as a dict; a calculation or work chain is submitted and its
    node comes back. One place for both callers, so the loop and the family score a potential the same way."""
    process, inputs = family.get_evaluation(family_inputs, potential, frames)
    inputs['metadata'] = {**inputs.get('metadata', {}), 'call_link_label': label}
    if getattr(process, 'is_process_function', False):
        return caller.run_once(process, **inputs)
    return caller.submit(process, **inputs)


def evaluation_errors(result) -> dict | None:
    """The ``errors`` of what :func:`launch_evaluation` returned (a dict of outputs or a finished node)."""
    if isinstance(result, orm.ProcessNode):
        if not result.is_finished_ok or 'errors' not in result.outputs:
            return None
        return result.outputs.errors.get_dict()
    errors = result.get('errors') if isinstance(result, dict) else None
    return None if errors is None else errors.get_dict()


def shortest_distance(training_set: TrainingSetData, structures) -> float:
    """The shortest interatomic distance (Å) over the frames and structures: the floor of a potential's radial
    basis should sit below it."""
    from aiida_mlcampaign.mtp.selection import min_interatomic_distance

    cells = [(f.cell, f.positions, f.pbc) for f in training_set.iter_frames()]
    cells += [(a.cell[:], a.positions, a.pbc) for a in (s.get_ase() for s in structures)]
    return min(float(min_interatomic_distance(*cell)) for cell in cells)


def species_of(training_set: TrainingSetData, structures) -> list[str]:
    """The training set's species, then any further ones of the start structures, in order of appearance."""
    species = list(training_set.species)
    for structure in structures:
        species += [s for s in structure.get_ase().get_chemical_symbols() if s not in species]
    return species


class ActiveLearningIterationWorkChain(CrashSafeSteps, PluginProtocolMixin, WorkChain):
    """One family's part of one iteration: train, explore, select. Subclasses add their inputs and outline."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData, help='The labelled frames to train on.')
        spec.input('test_set', valid_type=TrainingSetData, required=False,
                   help='Held-out frames: the trained model is scored on them (statistics.test_*).')
        spec.input('iteration', valid_type=orm.Int, default=lambda: orm.Int(1),
                   help='The loop\'s iteration number: the prefix of every child\'s call link label.')
        spec.input('label_budget', valid_type=orm.Int, default=lambda: orm.Int(10),
                   help='Select at most this many structures for DFT.')
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(0.6),
                   help='Never select a frame with atoms closer than this (Å); the loop checks it again.')
        spec.input('train_only', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Train (and score on the test set) without exploring or selecting: the loop\'s final fit '
                        'on the labels of its last iteration, and the campaign\'s final fit on the whole pool.')
        spec.output('potential', valid_type=orm.Data,
                    help='The trained potential (for a committee: the member that drove the exploration).')
        spec.output_namespace('committee', valid_type=orm.Data, dynamic=True, required=False,
                              help='Every member, for families that measure uncertainty by a committee.')
        spec.output('candidates', valid_type=TrainingSetData, required=False,
                    help='The explored frames the family considered for labelling.')
        spec.output_namespace('selected', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='The structures to label with DFT (structure_000...), most informative first.')
        spec.output('statistics', valid_type=orm.Dict,
                    help=f'The iteration\'s figures, one schema for every family (eV units): {STATISTICS_KEYS}.')
        spec.output('training_errors', valid_type=orm.Dict, required=False,
                    help='The trainer\'s own error record, as it wrote it.')
        spec.output('exploration', valid_type=orm.Data, required=False,
                    help='The explorer\'s own record (grades, window counts...).')
        spec.exit_code(410, 'ERROR_TRAINING_FAILED', message='Training failed: {why}')
        spec.exit_code(420, 'ERROR_EXPLORATION_FAILED', message='Exploration failed: {why}')
        spec.exit_code(440, 'ERROR_EVALUATION_FAILED', message='Scoring the model on the test set failed.')

    @classmethod
    def get_evaluation(cls, inputs: dict, potential: orm.Data, frames: TrainingSetData) -> tuple[type, dict]:
        """The process and inputs that score ``potential`` on the labelled ``frames``.

        ``inputs`` are the family's own inputs (the loop's ``<family>`` namespace), for codes and resources. The
        process's ``errors`` output must have ``forces_rmse`` (eV/Å) and ``energy_per_atom_rmse`` (eV/atom).
        """
        raise NotImplementedError(f'{cls.__name__}: a family must say how its potentials are scored')

    @classmethod
    def fill_from_protocol(cls, namespace, *, training_set: TrainingSetData, structures: dict, codes: dict,
                           protocol: str | None = None, overrides: dict | None = None,
                           temperatures: list[float] | None = None) -> None:
        """Fill the loop's ``<family>`` builder ``namespace`` from this family's protocol (``fast``, ``balanced``,
        ``stringent``): ``codes`` by the family's own keys (``train``, ``explore``), exploration from
        ``structures`` at ``temperatures`` (K; the protocol's when None)."""
        raise NotImplementedError(f'{cls.__name__}: this family has no protocols')

    @staticmethod
    def fill_train_and_explore(namespace, inputs: dict, codes: dict, structures: dict, temperatures=None) -> None:
        """The part of :meth:`fill_from_protocol` that families with ``train`` and ``explore`` namespaces (the
        exploration driver's) share: codes, the protocol's ``train`` settings and ``explore`` parameters."""
        namespace.train.code = codes['train']
        namespace.train.settings = orm.Dict(inputs['train'])
        namespace.explore.code = codes['explore']
        namespace.explore.structures = structures
        explore = dict(inputs['explore'])
        if temperatures is not None:
            explore['temperatures'] = [float(t) for t in temperatures]
        namespace.explore.parameters = orm.Dict(explore)

    def _label(self, step: str) -> str:
        return f'iteration_{self.inputs.iteration.value:02d}_{step}'

    def should_explore(self) -> bool:
        """False for a final fit (``train_only``): the model is trained and scored, nothing is explored."""
        return not self.inputs.train_only.value

    def test_only(self):
        """Score the trained model on the test set when nothing is explored (a step of its own: it may submit)."""
        if 'test_set' in self.inputs:
            result = self.evaluate(self.ctx.potential, self.inputs.test_set, 'test')
            if isinstance(result, orm.ProcessNode):
                return ToContext(tested=result)
            self.ctx.tested = result

    def inspect_test_only(self):
        if 'tested' in self.ctx:
            self.take_test_errors(self.ctx.tested)

    def take_exploration(self, node) -> None:
        """The outputs of an exploration-driver calculation (``mlcampaign.mtp.explore`` / ``.nep.explore``):
        its record, its candidates, and the statistics they give."""
        self.out('exploration', node.outputs.statistics)
        totals = node.outputs.statistics.get_dict()
        totals = totals.get('totals', totals)
        self.ctx.candidates = node.outputs.candidates if 'candidates' in node.outputs else None
        if self.ctx.candidates is not None:
            self.out('candidates', self.ctx.candidates)
        self.ctx.statistics.update(
            candidate_fraction=float(totals.get('candidate_fraction') or 0.0),
            explored_frames=int(totals.get('graded', 0)),
            candidates=0 if self.ctx.candidates is None else self.ctx.candidates.num_frames, selected=0)

    def has_candidates(self):
        return self.ctx.candidates is not None and self.ctx.candidates.num_frames > 0

    def take_test_errors(self, result) -> None:
        """``statistics.test_*`` from what :meth:`evaluate` gave for the test set (None where it failed)."""
        errors = evaluation_errors(result) or {}
        self.ctx.statistics.update(test_force_rmse=errors.get('forces_rmse'),
                                   test_energy_rmse_per_atom=errors.get('energy_per_atom_rmse'))

    def evaluate(self, potential, frames, step: str):
        """Launch :meth:`get_evaluation` under ``step``'s label (see :func:`launch_evaluation`)."""
        return launch_evaluation(self, type(self), self.inputs, potential, frames, self._label(step))

    def emit_statistics(self, values: dict) -> None:
        """The ``statistics`` output, created by a calcfunction from ``values`` (missing keys become None)."""
        unknown = sorted(set(values) - set(STATISTICS_KEYS))
        if unknown:
            raise ValueError(f'statistics: keys {unknown} are not in the contract {STATISTICS_KEYS}')
        record = {key: values.get(key) for key in STATISTICS_KEYS}
        self.out('statistics', self.run_once(iteration_statistics, orm.Dict(record),
                                             metadata={'call_link_label': self._label('statistics')}))

    def emit_selected(self, outputs: dict) -> int:
        """The ``selected`` namespace from a selection calcfunction's ``structure_*`` outputs; their number."""
        keys = sorted(key for key in outputs if key.startswith('structure_'))
        for number, key in enumerate(keys):
            self.out(f'selected.structure_{number:03d}', outputs[key])
        return len(keys)
