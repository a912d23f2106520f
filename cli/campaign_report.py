"""``aiida-mlcampaign campaign report PK -o DIR``: the report page of a campaign, from the graph.

Writes ``DIR/report.html`` (self-contained, inline CSS), ``DIR/report.md``, ``DIR/figures/<name>.png`` and
``DIR/report.json`` (the data both pages are rendered from; :mod:`aiida_mlcampaign.campaign.report_page` renders
them again from it without AiiDA).

A finished campaign is read from its outputs (``report``, ``figures``, ``potentials``, ``learning``, the sets). A
running one has few outputs yet: the page is gathered from the children that finished, found by their call link
labels (``al_<family>``, ``final_<family>``, ``compare_errors``, ``rdf_compare_*``, ``vdos_compare_*``,
``diffusion_*``, ``arrhenius_*``, ``speed``), summarised by the same function the campaign's ``report`` uses
(:func:`aiida_mlcampaign.campaign.report.summarize`) and marked provisional; the children still running are listed.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import typing as t

import click

from aiida_mlcampaign.cli.campaign import campaign_cli, load_campaign, load_profile_or_exit

__all__ = ('gather_report_data', 'report_command', 'write_report')

#: The roles of a campaign's ``codes`` input (workchains/campaign.py CODE_ROLES), in the order the page lists them.
ROLES = ('dft', 'mtp_train', 'nep_train', 'explore', 'md')
#: Children whose ``figure`` output is a figure of the study (the campaign's ``figures`` namespace), by link label.
FIGURE_CHILD = re.compile(r'^(rdf_(?!dft_).+|rdf_compare_.+|msd_.+|vdos_compare_.+|arrhenius_.+|speed)$')


# ------------------------------------------------------------------------------------------------- the graph
def _nested(links) -> dict:
    """``{label: node}`` of links whose labels use ``__`` for namespaces, as ``{'figures': {'parity': node}}``."""
    tree: dict = {}
    for link in links:
        parts = link.link_label.split('__')
        branch = tree
        for part in parts[:-1]:
            branch = branch.setdefault(part, {})
            if not isinstance(branch, dict):
                break
        else:
            branch[parts[-1]] = link.node
    return tree


def _outputs(node) -> dict:
    from aiida.common.links import LinkType

    return _nested(node.base.links.get_outgoing(link_type=(LinkType.RETURN, LinkType.CREATE)).all())


def _children(node) -> dict:
    """The campaign's children by call link label (the latest one where a label was used twice)."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()
    children = {}
    for link in sorted(links, key=lambda link: link.node.pk):
        children[link.link_label] = link.node
    return children


def _plain(node) -> t.Any:
    """A Dict, List or compare_dos overlap (ArrayData) as the campaign's ``report`` calcfunction reads it."""
    from aiida import orm

    if isinstance(node, orm.Dict):
        return node.get_dict()
    if isinstance(node, orm.List):
        return node.get_list()
    if isinstance(node, orm.ArrayData) and 'overlap' in node.get_arraynames():
        return {'labels': node.base.attributes.get('labels', None), 'overlap': node.get_array('overlap').tolist()}
    return None


def _output(node, *names):
    """``node``'s output ``names[0]`` (the first that exists), or None."""
    if node is None:
        return None
    outputs = _outputs(node)
    for name in names:
        if name in outputs and not isinstance(outputs[name], dict):
            return outputs[name]
    return None


def _frames(node) -> int | None:
    if node is None:
        return None
    value = node.base.attributes.get('num_frames', None)
    return None if value is None else int(value)


def _set_entry(node) -> dict | None:
    return None if node is None else {'pk': node.pk, 'frames': _frames(node)}


def _iso(moment) -> str | None:
    return None if moment is None else moment.isoformat(timespec='seconds')


def _state(node) -> str:
    if node.process_state is None:
        return 'created'
    state = node.process_state.value
    if node.is_finished and not node.is_finished_ok:
        return f'{state} [{node.exit_status}]'
    return 'finished' if node.is_finished_ok else state


def _warnings_from_logs(node) -> list[str]:
    """The campaign's warnings so far: its process report lines ``WARNING <message>`` (``_warn``)."""
    from aiida import orm

    from aiida_mlcampaign.cli.campaign_status import campaign_warnings

    return campaign_warnings(log.message for log in orm.Log.collection.get_logs_for(node))


def _config(node) -> dict:
    try:
        return node.inputs.config.get_dict()
    except Exception:  # noqa: BLE001 - a campaign node without its config (hand-made): families come from elsewhere
        return {}


def _family_names(node, config: dict, children: dict, outputs: dict) -> list[str]:
    learning = (config.get('stages') or {}).get('active_learning') or {}
    names = list(learning.get('order') or [name for name in ('mtp', 'nep') if learning.get(name)])
    found = [label[3:] for label in children if label.startswith('al_')]
    found += [label[6:] for label in children if label.startswith('final_')]
    found += list(outputs.get('potentials') or {}) + list(outputs.get('learning') or {})
    for name in found:
        if name not in names:
            names.append(name)
    return names


def _loop_rows(loop, outputs: dict, family: str) -> list[dict]:
    """The loop's summary: the campaign's ``learning.<family>.summary``, the loop's own ``summary`` output, or,
    while the loop runs, one row per finished iteration from its ``iterations.iteration_NN`` outputs."""
    summary = ((outputs.get('learning') or {}).get(family) or {}).get('summary')
    if summary is None and loop is not None:
        summary = _output(loop, 'summary')
    if summary is not None:
        return summary.get_list()
    if loop is None:
        return []
    rows = []
    for name, record in sorted((_outputs(loop).get('iterations') or {}).items()):
        if not isinstance(record, dict) or 'statistics' not in record:
            continue
        row = {'iteration': int(name.rsplit('_', 1)[-1]) if name.rsplit('_', 1)[-1].isdigit() else name}
        row.update(record['statistics'].get_dict())
        if 'training_set' in record:
            row['training_frames_after'] = _frames(record['training_set'])
        rows.append(row)
    return rows


def _results_from_children(children: dict, families: list[str], loops: dict) -> dict:
    """What the campaign passes its ``report`` calcfunction, from the children that finished (a running campaign)."""
    results = {}
    for family in families:
        if loops.get(family):
            results[f'al_{family}'] = loops[family]
        final = children.get(f'final_{family}')
        if final is not None and final.is_finished_ok:
            statistics = _output(final, 'statistics')
            if statistics is not None:
                results[f'final_{family}'] = statistics.get_dict()
    sources = {'compare_errors': ('errors', 'errors')}
    for label in children:
        for prefix, output in (('rdf_compare_', 'overlap'), ('vdos_compare_', 'overlap'), ('diffusion_', 'diffusion'),
                               ('arrhenius_', 'arrhenius')):
            if label.startswith(prefix):
                key = 'rdf_' + label[len(prefix):] if prefix == 'rdf_compare_' else \
                    'vdos_' + label[len(prefix):] if prefix == 'vdos_compare_' else label
                sources[label] = (key, output)
    sources['speed'] = ('speed', 'table')
    for label, (key, output) in sources.items():
        child = children.get(label)
        if child is None or not child.is_finished_ok:
            continue
        value = _plain(_output(child, output))
        if value is not None:
            results[key] = value
    return results


def _pool_info(outputs: dict, children: dict) -> dict:
    pool = outputs.get('training_set')
    if pool is None:
        split = children.get('split')
        pool = _output(split, 'train') if split is not None else None
    if pool is None:
        pool = outputs.get('seed_set')
    if pool is None:
        return {}
    return {'frames': _frames(pool), 'species': list(getattr(pool, 'species', None) or [])}


def _code_version(code) -> str | None:
    """pw.x's version from any finished run of this code (its ``output_parameters`` ``code_version``); else a
    ``version`` extra of the code."""
    from aiida import orm

    try:
        query = orm.QueryBuilder()
        query.append(orm.AbstractCode, filters={'id': code.pk}, tag='code')
        query.append(orm.CalcJobNode, with_incoming='code', tag='calc')
        query.append(orm.Dict, with_incoming='calc', edge_filters={'label': 'output_parameters'},
                     filters={'attributes': {'has_key': 'code_version'}},
                     project=['attributes.code_version', 'id'])
        query.order_by({orm.Dict: {'id': 'desc'}})
        query.limit(1)
        rows = query.all()
    except Exception:  # noqa: BLE001 - a backend without JSON has_key: the version is optional
        rows = []
    if rows and rows[0][0]:
        return str(rows[0][0])
    version = code.base.extras.get('version', None)
    return None if version is None else str(version)


def _codes(node) -> list[dict]:
    from aiida.common.links import LinkType

    links = node.base.links.get_incoming(link_type=LinkType.INPUT_WORK).all()
    codes = {link.link_label[len('codes__'):]: link.node for link in links if link.link_label.startswith('codes__')}
    rows = []
    for role in sorted(codes, key=lambda r: (ROLES.index(r) if r in ROLES else len(ROLES), r)):
        code = codes[role]
        computer = getattr(code, 'computer', None)
        rows.append({'role': role, 'label': code.label, 'computer': computer.label if computer is not None else None,
                     'version': _code_version(code) if role == 'dft' else (
                         None if code.base.extras.get('version', None) is None
                         else str(code.base.extras.get('version')))})
    return rows


def gather_report_data(node) -> tuple[dict, dict]:
    """``(data, figures)``: the plain data of :mod:`aiida_mlcampaign.campaign.report_page` for campaign ``node``,
    and its figures ``{name: SinglefileData}``; from the outputs where the campaign wrote them, else from the
    children that finished."""
    from aiida_mlcampaign.campaign.report import summarize

    outputs = _outputs(node)
    children = _children(node)
    config = _config(node)
    families = _family_names(node, config, children, outputs)

    loops, family_rows = {}, {}
    for family in families:
        loop = children.get(f'al_{family}')
        rows = _loop_rows(loop, outputs, family)
        loops[family] = rows
        stop = ((outputs.get('learning') or {}).get(family) or {}).get('stop_reason') or _output(loop, 'stop_reason')
        family_rows[family] = {'pk': loop.pk if loop is not None else None,
                               'state': _state(loop) if loop is not None else None,
                               'stop_reason': stop.value if stop is not None else None, 'iterations': rows}

    report_node = outputs.get('report')
    report_final = report_node is not None
    if report_final:
        report = report_node.get_dict()
    else:
        results = _results_from_children(children, families, loops)
        report = summarize(config, results, _warnings_from_logs(node), _pool_info(outputs, children)) \
            if (results or config) else None
        if report is not None and report.get('labels'):
            test = outputs.get('test_set') or _output(children.get('split'), 'test')
            if report['labels'].get('test_frames') is None and test is not None:
                report['labels']['test_frames'] = _frames(test)

    figures = {name: figure for name, figure in (outputs.get('figures') or {}).items() if not isinstance(figure, dict)}
    if not report_final:
        errors_child = children.get('compare_errors')
        if 'parity' not in figures and errors_child is not None and errors_child.is_finished_ok:
            figure = _output(errors_child, 'figure')
            if figure is not None:
                figures['parity'] = figure
        for label, child in children.items():
            if label not in figures and FIGURE_CHILD.match(label) and child.is_finished_ok:
                figure = _output(child, 'figure')
                if figure is not None:
                    figures[label] = figure

    potentials = {}
    family_training_frames = {}
    for family in families:
        final, loop = children.get(f'final_{family}'), children.get(f'al_{family}')
        potential = (outputs.get('potentials') or {}).get(family)
        if potential is None and final is not None and final.is_finished_ok:
            potential = _output(final, 'potential')
        if potential is None and loop is not None and loop.is_finished_ok:
            potential = _output(loop, 'potential')
        if potential is not None:
            potentials[family] = potential.pk
        trained_on = None
        if final is not None and 'training_set' in final.inputs:
            trained_on = final.inputs.training_set
        elif loop is not None:
            trained_on = _output(loop, 'training_set')
        if trained_on is not None:
            family_training_frames[family] = _frames(trained_on)

    errors = outputs.get('errors') or _output(children.get('compare_errors'), 'errors')
    test_set = outputs.get('test_set') or _output(children.get('split'), 'test')
    running = [{'label': label, 'process_label': child.process_label, 'pk': child.pk, 'state': _state(child)}
               for label, child in children.items() if not child.is_terminated]
    campaign = {
        'pk': node.pk, 'uuid': node.uuid, 'label': node.label or None, 'description': node.description or None,
        'state': _state(node), 'exit_status': node.exit_status, 'exit_message': node.exit_message,
        'stage': node.base.extras.get('campaign_stage', None), 'ctime': _iso(node.ctime), 'mtime': _iso(node.mtime),
        'terminated': node.is_terminated, 'running': running, 'species': (report or {}).get('species'),
        'generated': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
    }
    provenance = {
        'report': report_node.pk if report_node is not None else None,
        'errors': errors.pk if errors is not None else None,
        'training_set': _set_entry(outputs.get('training_set')),
        'test_set': _set_entry(test_set),
        'seed_set': _set_entry(outputs.get('seed_set')),
        'potentials': potentials,
        'family_training_frames': family_training_frames,
        'figures': {name: figure.pk for name, figure in sorted(figures.items())},
        'children': {label: child.pk for label, child in children.items()},
    }
    data = {
        'report': report, 'report_final': report_final, 'campaign': campaign, 'codes': _codes(node),
        'families': family_rows, 'figures': sorted(figures), 'provenance': provenance,
    }
    return data, dict(sorted(figures.items()))


def _figure_bytes(figure) -> bytes:
    with figure.open(mode='rb') as handle:
        return handle.read()


def write_report(node, directory: pathlib.Path) -> dict:
    """The report of campaign ``node`` in ``directory``: report.html, report.md, report.json, figures/*.png.
    Returns the paths written: ``{'html', 'markdown', 'json': path, 'figures': [paths]}``."""
    from aiida_mlcampaign.campaign.report_page import render_html, render_markdown

    data, figures = gather_report_data(node)
    directory = pathlib.Path(directory)
    (directory / 'figures').mkdir(parents=True, exist_ok=True)
    written: dict = {'figures': []}
    for name, figure in figures.items():
        path = directory / 'figures' / f'{name}.png'
        path.write_bytes(_figure_bytes(figure))
        written['figures'].append(path)
    pages = {'html': ('report.html', render_html(data)), 'markdown': ('report.md', render_markdown(data)),
             'json': ('report.json', json.dumps(data, indent=2, sort_keys=True, default=str) + '\n')}
    for key, (filename, text) in pages.items():
        path = directory / filename
        path.write_text(text, encoding='utf-8')
        written[key] = path
    return written


# --------------------------------------------------------------------------------------------------- command
@campaign_cli.command('report')
@click.argument('pk', type=int)
@click.option('-o', '--output', 'output', required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help='Directory to write report.html, report.md, report.json and figures/ into (created).')
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
def report_command(pk, output, profile_name):
    """The report page of campaign PK (finished or running) in DIR: HTML, Markdown, JSON and the figures."""
    load_profile_or_exit(profile_name)
    node = load_campaign(pk)
    written = write_report(node, output)
    for path in [written['html'], written['markdown'], written['json'], *written['figures']]:
        click.echo(str(path))
    if not node.is_terminated:
        click.echo(f'campaign <{node.pk}> is still running: the report is provisional', err=True)
