"""A campaign routed over two clusters: its DFT (rattled labels and AIMD, real pw.x with MPI) through SLURM over SSH
on ``cpu-cluster``, its MTP fit (motep) on ``cpu-cluster`` and its NEP committee (neppo) on ``gpu-cluster``'s gpu
partition with the GPU request in the job script; the campaign-wide DFT limit watched from the scheduler's side;
its cost per computer from the graph. Nothing here runs through ``core.local``/``core.direct``."""

import threading
import time

import pytest
from ase.build import bulk

from tests.helpers import require_executable

pytestmark = [pytest.mark.cluster, pytest.mark.pw]

DFT_LIMIT = 1
CONFIG = {
    'campaign': {'name': 'nacl-on-clusters'},
    'material': {'structures': ['nacl.xyz']},
    'dft': {'protocol': 'fast', 'pseudo_family': 'mlcampaign-test-NaCl',
            'overrides': {'kpoints_distance': 1.0,
                          'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}},
    'stages': {'seed': {'rattle': {'count': 3, 'amplitude': 0.05, 'strain': 0.01, 'seed': 3},
                        'aimd': {'temperatures': [900], 'steps': 3, 'time_step_fs': 2.0, 'every': 1,
                                 'segment_steps': 3}},
               'test_set': {'fraction': 0.25},
               'active_learning': {'mtp': {'protocol': 'fast', 'level': 2, 'max_iterations': 0},
                                   'nep': {'protocol': 'fast', 'committee_size': 2, 'generations': 10,
                                           'max_iterations': 0}}},
    # seed labels and AIMD would run side by side; the computer-wide limit lets one pw.x run at a time
    'computers': {'dft': {'code': 'pw@cpu-cluster', 'max_concurrent': DFT_LIMIT, 'max_wallclock_seconds': 900},
                  'mtp_train': {'code': 'motep@cpu-cluster', 'max_wallclock_seconds': 900},
                  'nep_train': {'code': 'neppo@gpu-cluster', 'max_wallclock_seconds': 900}},
}


class QueueWatcher(threading.Thread):
    """``squeue`` every 0.25 s: the largest set of this cluster's jobs seen at once, by job name."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.snapshots, self.stopped = cluster, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.snapshots.append({job['name']: job for job in self.cluster.squeue()})
            time.sleep(0.25)


def test_campaign_runs_on_two_clusters(aiida_profile, local_cluster, cluster_computers, tmp_path_factory):
    require_executable('ld1.x')
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_mlcampaign.campaign.config import parse_config
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain
    from aiida_mlcampaign.workchains.provenance import campaign_cost

    install_pseudo_family(label='mlcampaign-test-NaCl', elements=['Na', 'Cl'],
                          cache_dir=tmp_path_factory.mktemp('pseudo-cache-nacl'))
    cpu, gpu = cluster_computers['cpu-cluster'], cluster_computers['gpu-cluster']
    for name, codes in (('pw.x', cpu), ('motep', cpu), ('neppo', gpu)):
        if name not in codes:
            require_executable(name)
    atoms = bulk('NaCl', 'rocksalt', a=5.64, cubic=True)
    config = parse_config(CONFIG, atoms=[atoms])
    builder = CampaignWorkChain.get_builder()
    builder.config = orm.Dict(config.model_dump(mode='json'))
    builder.structures = {'nacl': orm.StructureData(ase=atoms)}
    builder.codes = {'dft': cpu['pw.x'], 'mtp_train': cpu['motep'], 'nep_train': gpu['neppo']}

    watcher = QueueWatcher(local_cluster)
    watcher.start()
    try:
        _, node = run_get_node(builder)
    finally:
        watcher.stopped.set()
        watcher.join()
    assert node.is_finished_ok, node.exit_message

    # routing: every job ran where its role says, through SLURM over SSH, and the graph says where
    jobs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
    where = {}
    for job in jobs:
        assert job.computer.transport_type == 'core.ssh' and job.computer.scheduler_type == 'core.slurm'
        assert job.get_job_id(), job
        where.setdefault(job.process_type.rsplit(':', 1)[-1], set()).add(job.computer.label)
    assert where == {'quantumespresso.pw': {'cpu-cluster'}, 'mlcampaign.motep.train': {'cpu-cluster'},
                     'mlcampaign.motep.evaluate': {'cpu-cluster'}, 'mlcampaign.nep.train': {'gpu-cluster'}}, where
    pw_jobs = [job for job in jobs if job.process_type.endswith('quantumespresso.pw')]
    assert len(pw_jobs) == 3 + 1  # 3 rattled labels, 1 AIMD segment
    assert node.outputs.seed_set.num_frames == 3 + 3

    # the NEP committee went to the gpu partition with one GPU each, the rest to the cpu partition
    for job in jobs:
        info = local_cluster.scontrol_job(job.get_job_id())
        script = job.base.repository.get_object_content('_aiidasubmit.sh')
        if job.computer.label == 'gpu-cluster':
            assert '#SBATCH --gres=gpu:1' in script and info['Partition'] == 'gpu' and 'gpu:1' in info['TresPerNode']
        else:
            assert info['Partition'] == 'cpu' and 'gpu' not in info.get('TresPerNode', '')
        assert info['JobState'] == 'COMPLETED', (job.pk, info.get('JobState'))
    pw_script = pw_jobs[0].base.repository.get_object_content('_aiidasubmit.sh')
    assert "'mpirun' '-np' '1'" in pw_script

    # throttling: never more pw.x jobs than the limit, seen from squeue and from SLURM's start/end times
    pw_names = {f'aiida-{job.pk}' for job in pw_jobs}
    seen = max(len(pw_names & set(snapshot)) for snapshot in watcher.snapshots)
    assert 1 <= seen <= DFT_LIMIT, seen
    spans = sorted((local_cluster.scontrol_job(job.get_job_id())['StartTime'],
                    local_cluster.scontrol_job(job.get_job_id())['EndTime']) for job in pw_jobs)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans  # ISO times: string order is time order

    # cost per computer from the graph
    cost = campaign_cost(node)
    assert set(cost['computers']) == {'cpu-cluster', 'gpu-cluster'}
    assert cost['computers']['cpu-cluster']['dft_calls'] == len(pw_jobs)
    assert cost['computers']['gpu-cluster']['gpu_hours'] > 0 and cost['computers']['cpu-cluster']['gpu_hours'] == 0
    assert cost['wall_time_sources']['scheduler_poll'] + cost['wall_time_sources']['pw_output'] == len(jobs)
