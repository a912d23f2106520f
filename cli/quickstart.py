"""The README quickstart: the campaign of ``examples/quickstart.yaml`` on an embedded profile, through the daemon.

It is the whole study on a laptop, in minutes: an 8-atom Cu3PS4 cell (zincblende-derived, the smallest cell with
the model case's three elements) is relaxed, rattled and labelled with pw.x, a short AIMD gives the DFT reference,
a moment tensor potential (motep) and a NEP (neppo) are each trained by active learning on one pool of labels,
refitted on the final pool, scored on the same test set, run in MD, and analysed against the AIMD (RDF, VDOS,
MSD, speed); the report is written as HTML and markdown. DFT settings are demo-grade (Γ point, low cutoffs):
the numbers show the workflow, not converged physics.

Why the quickstart is the campaign itself: what a newcomer runs first is then what they run on a cluster, with
the same file format, the same ``campaign status``/``report``/``query``/``cost`` commands and the same graph.
"""

from __future__ import annotations

import pathlib
import time
from importlib.resources import files

import click

#: The file the quickstart runs (a copy of examples/quickstart.yaml, shipped with the package).
QUICKSTART_CONFIG = 'campaign-quickstart.yaml'


def quickstart_config_path() -> pathlib.Path:
    return pathlib.Path(str(files('aiida_mlcampaign.setup') / 'templates' / QUICKSTART_CONFIG))


def check_options(*, mpiprocs: int, timeout: float = 1800.0) -> None:
    """Refuse options that could only fail later, before a profile is made or any pw.x runs."""
    problems = []
    if isinstance(mpiprocs, bool) or not isinstance(mpiprocs, int) or mpiprocs < 1:
        problems.append(f'--mpiprocs: must be an integer >= 1, got {mpiprocs!r}')
    if not timeout > 0:
        problems.append(f'--timeout: must be positive, got {timeout!r}')
    if problems:
        raise click.UsageError('; '.join(problems))


class Progress:
    """Prints the campaign's process reports (and its active-learning loops') as they come: the newcomer sees
    each stage start and each iteration's errors, not ten silent minutes."""

    def __init__(self, node, start: float):
        self.node, self.start, self.last = node, start, 0

    def _watched(self) -> list[int]:
        from aiida.common.links import LinkType

        pks = [self.node.pk]
        self._labels = {}
        for link in self.node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all():
            if link.link_label.startswith(('al_', 'seed_', 'final_')):
                pks.append(link.node.pk)
                self._labels[link.node.pk] = link.link_label
        return pks

    def poll(self) -> None:
        from aiida import orm

        from aiida_mlcampaign.cli.campaign_status import report_text

        query = orm.QueryBuilder().append(orm.Log, filters={'dbnode_id': {'in': self._watched()},
                                                            'id': {'>': self.last}},
                                          project=['id', 'message', 'dbnode_id'])
        for pk, message, node in sorted(query.all()):
            self.last = max(self.last, pk)
            if 'reusing' in message or 'submitted before a restart' in message:
                continue
            where = '' if node == self.node.pk else f'[{self._labels.get(node, "")}] '
            click.echo(f'[{_clock(time.monotonic() - self.start)}] {where}{report_text(message)}')


def _clock(seconds: float) -> str:
    return f'{int(seconds) // 60:02d}:{int(seconds) % 60:02d}'


def run_quickstart(profile_name: str = 'mlcampaign-quickstart', mpiprocs: int = 2, output: str | None = None,
                   config_path: str | None = None, timeout: float = 1800.0) -> int:
    """Set up the embedded profile, launch the quickstart campaign, follow it, write the report; its PK."""
    from aiida.engine import submit

    from aiida_mlcampaign.cli.campaign import load_or_exit
    from aiida_mlcampaign.cli.campaign_status import campaign_status, render_status
    from aiida_mlcampaign.setup import profile as profile_setup
    from aiida_mlcampaign.setup.campaign_preflight import preflight
    from aiida_mlcampaign.setup.daemon import start_daemon
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain

    check_options(mpiprocs=mpiprocs, timeout=timeout)
    start = time.monotonic()
    config = load_or_exit(config_path or str(quickstart_config_path()))
    profile, created = profile_setup.ensure_profile(profile_name, storage='sqlite', broker='zeromq')
    click.echo(f'profile {profile.name} ({"created" if created else "reused"}; sqlite + ZeroMQ, no services)')
    computer = profile_setup.ensure_localhost(mpiprocs=mpiprocs)
    codes = profile_setup.discover_codes(computer)
    needed = {'pw.x', 'motep', 'neppo', 'mlcampaign-explore', 'mlcampaign-md'}
    missing = sorted(needed - set(codes))
    if missing:
        raise click.ClickException(f'not found on PATH: {missing} (apt-get install quantum-espresso; pip install '
                                   '"aiida-mlcampaign[nep-cpu]")')
    family = install_pseudo_family(label=config.dft.pseudo_family, elements=config.species())
    click.echo(f'pseudopotentials: {family.label} ({len(family.nodes)} elements, generated with ld1.x)')
    problems = [problem for problem in preflight(config, profile) if problem.severity == 'error']
    if problems:
        raise click.ClickException('preflight: ' + '; '.join(problem.format(config.source) for problem in problems))
    click.echo('')
    from aiida_mlcampaign.cli.campaign import echo_plan

    echo_plan(config)
    daemon = start_daemon(profile)
    if not daemon.ok:
        raise click.ClickException('; '.join(daemon.lines()))
    node = submit(CampaignWorkChain.get_builder_from_config(config))
    click.echo(f'\nsubmitted campaign {config.campaign.name}: CampaignWorkChain<{node.pk}> (the daemon runs it; '
               'progress below)')
    progress = Progress(node, start)
    while not node.is_terminated:
        progress.poll()
        if time.monotonic() - start > timeout:
            raise click.ClickException(f'campaign <{node.pk}> did not finish within {timeout:.0f} s; it goes on in '
                                       f'the daemon: aiida-mlcampaign campaign status -p {profile.name} {node.pk}')
        time.sleep(3)
    progress.poll()
    click.echo('')
    click.echo(render_status(campaign_status(node)))
    if not node.is_finished_ok:
        raise click.ClickException(f'campaign <{node.pk}> failed: exit status {node.exit_status} '
                                   f'({node.exit_message}). See: verdi -p {profile.name} process report {node.pk}')
    from aiida_mlcampaign.cli.campaign_report import write_report

    target = pathlib.Path(output or f'{profile.name}-report').resolve()
    paths = write_report(node, target)
    click.echo(f'\nreport: {paths["html"]} (also {paths["markdown"].name}, figures/)')
    click.echo(f'total wall time {time.monotonic() - start:.0f} s\n')
    click.echo('look further:')
    for line in (f'aiida-mlcampaign campaign status -p {profile.name} {node.pk}',
                 f'aiida-mlcampaign campaign query  -p {profile.name} {node.pk}',
                 f'aiida-mlcampaign campaign cost   -p {profile.name} {node.pk}',
                 f'aiida-mlcampaign data -p {profile.name} export {node.outputs.training_set.pk} -o train.xyz',
                 f'verdi -p {profile.name} process report {node.pk}'):
        click.echo(f'  {line}')
    click.echo(f'the daemon is still running; stop it with:  verdi -p {profile.name} daemon stop')
    return node.pk
