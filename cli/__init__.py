"""The ``aiida-mlcampaign`` command (click, like ``verdi``): ``setup``, ``quickstart``, ``daemon``, ``data``
and ``structures``, and the ``verdi data mlcampaign`` plugin."""

from __future__ import annotations

import click

from aiida_mlcampaign.cli.campaign import campaign_cli
from aiida_mlcampaign.cli.cluster import cluster_cli
from aiida_mlcampaign.cli.daemon import daemon_cli
from aiida_mlcampaign.cli.data import data_cli
from aiida_mlcampaign.cli.structures import structures_cli

DEFAULT_FAMILY = 'PSL-US-1.0.0-PBE-mlcampaign'


@click.group(context_settings={'help_option_names': ['-h', '--help']})
def cli():
    """Machine-learned-potential campaigns with AiiDA: set up, label, export."""


cli.add_command(campaign_cli, name='campaign')
cli.add_command(cluster_cli, name='cluster')
cli.add_command(daemon_cli, name='daemon')
cli.add_command(data_cli, name='data')
cli.add_command(structures_cli, name='structures')


@cli.command('setup')
@click.option('--profile', 'profile_name', default='mlcampaign', show_default=True,
              help='AiiDA profile to create or reuse.')
@click.option('--storage', type=click.Choice(['sqlite', 'psql']), default='sqlite', show_default=True,
              help='sqlite: embedded core.sqlite_dos; psql: core.psql_dos on PostgreSQL.')
@click.option('--broker', type=click.Choice(['zeromq', 'rabbitmq', 'none']), default='zeromq', show_default=True,
              help="zeromq: aiida-core's built-in broker (no service); rabbitmq: a RabbitMQ server.")
@click.option('--db-host', default='127.0.0.1', show_default=True, help='PostgreSQL host (with --storage psql).')
@click.option('--db-port', default=5432, show_default=True, help='PostgreSQL port.')
@click.option('--db-user', default='aiida_mlcampaign', show_default=True, help='PostgreSQL role to create or reuse.')
@click.option('--db-password', default='aiida_mlcampaign', show_default=True, help='Password of that role.')
@click.option('--db-name', default='', help='Database name (default aiida_<profile>).')
@click.option('--db-superuser', default='postgres', show_default=True,
              help='Role used to create the role and database (trust or peer auth).')
@click.option('--broker-host', default='127.0.0.1', show_default=True, help='RabbitMQ host.')
@click.option('--broker-port', default=5672, show_default=True, help='RabbitMQ port.')
@click.option('--broker-user', default='guest', show_default=True, help='RabbitMQ user.')
@click.option('--broker-password', default='guest', show_default=True, help='RabbitMQ password.')
@click.option('--pseudo-family', default=DEFAULT_FAMILY, show_default=True, help='Label of the pseudopotential family.')
@click.option('--elements', default='',
              help='Comma-separated elements for the family (default: those of the existing family, else all).')
@click.option('--skip-pseudos', is_flag=True, help='Do not generate or install pseudopotentials.')
@click.option('--mpiprocs', type=int, default=None, help='Default MPI ranks per machine on localhost (default: cores).')
def setup_command(profile_name, storage, broker, db_host, db_port, db_user, db_password, db_name, db_superuser,
                  broker_host, broker_port, broker_user, broker_password, pseudo_family, elements, skip_pseudos,
                  mpiprocs):
    """Create or reuse the profile, localhost computer, codes on PATH and the pseudopotential family."""
    from aiida_mlcampaign.setup import profile as profile_setup

    psql = profile_setup.PsqlSettings(db_host, db_port, db_user, db_password, db_name, db_superuser)
    rabbitmq = profile_setup.RabbitmqSettings(broker_host, broker_port, broker_user, broker_password)
    try:
        profile, created = profile_setup.ensure_profile(profile_name, storage=storage, broker=broker, psql=psql,
                                                        rabbitmq=rabbitmq)
    except (ConnectionError, ValueError) as exception:
        raise click.ClickException(str(exception)) from exception
    click.echo(f'profile   {profile.name} ({"created" if created else "reused"}): '
               f'{profile.storage_backend} storage, broker {profile.process_control_backend or "none"}')
    computer = profile_setup.ensure_localhost(mpiprocs=mpiprocs)
    click.echo(f'computer  {computer.label} ({computer.transport_type}, {computer.scheduler_type})')
    try:
        codes = profile_setup.discover_codes(computer)
    except ValueError as exception:  # a code of the same label runs another program
        raise click.ClickException(str(exception)) from exception
    for name, code in codes.items():
        click.echo(f'code      {code.full_label:<20} {code.filepath_executable}')
    blas = profile_setup.blas_of('pw.x')
    if blas and 'openblas' not in blas:
        click.secho(f'warning   pw.x uses reference BLAS ({blas}); install libopenblas0-serial (about 6x faster)',
                    fg='yellow')
    if not skip_pseudos:
        from aiida_mlcampaign.setup.pseudos import PseudoFamilyConflictError, install_pseudo_family

        chosen = [e.strip() for e in elements.split(',') if e.strip()] or None
        try:
            family = install_pseudo_family(label=pseudo_family, elements=chosen)
        except PseudoFamilyConflictError as exception:
            raise click.ClickException(f'--pseudo-family: {exception}') from exception
        click.echo(f'pseudos   {family.label}: {len(family.nodes)} elements, default stringency '
                   f'{family.get_default_stringency()}')
    click.echo(f'ready: aiida-mlcampaign daemon start 2 -p {profile.name}')


@cli.command('quickstart')
@click.option('--profile', 'profile_name', default='mlcampaign-quickstart', show_default=True,
              help='Embedded (sqlite + ZeroMQ) profile to create or reuse.')
@click.option('--mpiprocs', default=2, show_default=True, help='MPI ranks per pw.x run.')
@click.option('-o', '--output', default=None, help='Folder of the report (default: ./<profile>-report).')
@click.option('--config', 'config_path', default=None, type=click.Path(dir_okay=False),
              help='Another campaign file to run the same way (default: examples/quickstart.yaml, shipped).')
@click.option('--timeout', default=1800.0, show_default=True, help='Give up waiting after this many seconds.')
def quickstart_command(profile_name, mpiprocs, output, config_path, timeout):
    """The quickstart campaign (examples/quickstart.yaml) on an embedded profile: real pw.x, MTP and NEP active
    learning, MD, analysis and the report, all through the daemon."""
    from aiida_mlcampaign.cli.quickstart import run_quickstart

    run_quickstart(profile_name=profile_name, mpiprocs=mpiprocs, output=output, config_path=config_path,
                   timeout=timeout)
