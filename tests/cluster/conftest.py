"""The local SLURM cluster over SSH (``aiida_mlcampaign.cluster``), started once per test process.

Each pytest-xdist worker that runs a test of this folder starts its own cluster (own folder, own free ports for
sshd, slurmctld and slurmd), and stops it when the worker's session ends. Without the Debian packages, or not as
root, the tests skip on a laptop and fail under ``CI=true`` (``.ci/run`` installs the packages).
"""

import pytest

from tests.helpers import _missing


@pytest.fixture(scope='session')
def local_cluster(tmp_path_factory):
    from aiida_mlcampaign.cluster import ClusterError, LocalCluster, free_port

    cluster = LocalCluster(tmp_path_factory.mktemp('cluster'), ssh_port=free_port(), slurmctld_port=free_port(),
                           slurmd_port=free_port())
    try:
        cluster.start()
    except ClusterError as exception:
        cluster.stop()
        _missing(f'the local SLURM cluster did not start: {exception}')
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_computers(aiida_profile, local_cluster):
    """``cpu-cluster`` and ``gpu-cluster`` on the local cluster (core.ssh + core.slurm) with their codes."""
    from aiida_mlcampaign.setup.cluster import setup_cluster

    return setup_cluster(local_cluster)


def wait_for_jobs(cluster, job_ids, timeout=120):
    """Wait until none of ``job_ids`` is in squeue; their final states from scontrol."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not {job['job_id'] for job in cluster.squeue()} & set(job_ids):
            break
        time.sleep(0.5)
    return {job_id: cluster.scontrol_job(job_id) for job_id in job_ids}
