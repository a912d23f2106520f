"""``aiida-mlcampaign campaign``: a whole campaign from one file, ``campaign.yaml`` (docs/campaign.md).

* ``validate FILE`` checks the file (schema and consistency, no AiiDA needed) and prints the plan; with
  ``-p PROFILE`` it also runs the preflight against that profile (codes, computers, pseudopotentials). Every
  problem is printed as ``FILE:LINE: dotted.path: message``; the exit code is 1 when there is one.
* ``launch FILE`` validates, runs the preflight and submits ``mlcampaign.campaign`` to the daemon (``--resume PK``
  reuses every finished stage of an earlier campaign of the same study).
* ``status PK`` shows where a campaign stands, from the graph and the process reports (``--watch``).
* ``report``, ``query`` and ``cost``: see ``cli/campaign_report.py`` and ``cli/campaign_inspect.py``.
"""

from __future__ import annotations

import sys

import click

from aiida_mlcampaign.campaign import CampaignConfig, ConfigError, Problem, load_config


@click.group('campaign', context_settings={'help_option_names': ['-h', '--help']})
def campaign_cli():
    """Campaigns from a campaign.yaml file: validate, launch, status, report, query, cost."""


# ------------------------------------------------------------------------------------------------------ helpers
def echo_problems(problems: list[Problem], source: str) -> None:
    """Errors and warnings, one line each, on stderr."""
    for problem in problems:
        click.secho(problem.format(source), err=True, fg='yellow' if problem.severity == 'warning' else 'red')


def load_or_exit(path: str) -> CampaignConfig:
    """The configuration of ``path``; its problems printed and exit code 1 when it has any."""
    try:
        config = load_config(path)
    except ConfigError as error:
        echo_problems(error.problems, error.source)
        click.echo(f'{error.source}: {len(error.problems)} problem(s)', err=True)
        sys.exit(1)
    echo_problems(config.warnings, config.source)
    return config


def echo_table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> None:
    """Rows as aligned columns (the first row is the header); columns in ``right`` aligned right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        click.echo('  '.join(cells).rstrip())


def _hours(value: float) -> str:
    if value == 0:
        return '-'
    if value < 0.01:
        return '<0.01'
    return f'{value:.2f}' if value < 10 else f'{value:,.0f}'


def echo_plan(config: CampaignConfig) -> None:
    """The plan table of :meth:`CampaignConfig.plan_rows`, with totals and the budgets."""
    plan = config.plan_rows()
    rows = [('stage', 'what', 'DFT calls', 'core-h', 'GPU-h')]
    rows += [(row.stage, row.what, str(row.dft_calls) if row.dft_calls else '-', _hours(row.cpu_hours),
              _hours(row.gpu_hours)) for row in plan]
    cpu, gpu = sum(row.cpu_hours for row in plan), sum(row.gpu_hours for row in plan)
    rows.append(('total', '', str(config.expected_dft_calls()),
                 _hours(cpu), _hours(gpu)))
    budgets = config.budgets
    if any(value is not None for value in (budgets.dft_labels, budgets.cpu_hours, budgets.gpu_hours)):
        rows.append(('budgets', '', '-' if budgets.dft_labels is None else f'{budgets.dft_labels} labels',
                     '-' if budgets.cpu_hours is None else f'{budgets.cpu_hours:g}',
                     '-' if budgets.gpu_hours is None else f'{budgets.gpu_hours:g}'))
    click.echo('')
    echo_table(rows, right=(2, 3, 4))
    click.echo('(hours: crude estimates, see docs/campaign.md "The plan")')


# ----------------------------------------------------------------------------------------------------- commands
@campaign_cli.command('validate')
@click.argument('filename', type=click.Path(dir_okay=False))
@click.option('-p', '--profile', 'profile_name', default=None,
              help='Also check codes, computers and pseudopotentials in this AiiDA profile.')
def validate_command(filename, profile_name):
    """Check the campaign file FILENAME and print the plan; with -p also the preflight against the profile."""
    config = load_or_exit(filename)
    if profile_name is not None:
        from aiida_mlcampaign.setup.campaign_preflight import preflight

        profile = load_profile_or_exit(profile_name)
        problems = preflight(config, profile)
        echo_problems(problems, config.source)
        errors = [problem for problem in problems if problem.severity == 'error']
        if errors:
            click.echo(f'{config.source}: {len(errors)} problem(s) in profile {profile.name!r}', err=True)
            sys.exit(1)
        click.echo(f'config OK: {config.source} (preflight on profile {profile.name!r} passed)')
    else:
        click.echo(f'config OK: {config.source} (schema only; -p PROFILE also checks codes and pseudopotentials)')
    echo_plan(config)


def load_profile_or_exit(profile_name: str | None):
    """Load ``profile_name`` or exit with its problem in words.

    Without a name the profile already loaded in this process is kept (a test's, or ``verdi -p``'s), else the
    default one: switching profiles closes the storage that every loaded node still points to."""
    from aiida import load_profile
    from aiida.manage import get_manager

    if profile_name is None and get_manager().get_profile() is not None:
        return get_manager().get_profile()
    try:
        return load_profile(profile_name, allow_switch=True)
    except Exception as exception:  # noqa: BLE001 - aiida raises several kinds for a missing profile
        raise click.ClickException(f'profile {profile_name!r}: {exception}') from exception


def load_campaign(pk: int):
    """The campaign node ``pk`` (any process of another kind is refused by name)."""
    from aiida import orm

    try:
        node = orm.load_node(pk)
    except Exception as exception:  # noqa: BLE001 - NotExistent, MultipleObjectsError
        raise click.ClickException(f'PK {pk}: {exception}') from exception
    if not (node.process_type or '').endswith('mlcampaign.campaign'):
        raise click.ClickException(f'PK {pk}: {type(node).__name__} <{node.pk}> is not a campaign '
                                   f'(process type {node.process_type!r})')
    return node


def _resume_problems(config: CampaignConfig, previous) -> list[str]:
    from aiida_mlcampaign.workchains.campaign import RESUME_SECTIONS

    before = previous.inputs.config.get_dict()
    now = config.model_dump(mode='json')
    return [section for section in RESUME_SECTIONS if before.get(section) != now.get(section)]


@campaign_cli.command('launch')
@click.argument('filename', type=click.Path(dir_okay=False))
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--resume', 'resume_pk', type=int, default=None,
              help='PK of an earlier campaign of the same study (same material, dft and stages) whose finished '
                   'stages are reused instead of run again.')
@click.option('--no-daemon', is_flag=True, help='Do not start the daemon if it is not running.')
def launch_command(filename, profile_name, resume_pk, no_daemon):
    """Validate FILENAME, run the preflight, and submit the campaign to the daemon; print its PK."""
    config = load_or_exit(filename)
    profile = load_profile_or_exit(profile_name)
    from aiida.engine import submit

    from aiida_mlcampaign.setup.campaign_preflight import preflight
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain

    problems = preflight(config, profile)
    echo_problems(problems, config.source)
    if any(problem.severity == 'error' for problem in problems):
        click.echo(f'{config.source}: not launched; fix the problems above', err=True)
        sys.exit(1)
    resume_from = None
    if resume_pk is not None:
        previous = load_campaign(resume_pk)
        if not previous.is_terminated:
            raise click.ClickException(
                f'campaign <{previous.pk}> is still {previous.process_state.value}: the daemon continues it by itself '
                f'(after a crash: aiida-mlcampaign daemon start -p {profile.name}); nothing to resume')
        differing = _resume_problems(config, previous)
        if differing:
            raise click.ClickException(f'--resume {resume_pk}: the config differs in {", ".join(differing)}; a '
                                       'resumed campaign must share material, dft and stages with the one it resumes')
        resume_from = previous.uuid
    builder = CampaignWorkChain.get_builder_from_config(config, resume_from=resume_from)
    if not no_daemon:
        from aiida.engine.daemon.client import get_daemon_client

        from aiida_mlcampaign.setup.daemon import circus_running, start_daemon

        if not circus_running(get_daemon_client(profile.name)):
            for line in start_daemon(profile).lines():
                click.echo(line)
    node = submit(builder)
    click.echo(f'submitted campaign {config.campaign.name}: CampaignWorkChain<{node.pk}>'
               + (f' (resuming <{resume_pk}>)' if resume_pk is not None else ''))
    click.echo(f'watch it:  aiida-mlcampaign campaign status -p {profile.name} {node.pk} --watch')
    click.echo(f'report:    aiida-mlcampaign campaign report -p {profile.name} {node.pk} -o report-{node.pk}')
    click.echo(f'stop the daemon when done:  verdi -p {profile.name} daemon stop')
    return node


@campaign_cli.command('status')
@click.argument('pk', type=int)
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--watch', 'watch', type=float, default=None, is_flag=False, flag_value=10.0,
              help='Refresh every N seconds (default 10) until the campaign terminates.')
def status_command(pk, profile_name, watch):
    """Where campaign PK stands: stage, active learning per family, jobs per computer, warnings, time."""
    import time

    load_profile_or_exit(profile_name)
    from aiida_mlcampaign.cli.campaign_status import campaign_status, render_status

    while True:
        node = load_campaign(pk)
        status = campaign_status(node)
        if watch is not None:
            click.clear()
        click.echo(render_status(status))
        if watch is None or node.is_terminated:
            break
        time.sleep(watch)


# The other commands of the group, each in its own module (imported last: they import this one).
from aiida_mlcampaign.cli import campaign_inspect, campaign_report  # noqa: E402,F401
