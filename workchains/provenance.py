"""Provenance questions about a campaign, answered from the graph: which pw.x runs stand behind a result, and what
the campaign cost, stage by stage and computer by computer.

Why a walk of our own: a result of a campaign is rarely one link away from its DFT. A training set of an
active-learning loop is ``merge_training_sets`` of the previous set and new labels, the previous set is itself a
merge, the pool is ``split_training_set`` of the seed merge, each labelled set is created by a calcfunction whose
inputs are ``PwCalculation`` outputs, and the structures those labelled come from an exploration with the previous
iteration's potential. A fixed-depth QueryBuilder path (the README's ``CalcFunction -> TrajectoryData ->
PwCalculation``) finds the DFT of one labelled set but nothing behind a merge. The walk here follows the data
provenance backwards, transitively, to any depth.

Why layer by layer: a campaign has thousands of nodes. One QueryBuilder query per layer of the walk (the PKs of the
frontier at once, in chunks the database accepts) costs tens of queries for a whole campaign, where a query per
node would cost thousands. :class:`ProvenanceWalker` keeps what it has read, so that several walks over one campaign
(``campaign query`` counts the DFT behind each output) read each link once.

Why ``campaign_cost`` counts what it counts: see its docstring; every estimate it makes says where its number
came from (``wall_time_sources``), so that a core-hour total is never more precise than its inputs.
"""

from __future__ import annotations

import re
import typing as t

from aiida import orm
from aiida.common.links import LinkType

__all__ = ('PW_PROCESS_TYPE', 'STAGES', 'ProvenanceWalker', 'campaign_cost', 'campaign_stage', 'dft_calculation_pks',
           'dft_calculations_behind')

#: The process type of a pw.x calculation (aiida-quantumespresso's ``PwCalculation``): what counts as one DFT call.
PW_PROCESS_TYPE = 'aiida.calculations:quantumespresso.pw'

#: The stages of a campaign that :func:`campaign_stage` returns, in the campaign's order; ``other`` for a child
#: whose label none of them claims (a child added by a later version of the campaign, or a non-campaign caller).
STAGES = ('relax', 'seed', 'test_set', 'active_learning', 'final_fit', 'errors', 'md', 'analysis', 'report', 'other')

#: Call link labels of the campaign's direct children that name their stage exactly ...
_EXACT_LABELS = {
    'split': 'test_set',
    'compare_errors': 'errors',
    'speed': 'analysis',
    'report': 'report',
}
#: ... and those that name it by their beginning (``seed_`` covers ``seed_label``, ``seed_aimd_*``, ``seed_merge``;
#: ``md_`` covers ``md_<family>_<T>K`` and ``md_structure``, the supercell the MD runs start from).
_LABEL_PREFIXES = (
    ('relax_', 'relax'),
    ('supercell_', 'seed'), ('rattle_', 'seed'), ('seed_', 'seed'),
    ('al_', 'active_learning'),
    ('final_', 'final_fit'),
    ('predict_', 'errors'),
    ('md_', 'md'),
    ('rdf_', 'analysis'), ('vdos_', 'analysis'), ('msd_', 'analysis'), ('diffusion_', 'analysis'),
    ('arrhenius_', 'analysis'),
)

#: Links followed backwards from a node to what it came from: a calculation's inputs, a workflow's inputs, and the
#: calculation that created a Data node. Not RETURN (a workflow returning a node did not make it; following it would
#: pull in every sibling of the workflow) and not CALL (a caller is not provenance of what its callee made).
_BACKWARD = (LinkType.INPUT_CALC.value, LinkType.INPUT_WORK.value, LinkType.CREATE.value)
_CALLS = (LinkType.CALL_CALC.value, LinkType.CALL_WORK.value)
#: PKs per ``IN`` filter: below SQLite's historical limit of 999 bound parameters, so every backend accepts it.
_CHUNK = 900

_CALCJOB_NODE_TYPE = 'process.calculation.calcjob.'


def _chunks(items: t.Sequence[int], size: int = _CHUNK) -> t.Iterator[list[int]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _as_node(node: orm.Node | int) -> orm.Node:
    return orm.load_node(node) if isinstance(node, int) else node


# ------------------------------------------------------------------------------------------------ provenance walk
class ProvenanceWalker:
    """Backward walks through the provenance graph, one query per layer; what it reads is kept for the next walk.

    A walker holds the parents of every node it has expanded and the process type of every node it has seen. Use one
    walker for several questions about the same graph (it never forgets, so make a new one to see nodes added
    since).
    """

    def __init__(self) -> None:
        self._parents: dict[int, set[int]] = {}
        self._process_types: dict[int, str | None] = {}

    def process_type(self, pk: int) -> str | None:
        return self._process_types.get(pk)

    def _read_parents(self, pks: t.Iterable[int]) -> None:
        missing = [pk for pk in pks if pk not in self._parents]
        for chunk in _chunks(missing):
            for pk in chunk:
                self._parents[pk] = set()
            query = orm.QueryBuilder()
            query.append(orm.Node, filters={'id': {'in': chunk}}, tag='node', project='id')
            query.append(orm.Node, with_outgoing='node', edge_filters={'type': {'in': _BACKWARD}},
                         project=['id', 'process_type'])
            for child, parent, process_type in query.iterall():
                self._parents[child].add(parent)
                self._process_types[parent] = process_type

    def ancestors(self, pks: t.Iterable[int]) -> set[int]:
        """``pks`` and everything they came from (inputs, creators, their inputs, ...), to any depth."""
        seen = set(pks)
        frontier = list(seen)
        while frontier:
            self._read_parents(frontier)
            following = set()
            for pk in frontier:
                following |= self._parents[pk]
            frontier = sorted(following - seen)
            seen |= following
        return seen

    def called_descendants(self, pks: t.Iterable[int]) -> set[int]:
        """Every process called by the processes ``pks``, their callees, and so on (``pks`` not included)."""
        found: set[int] = set()
        frontier = list(pks)
        while frontier:
            following = set()
            for chunk in _chunks(frontier):
                query = orm.QueryBuilder()
                query.append(orm.ProcessNode, filters={'id': {'in': chunk}}, tag='caller')
                query.append(orm.ProcessNode, with_incoming='caller', edge_filters={'type': {'in': _CALLS}},
                             project=['id', 'process_type'])
                for pk, process_type in query.iterall():
                    self._process_types[pk] = process_type
                    following.add(pk)
            frontier = sorted(following - found)
            found |= following
        return found

    def backward_closure(self, node: orm.Node) -> set[int]:
        """PKs of ``node`` and its backward provenance; for a workflow also of every process it called, with theirs.

        A workflow is a starting point of its own kind: it created nothing itself (its outputs were made by the
        calculations it called), so its inputs alone would miss the DFT it ran. Data and calculations start from
        themselves.
        """
        self._process_types[node.pk] = getattr(node, 'process_type', None)
        starts = {node.pk}
        if isinstance(node, orm.WorkflowNode):
            starts |= self.called_descendants([node.pk])
        return self.ancestors(starts)

    def pw_pks(self, node: orm.Node) -> list[int]:
        """PKs of the pw.x calculations in the backward provenance of ``node`` (itself included if it is one)."""
        return sorted(pk for pk in self.backward_closure(node) if self._process_types.get(pk) == PW_PROCESS_TYPE)


def dft_calculation_pks(node: orm.Node | int, *, walker: ProvenanceWalker | None = None) -> list[int]:
    """PKs (ascending) of every pw.x calculation behind ``node``; ids only, no node is loaded (cheap to count)."""
    return (walker or ProvenanceWalker()).pw_pks(_as_node(node))


def dft_calculations_behind(node: orm.Node | int, *, limit: int | None = None,
                            walker: ProvenanceWalker | None = None) -> list[orm.CalcJobNode]:
    """Every pw.x calculation (``PwCalculation``) in the backward provenance of ``node``, sorted by PK.

    ``node`` may be any node: a Data (a ``TrainingSetData``, a potential, a Dict of diffusion results, an RDF
    ArrayData) or a process. From a Data the walk goes to the calculation that created it, to that calculation's
    inputs, to their creators, and so on: through any number of ``merge_training_sets``, ``split_training_set``,
    ``training_set_from_pw`` and the exploration that chose the structures. It also reaches the pw.x runs before the
    labels (the relaxation whose structure was rattled, a failed run whose remote folder a restart used): everything
    the result depends on. From a workflow it is the workflow's inputs plus every process it called (so a running
    workflow gives the DFT it has run so far). Failed calculations are included (they are provenance too: check
    ``exit_status``).

    :param limit: load only the first ``limit`` calculations (lowest PKs); the walk itself always runs to the end,
        so ``len(dft_calculation_pks(node))`` is the count. Loading is the costly part for thousands of runs.
    """
    pks = dft_calculation_pks(node, walker=walker)
    if limit is not None:
        pks = pks[:max(0, limit)]
    nodes = []
    for chunk in _chunks(pks):
        nodes += orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': {'in': chunk}}).all(flat=True)
    return sorted(nodes, key=lambda calculation: calculation.pk)


# ----------------------------------------------------------------------------------------------------------- stages
def campaign_stage(label: str) -> str:
    """The campaign stage of one of its direct children, from the child's call link label (``other`` if none)."""
    if label in _EXACT_LABELS:
        return _EXACT_LABELS[label]
    for prefix, stage in _LABEL_PREFIXES:
        if label.startswith(prefix):
            return stage
    return 'other'


def _children(node: orm.ProcessNode) -> list[tuple[str, int, str | None]]:
    """``(call link label, pk, process type)`` of the direct children of ``node``."""
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, filters={'id': node.pk}, tag='caller')
    query.append(orm.ProcessNode, with_incoming='caller', edge_filters={'type': {'in': _CALLS}}, edge_tag='call',
                 edge_project='label', project=['id', 'process_type'], tag='child')
    return [(row['call']['label'], row['child']['id'], row['child']['process_type']) for row in query.iterdict()]


def _descendants_by_child(node: orm.ProcessNode) -> tuple[dict[int, str], dict[int, int], dict[int, str]]:
    """``({child pk: call link label}, {pk: child pk}, {pk: node_type})`` of every process below ``node``: each
    descendant mapped to the direct child of ``node`` it descends from (the call tree is a tree: every process has
    one caller), one query per generation."""
    labels: dict[int, str] = {}
    roots: dict[int, int] = {}
    node_types: dict[int, str] = {}
    for label, pk, _ in _children(node):
        labels[pk], roots[pk] = label, pk
    query = orm.QueryBuilder().append(orm.ProcessNode, filters={'id': {'in': list(roots) or [-1]}},
                                      project=['id', 'node_type'])
    node_types.update(dict(query.iterall()))
    frontier = list(roots)
    while frontier:
        following = []
        for chunk in _chunks(frontier):
            query = orm.QueryBuilder()
            query.append(orm.ProcessNode, filters={'id': {'in': chunk}}, tag='caller', project='id')
            query.append(orm.ProcessNode, with_incoming='caller', edge_filters={'type': {'in': _CALLS}},
                         project=['id', 'node_type'])
            for caller, pk, node_type in query.iterall():
                if pk not in roots:
                    roots[pk], node_types[pk] = roots[caller], node_type
                    following.append(pk)
        frontier = following
    return labels, roots, node_types


# ------------------------------------------------------------------------------------------------------------- cost
def _mpiprocs(resources: dict | None) -> tuple[int, int]:
    """``(cores, machines)`` a job holds: MPI ranks (``tot_num_mpiprocs``, else machines x ranks per machine) times
    ``num_cores_per_mpiproc`` (OpenMP threads) where given."""
    resources = resources or {}
    machines = int(resources.get('num_machines') or 1)
    ranks = resources.get('tot_num_mpiprocs') or machines * int(resources.get('num_mpiprocs_per_machine') or 1)
    return int(ranks) * int(resources.get('num_cores_per_mpiproc') or 1), machines


def _seconds(text: str) -> float | None:
    """``[D-]HH:MM:SS`` (SLURM's ``Elapsed``) in seconds."""
    match = re.fullmatch(r'(?:(\d+)-)?(\d+):(\d+):(\d+(?:\.\d+)?)', text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def _accounted_seconds(detailed_job_info: dict | None) -> float | None:
    """The job's elapsed time in the scheduler's accounting (SLURM ``sacct --parsable``: ``ElapsedRaw``, else
    ``Elapsed``, of the first row, the allocation), or None when there is none to read (another scheduler)."""
    if not isinstance(detailed_job_info, dict) or detailed_job_info.get('retval') not in (0, None):
        return None
    lines = [line for line in str(detailed_job_info.get('stdout') or '').splitlines() if line.strip()]
    if len(lines) < 2 or '|' not in lines[0]:
        return None
    header, row = lines[0].split('|'), lines[1].split('|')
    for name, convert in (('ElapsedRaw', float), ('Elapsed', _seconds)):
        if name in header and header.index(name) < len(row):
            try:
                value = convert(row[header.index(name)])
            except ValueError:
                value = None
            if value is not None:
                return value
    return None


#: Where a job's wall time came from, best first (see :func:`campaign_cost`).
WALL_TIME_SOURCES = ('pw_output', 'scheduler_accounting', 'scheduler_poll', 'ctime_mtime', 'none')


def _wall_time(job: dict) -> tuple[float, str]:
    if job.get('pw_wall') is not None:
        return float(job['pw_wall']), 'pw_output'
    accounted = _accounted_seconds(job.get('detailed_job_info'))
    if accounted is not None:
        return accounted, 'scheduler_accounting'
    polled = (job.get('last_job_info') or {}).get('wallclock_time_seconds')
    if polled is not None:
        return float(polled), 'scheduler_poll'
    if job['state'] in ('finished', 'excepted', 'killed'):
        return max(0.0, (job['mtime'] - job['ctime']).total_seconds()), 'ctime_mtime'
    return 0.0, 'none'


def _last_gpu_request(text: str | None) -> int:
    """GPUs per node of the last ``#SBATCH`` GPU request in ``text`` (SLURM: the last one wins), 0 if none."""
    from aiida_mlcampaign.formats.frames import FormatError
    from aiida_mlcampaign.formats.slurm import find_gpu_requests

    try:
        requests = find_gpu_requests(text)
    except FormatError:  # a request SLURM would refuse: the job did not run with it
        return 0
    return requests[-1]['gpus'] if requests else 0


#: Programs that run only on a GPU: a job of theirs holds at least one even when nothing in its script says so.
_GPU_ONLY = ('aiida.calculations:mlcampaign.gpumd.md',)
_NEP_TRAIN = 'aiida.calculations:mlcampaign.nep.train'


def _gpus(job: dict, computer_prepend: str, machines: int, code) -> int:
    """GPUs a job holds, by the first rule that gives a number:

    1. a GPU request (``#SBATCH --gpus-per-node`` / ``--gres=gpu``) in the job's ``custom_scheduler_commands``
       (where the ``gpus`` input of the GPU CalcJobs puts it), else in its computer's ``prepend_text``: per node,
       times the job's machines;
    2. the job's ``cuda_visible_devices`` option: the number of devices listed;
    3. a program that runs only on GPUs: GPUMD (``mlcampaign.gpumd.md``), or a NEP training whose code is GPUMD's
       ``nep`` rather than neppo (:func:`aiida_mlcampaign.calculations.nep.nep_engine`): one GPU;
    4. otherwise none.
    """
    per_node = _last_gpu_request(job.get('custom_scheduler_commands')) or _last_gpu_request(computer_prepend)
    if per_node:
        return per_node * machines
    devices = job.get('cuda_visible_devices')
    if devices:
        return len(str(devices).split(','))
    if job['process_type'] in _GPU_ONLY:
        return 1
    if job['process_type'] == _NEP_TRAIN and code is not None:
        from aiida_mlcampaign.calculations.nep import nep_engine

        try:
            return 1 if nep_engine(code) == 'gpumd' else 0
        except ValueError:
            return 0
    return 0


def _calcjob_rows(pks: list[int]) -> list[dict]:
    """One dict per CalcJob: what its cost needs, read in a few queries per chunk of PKs."""
    fields = ('id', 'process_type', 'ctime', 'mtime', 'dbcomputer_id', 'attributes.resources',
              'attributes.custom_scheduler_commands', 'attributes.cuda_visible_devices', 'attributes.process_state',
              'attributes.exit_status', 'attributes.last_job_info', 'attributes.detailed_job_info')
    names = ('pk', 'process_type', 'ctime', 'mtime', 'computer', 'resources', 'custom_scheduler_commands',
             'cuda_visible_devices', 'state', 'exit_status', 'last_job_info', 'detailed_job_info')
    jobs: dict[int, dict] = {}
    for chunk in _chunks(pks):
        query = orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': {'in': chunk}}, project=list(fields))
        for values in query.iterall():
            jobs[values[0]] = dict(zip(names, values))
        pw = [pk for pk in chunk if jobs.get(pk, {}).get('process_type') == PW_PROCESS_TYPE]
        if pw:
            query = orm.QueryBuilder()
            query.append(orm.CalcJobNode, filters={'id': {'in': pw}}, tag='job', project='id')
            query.append(orm.Dict, with_incoming='job', edge_filters={'label': 'output_parameters',
                                                                    'type': LinkType.CREATE.value},
                         project='attributes.wall_time_seconds')
            for pk, wall in query.iterall():
                jobs[pk]['pw_wall'] = wall
        query = orm.QueryBuilder()
        query.append(orm.CalcJobNode, filters={'id': {'in': chunk}}, tag='job', project='id')
        query.append(orm.AbstractCode, with_outgoing='job', edge_filters={'type': LinkType.INPUT_CALC.value},
                     project='id')
        for pk, code in query.iterall():
            jobs[pk]['code'] = code
    return [jobs[pk] for pk in sorted(jobs)]


def _round(value: float) -> float:
    return round(value, 6)


def _empty_totals() -> dict:
    return {'jobs': 0, 'running': 0, 'dft_calls': 0, 'core_hours': 0.0, 'gpu_hours': 0.0}


def _add(totals: dict, job: dict) -> None:
    totals['jobs'] += 1
    totals['running'] += int(job['running'])
    totals['dft_calls'] += int(job['dft'])
    totals['core_hours'] += job['core_hours']
    totals['gpu_hours'] += job['gpu_hours']


def _rounded(totals: dict) -> dict:
    return {**totals, 'core_hours': _round(totals['core_hours']), 'gpu_hours': _round(totals['gpu_hours'])}


def _int_or_none(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _loop_statistics(loop: orm.ProcessNode) -> dict:
    """Labels selected against candidates explored, per iteration and in all, of one active-learning loop.

    From the loop's ``summary`` output when it has one (a finished loop: one row per iteration, the family's
    statistics and ``labels_added``); while it runs, from the ``iterations.iteration_NN.statistics`` outputs it
    has recorded so far, with ``labels_added`` from the frames of each ``iteration_NN_label`` it has finished.
    """
    entry = {'pk': loop.pk, 'state': loop.process_state.value if loop.process_state else 'created'}
    rows: list[dict] = []
    summary = [link.node for link in loop.base.links.get_outgoing(link_type=LinkType.RETURN,
                                                                  link_label_filter='summary').all()]
    if summary:
        entry['source'] = 'summary'
        for row in summary[0].get_list():
            flat = dict(row.get('statistics') or {}) if isinstance(row.get('statistics'), dict) else {}
            flat.update({key: value for key, value in row.items() if key != 'statistics'})
            rows.append(flat)
    else:
        entry['source'] = 'iterations'
        by_number: dict[int, dict] = {}
        pattern = re.compile(r'^iterations__iteration_(\d+)__statistics$')
        for link in loop.base.links.get_outgoing(link_type=LinkType.RETURN).all():
            match = pattern.match(link.link_label)
            if match:
                by_number[int(match.group(1))] = {'iteration': int(match.group(1)), **link.node.get_dict()}
        pattern = re.compile(r'^iteration_(\d+)_label$')
        for link in loop.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all():
            match = pattern.match(link.link_label)
            if match and int(match.group(1)) in by_number:
                labelled = [out.node for out in link.node.base.links.get_outgoing(
                    link_type=LinkType.RETURN, link_label_filter='training_set').all()]
                if labelled:
                    by_number[int(match.group(1))]['labels_added'] = labelled[0].base.attributes.get('num_frames', 0)
        rows = [by_number[number] for number in sorted(by_number)]
    keep = ('iteration', 'explored_frames', 'candidates', 'candidate_fraction', 'selected', 'labels_added')
    entry['rows'] = [{key: row.get(key) for key in keep} for row in rows]
    entry['iterations'] = len(rows)
    for key in ('explored_frames', 'candidates', 'selected', 'labels_added'):
        entry[key] = sum(_int_or_none(row.get(key)) or 0 for row in rows)
    return entry


def campaign_cost(campaign_node: orm.ProcessNode | int) -> dict:
    """What a campaign (finished or still running) has spent, per stage and per computer, from its call tree.

    Every CalcJob called below the campaign is counted once, in the stage of the campaign's direct child it descends
    from (:func:`campaign_stage` of that child's call link label). Calcfunctions run inside the daemon and cost
    nothing here. A campaign resumed from another reuses that one's nodes without calling them: their cost is the
    other campaign's.

    * ``dft_calls``: pw.x calculations, failed ones included (they used the machine);
    * ``core_hours``: wall time x cores held (MPI ranks x ``num_cores_per_mpiproc``), summed. The wall time of a
      job is, first that applies: pw.x's own clock (``output_parameters['wall_time_seconds']``); the scheduler's
      accounting (``detailed_job_info``, SLURM ``sacct`` ``ElapsedRaw``/``Elapsed``, stored when the job
      completed); the last poll of the scheduler (``last_job_info.wallclock_time_seconds``: short of the truth by
      at most one polling interval); for a terminated job its node's ctime to mtime (an upper bound: it includes
      the queue, the file transfers and the parsing); else nothing (a job still queued or running without scheduler
      information: counted in ``running``, zero hours). ``wall_time_sources`` counts the jobs of each kind;
    * ``gpu_hours``: wall time x GPUs held (the rules of :func:`_gpus`: the job's or computer's ``#SBATCH`` GPU
      request, ``cuda_visible_devices``, or a GPU-only program); GPU jobs count their cores in ``core_hours`` too;
    * ``active_learning``: per family (``al_<family>``), iterations, frames explored, candidates, structures
      selected and labels added (:func:`_loop_statistics`).

    :returns: ``{'pk', 'process_label', 'state', 'terminated', 'rows', 'stages', 'computers', 'total',
        'active_learning', 'wall_time_sources'}``; ``rows``: one dict per (stage, computer) that ran a job, in the
        campaign's stage order, with ``jobs``, ``running``, ``dft_calls``, ``core_hours`` and ``gpu_hours``.
    """
    node = _as_node(campaign_node)
    labels, roots, node_types = _descendants_by_child(node)
    stages = {pk: campaign_stage(labels[root]) for pk, root in roots.items()}
    jobs = _calcjob_rows([pk for pk, node_type in node_types.items() if node_type.startswith(_CALCJOB_NODE_TYPE)])
    computers = {pk: (label, (metadata or {}).get('prepend_text') or '') for pk, label, metadata in
                 orm.QueryBuilder().append(orm.Computer, project=['id', 'label', 'metadata']).iterall()}
    codes: dict[int, orm.Node] = {}
    sources = dict.fromkeys(WALL_TIME_SOURCES, 0)
    cells: dict[tuple[str, str], dict] = {}
    by_stage = {stage: _empty_totals() for stage in STAGES}
    by_computer: dict[str, dict] = {}
    total = _empty_totals()
    for job in jobs:
        computer, prepend = computers.get(job['computer'], ('?', ''))
        code = None
        if job['process_type'] == _NEP_TRAIN and job.get('code') is not None:
            code = codes.setdefault(job['code'], orm.load_node(job['code']))
        cores, machines = _mpiprocs(job['resources'])
        seconds, source = _wall_time(job)
        sources[source] += 1
        job['running'] = job['state'] not in ('finished', 'excepted', 'killed')
        job['dft'] = job['process_type'] == PW_PROCESS_TYPE
        job['core_hours'] = seconds * cores / 3600
        job['gpu_hours'] = seconds * _gpus(job, prepend, machines, code) / 3600
        stage = stages[job['pk']]
        _add(cells.setdefault((stage, computer), _empty_totals()), job)
        _add(by_stage[stage], job)
        _add(by_computer.setdefault(computer, _empty_totals()), job)
        _add(total, job)
    order = {stage: i for i, stage in enumerate(STAGES)}
    rows = [{'stage': stage, 'computer': computer, **_rounded(values)}
            for (stage, computer), values in sorted(cells.items(), key=lambda item: (order[item[0][0]], item[0][1]))]
    learning = {}
    for pk, label in sorted(labels.items()):
        if campaign_stage(label) == 'active_learning' and label.startswith('al_'):
            entry = _loop_statistics(orm.load_node(pk))
            entry['dft_calls'] = sum(1 for job in jobs if job['dft'] and roots[job['pk']] == pk)
            learning[label[len('al_'):]] = entry
    return {
        'pk': node.pk,
        'process_label': node.process_label,
        'state': node.process_state.value if node.process_state else 'created',
        'terminated': node.is_terminated,
        'rows': rows,
        'stages': {stage: _rounded(values) for stage, values in by_stage.items() if values['jobs']},
        'computers': {name: _rounded(values) for name, values in sorted(by_computer.items())},
        'total': _rounded(total),
        'active_learning': learning,
        'wall_time_sources': sources,
    }

