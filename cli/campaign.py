"""``aiida-mlcampaign campaign``: a whole campaign from one file, ``campaign.yaml`` (docs/campaign.md).

``validate FILE`` checks the file (schema and consistency, no AiiDA needed) and prints the plan; with
``-p PROFILE`` it also runs the preflight against that profile (codes, computers, pseudopotentials).
Every problem is printed as ``FILE:LINE: dotted.path: message``; the exit code is 1 when there is one.
"""

from __future__ import annotations

import sys

import click

from aiida_mlcampaign.campaign import CampaignConfig, ConfigError, Problem, load_config


@click.group('campaign', context_settings={'help_option_names': ['-h', '--help']})
def campaign_cli():
    """Campaigns from a campaign.yaml file: validate (more to come)."""


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
        from aiida import load_profile

        from aiida_mlcampaign.setup.campaign_preflight import preflight

        try:
            profile = load_profile(profile_name, allow_switch=True)
        except Exception as exception:  # noqa: BLE001 - aiida raises several kinds for a missing profile
            raise click.ClickException(f'profile {profile_name!r}: {exception}') from exception
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
