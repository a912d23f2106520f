"""``workchains/provenance.py``: the pw.x runs behind any node of a campaign, and its cost per stage.

The graph is built by hand (no process runs): a campaign node calling children with the campaign's call link labels,
pw.x calculations (``CalcJobNode`` of pw's process type), calcfunctions that make training sets of their outputs,
the seed merge, the split and an active-learning iteration's merge. The walk must find exactly the pw.x runs behind
each result through every merge, and no other.
"""

from __future__ import annotations

import datetime as dt
import types
import uuid

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ProcessState
from aiida.schedulers.datastructures import JobInfo

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.workchains import provenance
from aiida_mlcampaign.workchains.provenance import (PW_PROCESS_TYPE, ProvenanceWalker, campaign_cost,
                                                    campaign_stage, dft_calculation_pks, dft_calculations_behind)

PW_BASE = 'aiida.workflows:quantumespresso.pw.base'
SACCT_HEADER = 'JobID|JobName|Elapsed|ElapsedRaw|State'


# ------------------------------------------------------------------------------------------------------ the graph
def _frames(count: int, seed: int) -> TrainingSetData:
    rng = np.random.default_rng(seed)
    frames = [Frame(symbols=['Cu', 'Cu', 'S', 'S'], cell=np.eye(3) * 4.1, positions=rng.uniform(0, 4.1, (4, 3)),
                    energy=-1.0, forces=np.zeros((4, 3))) for _ in range(count)]
    return TrainingSetData.from_frames(frames)


def _structure(shift: float = 0.0) -> orm.StructureData:
    structure = orm.StructureData(cell=np.eye(3) * 4.1)
    for symbol, position in (('Cu', (0, 0, 0)), ('Cu', (2.05, 2.05, 0)), ('S', (2.05, 0, 2.05)),
                             ('S', (0, 2.05 + shift, 2.05))):
        structure.append_atom(symbols=symbol, position=position)
    return structure


def _link_inputs(node, inputs: dict | None, link_type) -> None:
    for label, value in (inputs or {}).items():
        if not value.is_stored:
            value.store()
        node.base.links.add_incoming(value, link_type=link_type, link_label=label)


def _outputs(node, outputs: dict, link_type=LinkType.CREATE) -> None:
    for label, value in outputs.items():
        value.base.links.add_incoming(node, link_type=link_type, link_label=label)
        if not value.is_stored:
            value.store()


def workflow(process_type: str, label: str | None = None, caller=None, inputs: dict | None = None,
             state=ProcessState.FINISHED) -> orm.WorkChainNode:
    node = orm.WorkChainNode()
    node.set_process_type(process_type)
    node.set_process_label(process_type.rsplit(':', 1)[-1])
    node.set_process_state(state)
    if state == ProcessState.FINISHED:
        node.set_exit_status(0)
    if caller is not None:
        node.base.links.add_incoming(caller, link_type=LinkType.CALL_WORK, link_label=label)
    _link_inputs(node, inputs, LinkType.INPUT_WORK)
    return node.store()


def calcfunction(label: str, caller, inputs: dict, outputs: dict) -> orm.CalcFunctionNode:
    node = orm.CalcFunctionNode()
    node.set_process_type(f'aiida.calculations:mlcampaign.{label}')
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(0)
    if caller is not None:
        node.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label=label)
    _link_inputs(node, inputs, LinkType.INPUT_CALC)
    node.store()
    _outputs(node, outputs)
    return node


def calcjob(process_type: str, computer, label: str, caller, inputs: dict, *, mpiprocs: int = 1, outputs=None,
            state=ProcessState.FINISHED, exit_status: int = 0, options: dict | None = None,
            age_seconds: float | None = None, last_poll_seconds: int | None = None,
            sacct: str | None = None) -> orm.CalcJobNode:
    """A CalcJobNode as the engine leaves it: options, state, and what the scheduler told (age_seconds: its
    ctime that long ago; last_poll_seconds: last_job_info; sacct: a detailed_job_info row after SACCT_HEADER)."""
    node = orm.CalcJobNode(computer=computer, process_type=process_type)
    node.set_process_label(process_type.rsplit('.', 1)[-1])
    node.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': mpiprocs})
    for key, value in (options or {}).items():
        node.set_option(key, value)
    node.set_process_state(state)
    if state == ProcessState.FINISHED:
        node.set_exit_status(exit_status)
    if age_seconds is not None:
        node.backend_entity.bare_model.ctime = node.ctime - dt.timedelta(seconds=age_seconds)
    if last_poll_seconds is not None:
        info = JobInfo()
        info.job_id, info.wallclock_time_seconds = '1', last_poll_seconds
        node.set_last_job_info(info)
    if sacct is not None:
        node.set_detailed_job_info({'retval': 0, 'stdout': f'{SACCT_HEADER}\n{sacct}\n1.batch|batch|x|1|COMPLETED',
                                    'stderr': ''})
    node.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label=label)
    _link_inputs(node, inputs, LinkType.INPUT_CALC)
    node.store()
    _outputs(node, outputs or {})
    return node


def pw(computer, label: str, caller, structure, *, wall: float, mpiprocs: int = 2, parent_folder=None,
       exit_status: int = 0) -> orm.CalcJobNode:
    """A PwCalculation: its structure in, output_parameters (with pw.x's wall time) and a remote folder out."""
    inputs = {'structure': structure, 'parameters': orm.Dict({'CONTROL': {'calculation': 'scf'}})}
    if parent_folder is not None:
        inputs['parent_folder'] = parent_folder
    outputs = {'output_parameters': orm.Dict({'energy': -1.0, 'wall_time_seconds': wall}),
               'remote_folder': orm.RemoteData(remote_path='/tmp/pw', computer=computer)}
    return calcjob(PW_PROCESS_TYPE, computer, label, caller, inputs, mpiprocs=mpiprocs, outputs=outputs,
                   exit_status=exit_status)


def build_campaign(cpu, gpu) -> types.SimpleNamespace:
    """A campaign half way: relaxed, seeded (labels with a restarted pw.x, AIMD), split, one MTP iteration
    labelled and merged, final fits on a CPU and a GPU computer, an MD run still running."""
    g = types.SimpleNamespace()
    g.structure = _structure().store()
    g.campaign = workflow('aiida.workflows:mlcampaign.campaign', inputs={'structures__Cu2S2': g.structure},
                          state=ProcessState.RUNNING)

    # relax: PwBaseWorkChain -> pw.x
    g.relax = workflow(PW_BASE, 'relax_Cu2S2', g.campaign, {'pw__structure': g.structure})
    g.relaxed = _structure(0.05)
    g.pw_relax = pw(cpu, 'iteration_01', g.relax, g.structure, wall=360, mpiprocs=4)
    _outputs(g.pw_relax, {'output_structure': g.relaxed})
    _outputs(g.relax, {'output_structure': g.relaxed}, LinkType.RETURN)

    # seed: supercell, rattle, dft.label (one pw.x failed, restarted from its folder), AIMD, seed merge
    g.supercell = _structure(0.1)
    calcfunction('supercell_Cu2S2', g.campaign, {'structure': g.relaxed}, {'result': g.supercell})
    g.rattled_a, g.rattled_b = _structure(0.2), _structure(0.3)
    calcfunction('rattle_Cu2S2', g.campaign, {'structure': g.supercell},
                 {'rattled_00': g.rattled_a, 'rattled_01': g.rattled_b})
    g.seed_label = workflow('aiida.workflows:mlcampaign.dft.label', 'seed_label', g.campaign,
                            {'structures__a': g.rattled_a, 'structures__b': g.rattled_b})
    base_a = workflow(PW_BASE, 'label_a', g.seed_label)
    g.pw_a = pw(cpu, 'iteration_01', base_a, g.rattled_a, wall=100)
    base_b = workflow(PW_BASE, 'label_b', g.seed_label)
    g.pw_b_failed = pw(cpu, 'iteration_01', base_b, g.rattled_b, wall=50, exit_status=400)
    g.pw_b = pw(cpu, 'iteration_02', base_b, g.rattled_b, wall=150,
                parent_folder=g.pw_b_failed.outputs.remote_folder)
    g.seed_set = _frames(2, 1)
    calcfunction('training_set_from_pw', g.seed_label, {'a': g.pw_a.outputs.output_parameters,
                                                        'b': g.pw_b.outputs.output_parameters},
                 {'result': g.seed_set})
    _outputs(g.seed_label, {'training_set': g.seed_set}, LinkType.RETURN)
    g.aimd = workflow('aiida.workflows:mlcampaign.dft.aimd', 'seed_aimd_Cu2S2_300K', g.campaign,
                      {'structure': g.supercell})
    g.pw_aimd = pw(cpu, 'md', g.aimd, g.supercell, wall=1800)
    g.aimd_set = _frames(3, 2)
    calcfunction('training_set_from_pw', g.aimd, {'a': g.pw_aimd.outputs.output_parameters}, {'result': g.aimd_set})
    _outputs(g.aimd, {'training_set': g.aimd_set}, LinkType.RETURN)
    g.pool = _frames(5, 3)
    calcfunction('seed_merge', g.campaign, {'set_0_label': g.seed_set, 'set_1_aimd': g.aimd_set}, {'result': g.pool})

    # test_set: split
    g.train, g.test = _frames(4, 4), _frames(1, 5)
    calcfunction('split', g.campaign, {'training_set': g.pool}, {'train': g.train, 'test': g.test})

    # active learning: one MTP iteration (train, explore), its labels and the merge, still running
    g.loop = workflow('aiida.workflows:mlcampaign.al.loop', 'al_mtp', g.campaign, {'training_set': g.train},
                      state=ProcessState.RUNNING)
    iteration = workflow('aiida.workflows:mlcampaign.al.mtp', 'iteration_01_mtp', g.loop, {'training_set': g.train})
    g.potential_1, g.statistics_1 = orm.SinglefileData.from_string('mtp 1', 'pot.mtp'), orm.Dict(
        {'explored_frames': 100, 'candidates': 10, 'candidate_fraction': 0.1, 'selected': 4})
    g.train_job = calcjob('aiida.calculations:mlcampaign.motep.train', cpu, 'train', iteration,
                          {'training_set': g.train}, mpiprocs=2, last_poll_seconds=1800,
                          outputs={'potential': g.potential_1, 'statistics': g.statistics_1})
    g.selected = _structure(0.4)
    g.explore_job = calcjob('aiida.calculations:mlcampaign.mtp.explore', cpu, 'explore', iteration,
                            {'potential': g.potential_1, 'structure': g.supercell}, age_seconds=600,
                            outputs={'selected': g.selected})
    _outputs(iteration, {'statistics': g.statistics_1, 'selected__s0': g.selected}, LinkType.RETURN)
    _outputs(g.loop, {'iterations__iteration_01__statistics': g.statistics_1}, LinkType.RETURN)
    label_1 = workflow('aiida.workflows:mlcampaign.dft.label', 'iteration_01_label', g.loop,
                       {'structures__s0': g.selected})
    g.pw_al = pw(cpu, 'label_s0', label_1, g.selected, wall=200)
    g.new_frames = _frames(1, 6)
    calcfunction('training_set_from_pw', label_1, {'a': g.pw_al.outputs.output_parameters}, {'result': g.new_frames})
    _outputs(label_1, {'training_set': g.new_frames}, LinkType.RETURN)
    g.train_1 = _frames(5, 7)
    calcfunction('iteration_01_merge', g.loop, {'set_0_previous': g.train, 'set_1_added': g.new_frames},
                 {'result': g.train_1})
    _outputs(g.loop, {'training_set': g.train_1}, LinkType.RETURN)

    # final fits: MTP on the CPU computer (SLURM accounting), NEP on two GPUs
    final_mtp = workflow('aiida.workflows:mlcampaign.al.mtp', 'final_mtp', g.campaign, {'training_set': g.train_1})
    g.potential_mtp = orm.SinglefileData.from_string('mtp final', 'pot.mtp')
    calcjob('aiida.calculations:mlcampaign.motep.train', cpu, 'train', final_mtp, {'training_set': g.train_1},
            mpiprocs=4, sacct='1|motep|01:00:00|3600|COMPLETED', outputs={'potential': g.potential_mtp})
    final_nep = workflow('aiida.workflows:mlcampaign.al.nep', 'final_nep', g.campaign, {'training_set': g.train_1})
    g.potential_nep = orm.SinglefileData.from_string('nep final', 'nep.txt')
    calcjob('aiida.calculations:mlcampaign.nep.train', gpu, 'train', final_nep, {'training_set': g.train_1},
            options={'custom_scheduler_commands': '#SBATCH --gpus-per-node=2'}, sacct='1|nep|1-00:00:00|x|COMPLETED',
            outputs={'potential': g.potential_nep})
    _outputs(g.campaign, {'potentials__mtp': g.potential_mtp, 'potentials__nep': g.potential_nep,
                          'structures__Cu2S2': g.supercell}, LinkType.RETURN)

    # md: still running, nothing known of its wall time yet
    md = orm.CalcJobNode(computer=cpu, process_type='aiida.calculations:mlcampaign.md.cpu')
    md.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': 2})
    md.set_process_state(ProcessState.RUNNING)
    md.base.links.add_incoming(g.campaign, link_type=LinkType.CALL_CALC, link_label='md_mtp_300K')
    _link_inputs(md, {'potential': g.potential_mtp, 'structure': g.supercell}, LinkType.INPUT_CALC)
    g.md = md.store()

    # a pw.x run of another study: behind nothing here
    other = workflow(PW_BASE)
    g.pw_unrelated = pw(cpu, 'iteration_01', other, _structure(0.5), wall=999)
    return g


def _computer(label: str, scheduler: str = 'core.direct') -> orm.Computer:
    computer = orm.Computer(label=f'{label}-{uuid.uuid4().hex[:8]}', hostname='localhost', transport_type='core.local',
                            scheduler_type=scheduler, workdir='/tmp/aiida-provenance-test').store()
    computer.set_default_mpiprocs_per_machine(4)
    return computer


@pytest.fixture(scope='module')
def graph(aiida_profile):
    g = build_campaign(_computer('cpu'), _computer('gpu', 'core.slurm'))
    g.seed_pks = [g.pw_relax.pk, g.pw_a.pk, g.pw_b_failed.pk, g.pw_b.pk]
    g.pool_pks = sorted(g.seed_pks + [g.pw_aimd.pk])
    g.all_pks = sorted(g.pool_pks + [g.pw_al.pk])
    return g


# ----------------------------------------------------------------------------------------------------- the walk
def test_a_merged_training_set_leads_to_every_pw_run_behind_it(graph):
    # what the README's fixed path (set <- calcfunction <- output <- PwCalculation) finds: nothing behind a merge
    query = orm.QueryBuilder()
    query.append(orm.Node, filters={'id': graph.train_1.pk}, tag='set')
    query.append(orm.CalcFunctionNode, with_outgoing='set', tag='collect')
    query.append(orm.Dict, with_outgoing='collect', tag='parameters')
    query.append(orm.CalcJobNode, with_outgoing='parameters', project='id')
    assert query.all(flat=True) == []

    found = dft_calculations_behind(graph.train_1)
    assert [node.pk for node in found] == graph.all_pks
    assert all(isinstance(node, orm.CalcJobNode) and node.process_type == PW_PROCESS_TYPE for node in found)
    assert graph.pw_unrelated.pk not in [node.pk for node in found]


@pytest.mark.parametrize('name, expected', [
    ('seed_set', 'seed_pks'),  # labels: the two pw.x runs, the failed one restarted from, and the relaxation
    ('pool', 'pool_pks'),  # seed merge: + the AIMD
    ('train', 'pool_pks'),  # the split of the pool
    ('test', 'pool_pks'),
    ('new_frames', 'all_pks'),  # AL labels: chosen by an exploration with a potential fitted to the pool
    ('potential_mtp', 'all_pks'),  # the final fit, on the merged set
    ('campaign', 'all_pks'),  # a running workflow: what it has run so far
    ('seed_label', 'seed_pks'),  # a workflow: its called pw.x runs and the provenance of its inputs
])
def test_pw_runs_behind_each_kind_of_node(graph, name, expected):
    assert dft_calculation_pks(getattr(graph, name)) == getattr(graph, expected)


def test_a_pw_run_is_behind_itself_and_its_restart_behind_the_failed_one(graph):
    assert dft_calculation_pks(graph.pw_b_failed) == sorted([graph.pw_b_failed.pk, graph.pw_relax.pk])
    assert dft_calculation_pks(graph.pw_b.pk) == sorted([graph.pw_b_failed.pk, graph.pw_b.pk, graph.pw_relax.pk])
    assert dft_calculation_pks(graph.structure) == []


def test_limit_loads_the_lowest_pks_and_a_walker_reuses_what_it_read(graph, monkeypatch):
    assert [node.pk for node in dft_calculations_behind(graph.train_1, limit=2)] == graph.all_pks[:2]
    assert dft_calculations_behind(graph.train_1, limit=0) == []

    walker = ProvenanceWalker()
    assert walker.pw_pks(graph.train_1) == graph.all_pks
    queries = []
    original = orm.QueryBuilder.iterall
    monkeypatch.setattr(orm.QueryBuilder, 'iterall', lambda self, *a, **k: queries.append(1) or original(self, *a, **k))
    assert walker.pw_pks(graph.pool) == graph.pool_pks  # every parent below train_1 already read
    assert queries == []


def test_the_walk_is_one_query_per_layer(graph, monkeypatch):
    queries = []
    original = orm.QueryBuilder.iterall
    monkeypatch.setattr(orm.QueryBuilder, 'iterall', lambda self, *a, **k: queries.append(1) or original(self, *a, **k))
    dft_calculation_pks(graph.campaign)
    assert len(queries) < 30  # ~ the depth of the graph, not its ~120 nodes


# ------------------------------------------------------------------------------------------------------- stages
@pytest.mark.parametrize('label, stage', [
    ('relax_Cu2S2', 'relax'), ('supercell_Cu2S2', 'seed'), ('rattle_Cu2S2', 'seed'), ('seed_label', 'seed'),
    ('seed_aimd_Cu2S2_300K', 'seed'), ('seed_merge', 'seed'), ('split', 'test_set'), ('al_mtp', 'active_learning'),
    ('al_nep', 'active_learning'), ('final_nep', 'final_fit'), ('predict_mtp', 'errors'),
    ('compare_errors', 'errors'), ('md_nep_300K', 'md'), ('md_structure', 'md'), ('rdf_mtp_300K', 'analysis'),
    ('rdf_compare_mtp_300K', 'analysis'), ('vdos_compare_300K', 'analysis'), ('msd_nep_600K', 'analysis'),
    ('diffusion_nep_600K', 'analysis'), ('arrhenius_mtp_Cu', 'analysis'), ('speed', 'analysis'),
    ('report', 'report'), ('CALL', 'other'), ('splitting', 'other'),
])
def test_campaign_stage(label, stage):
    assert campaign_stage(label) == stage


def test_stages_are_those_of_the_campaign():
    from aiida_mlcampaign.workchains.campaign import STAGES

    assert set(provenance.STAGES) - {'other'} <= set(STAGES)


# --------------------------------------------------------------------------------------------------------- cost
def _row(cost, stage, computer):
    (row,) = [row for row in cost['rows'] if row['stage'] == stage and row['computer'] == computer]
    return row


def test_cost_of_a_running_campaign_then_of_its_finished_loop(graph):
    cpu, gpu = graph.pw_relax.computer.label, graph.potential_nep.creator.computer.label
    cost = campaign_cost(graph.campaign)
    assert cost['state'] == 'running' and not cost['terminated']
    assert [(row['stage'], row['computer']) for row in cost['rows']] == [
        ('relax', cpu), ('seed', cpu), ('active_learning', cpu), ('final_fit', cpu), ('final_fit', gpu), ('md', cpu)]
    relax = _row(cost, 'relax', cpu)
    assert (relax['jobs'], relax['dft_calls'], relax['core_hours'], relax['gpu_hours']) == (1, 1, 0.4, 0.0)
    seed = _row(cost, 'seed', cpu)
    assert (seed['jobs'], seed['dft_calls']) == (4, 4)  # the failed run counts: it used the machine
    assert seed['core_hours'] == pytest.approx((100 + 50 + 150 + 1800) * 2 / 3600, abs=1e-6)
    learning = _row(cost, 'active_learning', cpu)
    assert (learning['jobs'], learning['dft_calls']) == (3, 1)
    # train: last scheduler poll 1800 s x 2; explore: ctime-mtime 600 s x 1 (default 1 rank); pw.x 200 s x 2
    assert learning['core_hours'] == pytest.approx((1800 * 2 + 600 + 200 * 2) / 3600, abs=2e-3)
    assert _row(cost, 'final_fit', cpu)['core_hours'] == pytest.approx(4.0)  # sacct ElapsedRaw 3600 s x 4
    nep = _row(cost, 'final_fit', gpu)
    assert (nep['core_hours'], nep['gpu_hours']) == (pytest.approx(24.0), pytest.approx(48.0))  # Elapsed 1-00:00:00
    md = _row(cost, 'md', cpu)
    assert (md['jobs'], md['running'], md['core_hours']) == (1, 1, 0.0)
    assert cost['total']['dft_calls'] == 6 and cost['total']['jobs'] == 11  # not the unrelated pw.x run
    assert cost['stages']['final_fit']['gpu_hours'] == pytest.approx(48.0)
    assert set(cost['computers']) == {cpu, gpu}
    assert cost['wall_time_sources'] == {'pw_output': 6, 'scheduler_accounting': 2, 'scheduler_poll': 1,
                                         'ctime_mtime': 1, 'none': 1}
    loop = cost['active_learning']['mtp']
    assert loop['source'] == 'iterations' and loop['state'] == 'running'
    assert (loop['iterations'], loop['explored_frames'], loop['candidates'], loop['selected'],
            loop['labels_added'], loop['dft_calls']) == (1, 100, 10, 4, 1, 1)

    # the loop finishes: its summary (flat rows, or with the statistics nested) is read instead
    summary = orm.List([
        {'iteration': 1, 'explored_frames': 100, 'candidates': 10, 'candidate_fraction': 0.1, 'selected': 4,
         'labels_added': 1},
        {'iteration': 2, 'statistics': {'explored_frames': 50, 'candidates': 0, 'selected': 0}, 'labels_added': 0},
    ])
    calcfunction('record_summary', graph.loop, {}, {'summary': summary})
    _outputs(graph.loop, {'summary': summary}, LinkType.RETURN)
    loop = campaign_cost(graph.campaign)['active_learning']['mtp']
    assert loop['source'] == 'summary'
    assert (loop['iterations'], loop['explored_frames'], loop['candidates'], loop['selected'],
            loop['labels_added']) == (2, 150, 10, 4, 1)
    assert [row['iteration'] for row in loop['rows']] == [1, 2]


def test_gpus_of_a_job():
    job = {'process_type': 'aiida.calculations:mlcampaign.md.cpu'}
    assert provenance._gpus(job, '', 1, None) == 0
    assert provenance._gpus({**job, 'custom_scheduler_commands': '#SBATCH --gres=gpu:a100:4'}, '', 2, None) == 8
    assert provenance._gpus(job, '#SBATCH --partition=gpu\n#SBATCH --gpus-per-node=1\n', 1, None) == 1
    assert provenance._gpus({**job, 'cuda_visible_devices': '0,1'}, '', 1, None) == 2
    assert provenance._gpus({'process_type': 'aiida.calculations:mlcampaign.gpumd.md'}, '', 1, None) == 1


def test_accounted_seconds():
    header = 'JobID|Elapsed|ElapsedRaw'
    assert provenance._accounted_seconds({'retval': 0, 'stdout': f'{header}\n7|00:01:40|100\n'}) == 100
    assert provenance._accounted_seconds({'retval': 0, 'stdout': 'JobID|Elapsed\n7|2-01:00:05\n'}) == 49 * 3600 + 5
    assert provenance._accounted_seconds({'retval': 1, 'stdout': f'{header}\n7|00:01:40|100\n'}) is None
    assert provenance._accounted_seconds({'retval': 0, 'stdout': 'no accounting'}) is None
    assert provenance._accounted_seconds(None) is None
