"""AiiDA computers and codes on the local SLURM cluster (:mod:`aiida_mlcampaign.cluster`).

Why: the campaign routes each stage to a computer by its code (``computers.<role>.code: pw@cpu-cluster``). Two
computers on the one local cluster stand for the two clusters a real campaign uses -- ``cpu-cluster`` (partition
``cpu``: pw.x, motep, exploration, CPU MD) and ``gpu-cluster`` (partition ``gpu``, one GPU per job requested in its
``prepend_text``, as ``setup/templates/computer-slurm-gpu.yaml`` does: NEP training, GPUMD) -- both through aiida-core's
``core.ssh`` transport and ``core.slurm`` scheduler, never ``core.local``/``core.direct``.
"""

from __future__ import annotations

import os

from aiida_mlcampaign.cluster import LocalCluster
from aiida_mlcampaign.setup import profile as profile_setup

__all__ = ('COMPUTERS', 'CODES', 'ensure_cluster_computer', 'setup_cluster')

#: label -> (partition, extra #SBATCH lines, description)
COMPUTERS = {
    'cpu-cluster': ('cpu', (), 'local SLURM over SSH, CPU partition (aiida-mlcampaign cluster)'),
    'gpu-cluster': ('gpu', ('#SBATCH --gres=gpu:1',),
                    'local SLURM over SSH, GPU partition, one GPU per job (aiida-mlcampaign cluster)'),
}
#: computer label -> the programs whose codes are made there
CODES = {
    'cpu-cluster': ('pw.x', 'motep', 'mlcampaign-explore', 'mlcampaign-md', 'mlp', 'lmp'),
    'gpu-cluster': ('neppo', 'nep', 'gpumd'),
}


def ensure_cluster_computer(cluster: LocalCluster, label: str, partition: str, extra=(), description: str = '',
                            poll_interval: float = 1.0):
    """The ``core.ssh`` + ``core.slurm`` computer ``label`` on ``cluster``'s ``partition``, made once and configured
    for the current user; an existing one is re-configured (the cluster's port and key change between starts)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label, hostname='127.0.0.1', description=description, transport_type='core.ssh',
            scheduler_type='core.slurm', workdir=str(cluster.root / 'work' / '{username}'),
        )
        computer.set_shebang('#!/bin/bash')
        # pw.x from Debian is OpenMPI: its mpirun starts the ranks inside the SLURM allocation
        computer.set_mpirun_command(['mpirun', '-np', '{tot_num_mpiprocs}'])
        computer.set_prepend_text('\n'.join([f'#SBATCH --partition={partition}', *extra]))
        computer.store()
        computer.set_default_mpiprocs_per_machine(os.cpu_count() or 1)
        computer.set_minimum_job_poll_interval(poll_interval)
    else:
        if (computer.transport_type, computer.scheduler_type) != ('core.ssh', 'core.slurm'):
            raise ValueError(f'computer {label}: exists with {computer.transport_type} + {computer.scheduler_type}, '
                             'not core.ssh + core.slurm; relabel or delete it first')
    computer.configure(**cluster.transport_settings())
    return computer


def setup_cluster(cluster: LocalCluster, labels=None) -> dict[str, dict]:
    """``cpu-cluster`` and ``gpu-cluster`` (or those in ``labels``) with a code for every program of :data:`CODES`
    found here: ``{computer label: {program: code}}``."""
    made = {}
    for label in labels or COMPUTERS:
        partition, extra, description = COMPUTERS[label]
        computer = ensure_cluster_computer(cluster, label, partition, extra, description)
        wanted = {name: profile_setup.KNOWN_EXECUTABLES[name] for name in CODES[label]}
        made[label] = profile_setup.discover_codes(computer, wanted)
    return made
