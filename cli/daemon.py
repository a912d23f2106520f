"""``aiida-mlcampaign daemon start|restart|status``: the daemon, brought back from a crash and checked."""

from __future__ import annotations

import click

from aiida_mlcampaign.cli.params import PROFILE


@click.group('daemon')
def daemon_cli():
    """Start the daemon so that it survives a crash (SIGKILL, out-of-memory kill, sleep, reboot).

    After a crash, `aiida-mlcampaign daemon start` is the one command that brings all work back: it kills daemon
    processes that outlived their circus, clears a dead ZeroMQ broker's files, starts the daemon and waits until
    every worker has subscribed to the broker (restarting once if one has not), then queues again the unfinished
    processes whose task a ZeroMQ broker lost (a kill right after a submission).
    """


def _report(result) -> None:
    for line in result.lines():
        click.echo(line)
    if not result.ok:
        raise click.exceptions.Exit(1)


def _start_options(command):
    command = click.option('--timeout', type=click.FloatRange(min=1.0), default=60.0, show_default=True,
                           help='Seconds to wait for the workers to subscribe to the broker.')(command)
    command = click.argument('workers', type=click.IntRange(min=1), default=1)(command)
    return PROFILE(command)


def _profile():
    from aiida import load_profile
    from aiida.manage import get_manager

    return get_manager().get_profile() or load_profile()


def _start(workers, timeout, restart):
    from aiida_mlcampaign.setup.daemon import start_daemon

    _report(start_daemon(_profile(), workers, timeout=timeout, restart=restart))


@daemon_cli.command('start')
@_start_options
def start_command(workers, timeout):
    """Start the daemon with WORKERS workers (after a crash: clean up first), checked."""
    _start(workers, timeout, restart=False)


@daemon_cli.command('restart')
@_start_options
def restart_command(workers, timeout):
    """Stop the daemon (if it runs) and start it again with WORKERS workers, checked."""
    _start(workers, timeout, restart=True)


@daemon_cli.command('status')
@PROFILE
def status_command():
    """The daemon and, on the embedded profile, what the broker reports (subscribers, pending tasks).

    On the embedded profile it first wakes the broker (a connection that hangs up), so that tasks it still holds
    for a worker that was killed go back to the queue: aiida-core's ZeroMQ broker looks for dead workers only
    when a connection drops, and can miss one."""
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_mlcampaign.setup.daemon import broker_status, circus_running, lost_processes, wake_broker

    profile = _profile()
    running = circus_running(get_daemon_client(profile.name))
    click.echo(f'profile {profile.name}: daemon {"running" if running else "not running"}')
    if running and broker_status(profile) is not None:
        wake_broker(profile)
    status = broker_status(profile)
    if status is not None:
        click.echo(f'ZeroMQ broker pid {status["pid"]}: {status.get("task_subscribers")} task subscriber(s), '
                   f'{status.get("pending_tasks")} pending and {status.get("processing_tasks")} processing task(s)')
    elif 'zeromq' in (profile.process_control_backend or ''):
        click.echo('ZeroMQ broker: not running')
    lost = lost_processes(profile)
    if lost:
        click.echo(f'{len(lost)} unfinished process(es) with no task in the broker, which nothing will continue: '
                   f'{" ".join(map(str, lost))}; `aiida-mlcampaign daemon start` queues them again')
    if not running:
        raise click.exceptions.Exit(1)
