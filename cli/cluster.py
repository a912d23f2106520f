"""``aiida-mlcampaign cluster start|stop|status``: a real SLURM over SSH on this machine, to rehearse a campaign.

See ``docs/local-cluster.md``: start it, point a campaign's roles at ``pw@cpu-cluster`` and ``neppo@gpu-cluster``,
and its jobs go through ``sbatch`` over SSH as they would on a real cluster.
"""

from __future__ import annotations

import pathlib

import click

from aiida_mlcampaign.cli.params import PROFILE

DEFAULT_DIR = pathlib.Path.home() / '.aiida-mlcampaign' / 'cluster'
_DIR = click.option('--dir', 'root', type=click.Path(file_okay=False, path_type=pathlib.Path), default=DEFAULT_DIR,
                    show_default=True, help='Folder with the cluster\'s configuration, keys, state, logs and jobs.')


@click.group('cluster')
def cluster_cli():
    """A local SLURM cluster (munge, slurmctld, slurmd) behind sshd on 127.0.0.1, with AiiDA computers on it."""


@cluster_cli.command('start')
@_DIR
@click.option('--ssh-port', type=click.IntRange(1, 65535), default=2299, show_default=True,
              help='Port of the login node\'s sshd on 127.0.0.1.')
@click.option('--slurm-ports', type=(click.IntRange(1, 65535), click.IntRange(1, 65535)), default=(6817, 6818),
              show_default=True, help='slurmctld and slurmd ports.')
@click.option('--gpus', type=click.IntRange(0, 64), default=2, show_default=True,
              help='Count-only GPUs the node declares (for --gres=gpu:N requests; no device behind them).')
@click.option('--computers/--no-computers', default=True, show_default=True,
              help='Create (or re-configure) the AiiDA computers cpu-cluster and gpu-cluster and their codes.')
@PROFILE
def start(root, ssh_port, slurm_ports, gpus, computers):
    """Start the cluster (or the parts of it not running) and set up its AiiDA computers."""
    from aiida_mlcampaign.cluster import ClusterError, LocalCluster

    try:
        cluster = LocalCluster.load(root)
    except ClusterError:
        cluster = LocalCluster(root, ssh_port=ssh_port, slurmctld_port=slurm_ports[0],
                               slurmd_port=slurm_ports[1], gpus=gpus)
    try:
        cluster.start()
    except ClusterError as exception:
        raise click.ClickException(str(exception)) from exception
    click.echo(f'local SLURM cluster running in {cluster.root}: partitions cpu and gpu ({cluster.gpus} GPUs), '
               f'login ssh -p {cluster.ssh_port} {cluster.username}@127.0.0.1')
    click.echo(f'  on this machine: export SLURM_CONF={cluster.slurm_conf}')
    if computers:
        from aiida import load_profile
        from aiida.manage import get_manager

        from aiida_mlcampaign.setup.cluster import setup_cluster

        profile = get_manager().get_profile() or load_profile()
        try:
            made = setup_cluster(cluster)
        except ValueError as exception:
            raise click.ClickException(str(exception)) from exception
        for label, codes in made.items():
            names = ', '.join(code.full_label for code in codes.values()) or 'no codes (no program found)'
            click.echo(f'  computer {label} in profile {profile.name}: {names}')


@cluster_cli.command('stop')
@_DIR
def stop(root):
    """Stop the cluster's daemons (running jobs are cancelled)."""
    from aiida_mlcampaign.cluster import ClusterError, LocalCluster

    try:
        LocalCluster.load(root).stop()
    except ClusterError as exception:
        raise click.ClickException(str(exception)) from exception
    click.echo(f'local cluster in {root} stopped')


@cluster_cli.command('status')
@_DIR
def status(root):
    """Which of the cluster's daemons run, and its jobs."""
    from aiida_mlcampaign.cluster import ClusterError, LocalCluster

    try:
        cluster = LocalCluster.load(root)
    except ClusterError as exception:
        raise click.ClickException(str(exception)) from exception
    running = cluster.status()
    for daemon, alive in running.items():
        click.echo(f'{daemon:10s} {"running" if alive else "stopped"}')
    if running['slurmctld']:
        for job in cluster.squeue():
            click.echo(f'job {job["job_id"]:>6s} {job["partition"]:4s} {job["state"]:10s} {job["name"]}')
    if not all(running.values()):
        raise click.exceptions.Exit(1)
