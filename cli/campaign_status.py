"""Where a campaign stands, read from the graph and aiida's process reports (no log file of its own).

Why from the graph: a campaign runs for days on several computers; the only record every machine shares is the
database. :func:`campaign_status` gathers one dict (stage, per family the iterations so far, jobs per computer,
DFT labels, warnings, time) that :func:`render_status` prints as the one screen ``campaign status`` shows, and the
report reuses.
"""

from __future__ import annotations

import datetime as dt
import re

from aiida import orm
from aiida.common.links import LinkType

from aiida_mlcampaign.workchains.campaign import STAGES  # in order; the node's ``campaign_stage`` extra

PW = 'aiida.calculations:quantumespresso.pw'
#: aiida's process reports start with ``[pk|ProcessClass|step]: ``.
_REPORT_PREFIX = re.compile(r'^\[\d+\|[^\]]*\]: ')


def report_text(message: str) -> str:
    """A process report line without aiida's ``[pk|class|step]: `` prefix."""
    return _REPORT_PREFIX.sub('', message)


def campaign_warnings(messages) -> list[str]:
    """The ``WARNING ...`` lines of the campaign's reports (``CampaignWorkChain._warn``), each once, in order."""
    texts = (report_text(message) for message in messages)
    return list(dict.fromkeys(text[len('WARNING '):] for text in texts if text.startswith('WARNING ')))


def _children(node) -> dict:
    """The campaign's direct children by call link label (the last one when a label repeats)."""
    children = {}
    for link in node.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all():
        children[link.link_label] = link.node
    return children


def _descendant_calcjobs(node) -> list:
    return [child for child in node.called_descendants if isinstance(child, orm.CalcJobNode)]


def _family_rows(loop) -> list[dict]:
    """Per iteration: frames, errors, candidate fraction, labels; from the loop's summary when finished, else from
    the statistics of the iterations it has run so far."""
    if loop.is_finished_ok and 'summary' in loop.outputs:
        return loop.outputs.summary.get_list()
    rows = []
    for link in loop.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all():
        label = link.link_label
        if not label.startswith('iteration_') or label.count('_') != 2 or label.endswith(('_label', '_screen')):
            continue
        child = link.node
        number = int(label.split('_')[1])
        row = {'iteration': number, 'training_frames': child.inputs.training_set.num_frames,
               'state': child.process_state.value if child.process_state else 'created'}
        if 'statistics' in child.outputs:
            row.update(child.outputs.statistics.get_dict())
        rows.append(row)
    for link in loop.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all():
        if link.link_label.endswith('_label') and 'training_set' in link.node.outputs:
            number = int(link.link_label.split('_')[1])
            for row in rows:
                if row['iteration'] == number:
                    row['labels_added'] = link.node.outputs.training_set.num_frames
    return sorted(rows, key=lambda row: row['iteration'])


def _reports(node, limit: int = 400) -> list:
    from aiida.orm import Log

    pks = [node.pk] + [child.pk for child in node.called_descendants if isinstance(child, orm.WorkflowNode)]
    query = orm.QueryBuilder().append(Log, filters={'dbnode_id': {'in': pks}}, project=['time', 'message', 'dbnode_id'])
    query.order_by({Log: {'time': 'asc'}})
    return query.all()[-limit:] if query.count() > limit else query.all()


def campaign_status(node) -> dict:
    """One dict with everything ``campaign status`` shows (see the module docstring)."""
    from aiida_mlcampaign.workchains.campaign import config_of

    children = _children(node)
    atoms = [node.inputs.structures[key].get_ase() for key in sorted(node.inputs.structures)]
    config = config_of(node.inputs.config, atoms)
    now = dt.datetime.now(dt.timezone.utc)
    end = node.mtime if node.is_terminated else now
    status = {
        'pk': node.pk, 'name': node.label or config.campaign.name,
        'state': node.process_state.value if node.process_state else 'created',
        'exit_status': node.exit_status, 'exit_message': node.exit_message,
        'stage': node.base.extras.get('campaign_stage', 'setup'),
        'elapsed_seconds': (end - node.ctime).total_seconds(),
        'families': {}, 'computers': {}, 'warnings': [], 'dft_labels': 0,
    }
    for family in config.families():
        loop = children.get(f'al_{family}')
        entry = {'rows': [], 'stop_reason': None, 'state': 'pending'}
        if loop is not None:
            entry['state'] = loop.process_state.value if loop.process_state else 'created'
            entry['rows'] = _family_rows(loop)
            if 'stop_reason' in loop.outputs:
                entry['stop_reason'] = loop.outputs.stop_reason.value
        final = children.get(f'final_{family}')
        if final is not None and 'statistics' in final.outputs:
            entry['final'] = final.outputs.statistics.get_dict()
        status['families'][family] = entry
    for job in _descendant_calcjobs(node):
        computer = job.computer.label if job.computer else '?'
        counts = status['computers'].setdefault(computer, {'running': 0, 'queued': 0, 'finished': 0, 'failed': 0})
        if job.is_finished_ok:
            counts['finished'] += 1
            if job.process_type == PW:
                status['dft_labels'] += 1
        elif job.is_terminated:
            counts['failed'] += 1
        else:
            state = job.get_scheduler_state()
            counts['queued' if state is None or state.value in ('queued', 'queued_held', 'undetermined') else
                   'running'] += 1
    status['warnings'] = campaign_warnings(message for _, message, _ in _reports(node))
    done = [row for row in config.plan_rows() if _stage_done(row.stage, status['stage'])]
    total = sum(row.cpu_hours for row in config.plan_rows())
    spent = sum(row.cpu_hours for row in done)
    if not node.is_terminated and total > 0 and spent > 0:
        status['projected_seconds'] = status['elapsed_seconds'] * total / spent
    return status


def _stage_done(plan_stage: str, current: str) -> bool:
    """Whether a plan row's stage is behind the campaign's current stage."""
    order = {name: i for i, name in enumerate(STAGES)}
    name = plan_stage.split('.')[0]  # 'active_learning.mtp' -> 'active_learning'
    return name in order and current in order and order[name] < order[current]


def _fmt(value, digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    return f'{seconds // 60}m{seconds % 60:02d}s'


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ['  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def render_status(status: dict) -> str:
    """The one screen of ``campaign status``."""
    lines = [f'campaign {status["name"]} <{status["pk"]}>: {status["state"]}'
             + (f' (exit {status["exit_status"]}: {status["exit_message"]})' if status.get('exit_status') else '')]
    marks = []
    for stage in STAGES[1:-1]:
        order = STAGES.index(status['stage']) if status['stage'] in STAGES else 0
        mark = 'x' if STAGES.index(stage) < order else ('>' if stage == status['stage'] else ' ')
        marks.append(f'[{mark}] {stage}')
    lines.append('stages: ' + '  '.join(marks))
    elapsed = f'elapsed {_duration(status["elapsed_seconds"])}'
    if status.get('projected_seconds'):
        elapsed += f', projected total {_duration(status["projected_seconds"])} (crude: the plan\'s core-hours)'
    lines.append(elapsed + f'; pw.x runs finished: {status["dft_labels"]}')
    for family, entry in status['families'].items():
        lines.append('')
        stop = f'; stop: {entry["stop_reason"]}' if entry['stop_reason'] else ''
        lines.append(f'{family}: {entry["state"]}{stop}')
        if entry['rows']:
            rows = [('iter', 'frames', 'F-RMSE train', 'F-RMSE test', 'cand. frac.', 'labels', 'new F-RMSE')]
            for row in entry['rows']:
                rows.append((row['iteration'], row.get('training_frames', '-'), _fmt(row.get('train_force_rmse')),
                             _fmt(row.get('test_force_rmse')), _fmt(row.get('candidate_fraction'), 3),
                             row.get('labels_added', '-'), _fmt(row.get('new_frames_force_rmse'))))
            lines += ['  ' + line for line in _table(rows)]
        if entry.get('final'):
            final = entry['final']
            lines.append(f'  final fit: force RMSE train {_fmt(final.get("train_force_rmse"))} test '
                         f'{_fmt(final.get("test_force_rmse"))} eV/Å')
    if status['computers']:
        lines.append('')
        rows = [('computer', 'running', 'queued', 'finished', 'failed')]
        rows += [(name, c['running'], c['queued'], c['finished'], c['failed'])
                 for name, c in status['computers'].items()]
        lines += _table(rows)
    if status['warnings']:
        lines.append('')
        lines.append(f'warnings ({len(status["warnings"])}):')
        lines += [f'  ! {warning}' for warning in status['warnings']]
    return '\n'.join(lines)
