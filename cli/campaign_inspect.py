"""``aiida-mlcampaign campaign query`` and ``campaign cost``: provenance and cost of a campaign, from the graph.

* ``query PK`` takes any node (a campaign, a training set, a potential, a Dict of diffusion results, an RDF ...)
  and prints the pw.x calculations behind it (:func:`~aiida_mlcampaign.workchains.provenance.dft_calculations_behind`):
  how many, their PKs, the formulas of their structures and their computers; for a campaign also, for each of its
  outputs, the number of DFT calculations behind that output.
* ``cost PK`` prints :func:`~aiida_mlcampaign.workchains.provenance.campaign_cost`: jobs, DFT calls, core-hours and
  GPU-hours per stage and per computer, and what each active-learning loop selected of what it explored.

Both read only the database, so they work the same on a running campaign (what has run so far) and a finished one;
``--json`` prints the same numbers for scripts.
"""

from __future__ import annotations

import collections
import json

import click

from aiida_mlcampaign.cli.campaign import _hours, campaign_cli, echo_table, load_profile_or_exit

#: Rows of the calculation table printed by default (``--limit 0``: every one).
DEFAULT_LIMIT = 50


def _load_node_or_exit(pk: int):
    from aiida import orm

    try:
        return orm.load_node(pk)
    except Exception as exception:  # noqa: BLE001 - NotExistent, MultipleObjectsError
        raise click.ClickException(f'PK {pk}: {exception}') from exception


def _describe(node) -> str:
    text = f'{type(node).__name__}<{node.pk}>'
    if getattr(node, 'process_label', None):
        state = node.process_state.value if node.process_state else 'created'
        text += f' {node.process_label} [{state}]'
    if node.label:
        text += f' "{node.label}"'
    return text


def _is_campaign(node) -> bool:
    return (getattr(node, 'process_type', None) or '').endswith('mlcampaign.campaign')


def _calculation_rows(pks: list[int]) -> list[dict]:
    """PK, state, exit status, computer and formula of each pw.x calculation (a few queries per chunk of PKs)."""
    from aiida import orm

    from aiida_mlcampaign.workchains.provenance import _chunks

    computers = dict(orm.QueryBuilder().append(orm.Computer, project=['id', 'label']).iterall())
    rows: dict[int, dict] = {}
    for chunk in _chunks(pks):
        query = orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': {'in': chunk}}, project=[
            'id', 'uuid', 'attributes.process_state', 'attributes.exit_status', 'dbcomputer_id'])
        for pk, uuid, state, exit_status, computer in query.iterall():
            rows[pk] = {'pk': pk, 'uuid': uuid, 'state': state or 'created', 'exit_status': exit_status,
                        'computer': computers.get(computer, '?'), 'formula': None}
        query = orm.QueryBuilder()
        query.append(orm.CalcJobNode, filters={'id': {'in': chunk}}, tag='job', project='id')
        query.append(orm.StructureData, with_outgoing='job', edge_filters={'label': 'structure'}, project='*')
        for pk, structure in query.iterall():
            rows[pk]['formula'] = structure.get_formula()
    return [rows[pk] for pk in sorted(rows)]


def _outputs_of(node) -> list[tuple[str, object]]:
    """The outputs of a process, by their dotted names (namespaces joined by '.')."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN)).all()
    return sorted((link.link_label.replace('__', '.'), link.node) for link in links)


def query_report(node, limit: int | None = DEFAULT_LIMIT) -> dict:
    """Everything ``campaign query`` prints, as one JSON-able dict."""
    from aiida_mlcampaign.workchains.provenance import ProvenanceWalker, dft_calculation_pks

    walker = ProvenanceWalker()
    pks = dft_calculation_pks(node, walker=walker)
    rows = _calculation_rows(pks)
    report = {
        'node': {'pk': node.pk, 'uuid': node.uuid, 'type': type(node).__name__, 'label': node.label,
                 'process_label': getattr(node, 'process_label', None), 'description': _describe(node)},
        'count': len(pks),
        'finished_ok': sum(1 for row in rows if row['state'] == 'finished' and row['exit_status'] == 0),
        'pks': pks,
        'formulas': dict(collections.Counter(row['formula'] or '?' for row in rows).most_common()),
        'computers': dict(collections.Counter(row['computer'] for row in rows).most_common()),
        'calculations': rows if not limit else rows[:limit],
    }
    if _is_campaign(node):
        report['outputs'] = {name: {'pk': output.pk, 'type': type(output).__name__,
                                    'dft_calls': len(dft_calculation_pks(output, walker=walker))}
                             for name, output in _outputs_of(node)}
    return report


def _counts(counter: dict) -> str:
    return ', '.join(f'{name} x{count}' for name, count in counter.items()) or '-'


@campaign_cli.command('query')
@click.argument('pk', type=int)
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--limit', type=int, default=DEFAULT_LIMIT, show_default=True,
              help='Calculations listed one per line (0: all); the counts always cover every one.')
@click.option('--json', 'as_json', is_flag=True, help='Print the result as JSON (every calculation with --limit 0).')
def query_command(pk, profile_name, limit, as_json):
    """The pw.x calculations behind node PK (a campaign or any result: training set, potential, Dict, ArrayData).

    The walk follows the provenance backwards to any depth (through merges, splits and explorations), so a
    result's count includes the pw.x runs before its labels (relaxation, restarted runs); failed runs are listed
    with their exit status.
    """
    load_profile_or_exit(profile_name)
    node = _load_node_or_exit(pk)
    report = query_report(node, limit=limit)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f'{report["node"]["description"]}: {report["count"]} pw.x calculation(s) behind it'
               + (f' ({report["finished_ok"]} finished ok)' if report['count'] else ''))
    if not report['count']:
        return
    click.echo(f'formulas:  {_counts(report["formulas"])}')
    click.echo(f'computers: {_counts(report["computers"])}')
    click.echo('')
    rows = [('PK', 'state', 'exit', 'formula', 'computer')]
    rows += [(str(row['pk']), row['state'], '-' if row['exit_status'] is None else str(row['exit_status']),
              row['formula'] or '?', row['computer']) for row in report['calculations']]
    echo_table(rows, right=(0, 2))
    if len(report['calculations']) < report['count']:
        click.echo(f'... {report["count"] - len(report["calculations"])} more (--limit 0 lists all; PKs: --json)')
    if 'outputs' in report:
        click.echo('')
        if report['outputs']:
            rows = [('output', 'node', 'DFT calcs behind')]
            rows += [(name, f'{entry["type"]}<{entry["pk"]}>', str(entry['dft_calls']))
                     for name, entry in report['outputs'].items()]
            echo_table(rows, right=(2,))
        else:
            click.echo('no outputs yet (the campaign is still running)')


@campaign_cli.command('cost')
@click.argument('pk', type=int)
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--json', 'as_json', is_flag=True, help='Print the result as JSON.')
def cost_command(pk, profile_name, as_json):
    """What campaign PK has spent so far: jobs, DFT calls, core-hours and GPU-hours per stage and computer, and
    the labels each active-learning loop selected of the candidates it explored."""
    from aiida import orm

    from aiida_mlcampaign.workchains.provenance import campaign_cost

    load_profile_or_exit(profile_name)
    node = _load_node_or_exit(pk)
    if not isinstance(node, orm.WorkflowNode):
        raise click.ClickException(f'PK {pk}: {_describe(node)} is not a workflow; cost needs a campaign')
    cost = campaign_cost(node)
    if as_json:
        click.echo(json.dumps(cost, indent=2, default=str))
        return
    click.echo(f'{_describe(node)}: cost so far' if not cost['terminated'] else f'{_describe(node)}: cost')
    if not _is_campaign(node):
        click.echo('(not a campaign: its children are not stages, they count as "other")')
    if not cost['rows']:
        click.echo('no jobs yet')
    else:
        rows = [('stage', 'computer', 'jobs', 'running', 'DFT calls', 'core-h', 'GPU-h')]
        for row in cost['rows']:
            rows.append((row['stage'], row['computer'], str(row['jobs']), str(row['running'] or '-'),
                         str(row['dft_calls'] or '-'), _hours(row['core_hours']), _hours(row['gpu_hours'])))
        per_computer = cost['computers'] if len(cost['computers']) > 1 else {}
        for name, values in per_computer.items():
            rows.append((f'computer {name}', '', str(values['jobs']), str(values['running'] or '-'),
                         str(values['dft_calls'] or '-'), _hours(values['core_hours']), _hours(values['gpu_hours'])))
        total = cost['total']
        rows.append(('total', '', str(total['jobs']), str(total['running'] or '-'), str(total['dft_calls'] or '-'),
                     _hours(total['core_hours']), _hours(total['gpu_hours'])))
        click.echo('')
        echo_table(rows, right=(2, 3, 4, 5, 6))
        sources = {name: count for name, count in cost['wall_time_sources'].items() if count}
        words = {'pw_output': 'pw.x clock', 'scheduler_accounting': 'scheduler accounting',
                 'scheduler_poll': 'last scheduler poll', 'ctime_mtime': 'node ctime-mtime (upper bound)',
                 'none': 'not yet known (queued or running)'}
        click.echo('wall times: ' + ', '.join(f'{words[name]} {count}' for name, count in sources.items()))
    if cost['active_learning']:
        click.echo('')
        rows = [('family', 'state', 'iterations', 'explored', 'candidates', 'selected', 'labelled', 'DFT calls',
                 'from')]
        for family, entry in cost['active_learning'].items():
            rows.append((family, entry['state'], str(entry['iterations']), str(entry['explored_frames']),
                         str(entry['candidates']), str(entry['selected']), str(entry['labels_added']),
                         str(entry['dft_calls']), entry['source']))
        echo_table(rows, right=(2, 3, 4, 5, 6, 7))
