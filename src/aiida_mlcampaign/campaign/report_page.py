"""The report page of a campaign: one self-contained HTML file and the same content in Markdown (AiiDA-free).

Why a module of its own: ``aiida-mlcampaign campaign report`` (``cli/campaign_report.py``) gathers plain data from
the graph; what the page shows and how is decided here, on plain dicts, so that it is tested without a profile and
a user can render a report from a saved ``report.json``.

``data`` (every key optional except where said):

* ``report``: the campaign's ``report`` Dict as a dict (schema: :func:`aiida_mlcampaign.campaign.report.summarize`),
  or None while the campaign has not written it; ``report_final`` False marks a provisional one (gathered from the
  stages that finished);
* ``campaign``: ``pk``, ``uuid``, ``label``, ``description``, ``state``, ``exit_status``, ``exit_message``,
  ``stage``, ``ctime``, ``mtime``, ``terminated`` (bool), ``running`` (``[{label, process_label, pk, state}]``: the
  children still going), ``generated`` (when the page was made);
* ``codes``: ``[{role, label, computer, version}]``;
* ``families``: ``{family: {pk, state, stop_reason, iterations: [row of the loop's summary]}}``;
* ``figures``: names; each is the file ``figures/<name>.png`` next to the page;
* ``provenance``: ``report``, ``errors`` (PKs), ``training_set``/``test_set``/``seed_set`` (``{pk, frames}``),
  ``potentials`` ``{family: pk}``, ``family_training_frames`` ``{family: frames}``, ``figures`` ``{name: pk}``,
  ``children`` ``{call link label: pk}``.

Public: :func:`render_html`, :func:`render_markdown`, :func:`fmt` (how every number is written, both pages),
:func:`figure_path`.
"""

from __future__ import annotations

import html
import math
import typing as t
import urllib.parse

__all__ = ('figure_path', 'fmt', 'render_html', 'render_markdown')

DASH = '—'
#: Every test metric of ``compare_errors`` the page shows, in its row order: (key, label).
ERROR_METRICS = (
    ('energy_rmse_meV_per_atom', 'Energy RMSE (meV/atom)'),
    ('force_rmse_meV_per_A', 'Force RMSE (meV/Å)'),
    ('virial_rmse_meV_per_atom', 'Virial RMSE (meV/atom)'),
    ('energy_mae_meV_per_atom', 'Energy MAE (meV/atom)'),
    ('force_mae_meV_per_A', 'Force MAE (meV/Å)'),
)
#: Codes behind each kind of number (roles of the campaign's ``codes`` input).
ROLES_OF = {
    'errors': ('dft', '{family}_train'),
    'md': ('dft', '{family}_train', 'explore', 'md'),
    'speed': ('md',),
}


# ---------------------------------------------------------------------------------------------------- numbers
def fmt(value: t.Any, digits: int = 4) -> str:
    """A number as the page writes it: ``digits`` significant figures, None/NaN as a dash, bools as yes/no."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return DASH
        if math.isinf(value):
            return '∞' if value > 0 else '−∞'
        return f'{value:.{digits}g}'
    return str(value)


def _pm(value, error, digits: int = 4) -> str:
    if value is None:
        return DASH
    if error is None or (isinstance(error, float) and math.isnan(error)):
        return fmt(value, digits)
    return f'{fmt(value, digits)} ± {fmt(error, 2)}'


def _milli(value):
    return None if value is None else value * 1000.0


def _run_key(key: str) -> tuple[str, str]:
    """``mtp_600K`` -> (``mtp``, ``600``)."""
    family, _, temperature = key.rpartition('_')
    return (family, temperature[:-1]) if temperature.endswith('K') else (key, '')


# --------------------------------------------------------------------------------------------- the content
class Table(t.NamedTuple):
    header: list[str]
    rows: list[list[str]]
    note: str = ''


class Section(t.NamedTuple):
    key: str
    title: str
    tables: list[Table]
    text: list[str]  # paragraphs, plain text
    missing: str = ''  # why there is nothing yet


def _families(data: dict) -> list[str]:
    report = data.get('report') or {}
    names = list((report.get('families') or {}))
    for name in list(report.get('errors') or {}) + list(data.get('families') or {}):
        if name not in names:
            names.append(name)
    return names


def _missing(data: dict, what: str) -> str:
    campaign = data.get('campaign') or {}
    if campaign.get('terminated') is False:
        stage = campaign.get('stage')
        return f'{what}: not available yet, the campaign is still running' + (f' (stage {stage})' if stage else '')
    return f'{what}: not computed by this campaign (stage disabled or skipped; see the warnings)'


def _errors_section(data: dict) -> Section:
    report = data.get('report') or {}
    errors = report.get('errors') or {}
    rows_by_family = report.get('families') or {}
    families = [f for f in _families(data) if f in errors or f in rows_by_family]
    title = 'Test-set errors'
    if not families:
        return Section('errors', title, [], [], _missing(data, 'errors on the test set'))
    header = ['Metric'] + [f.upper() for f in families]
    rows = []
    for key, label in ERROR_METRICS:
        values = [(errors.get(f) or {}).get(key) for f in families]
        if key.startswith(('energy_rmse', 'force_rmse')) and any(v is None for v in values):
            # scored on the test set by the loop (eV) where compare_errors did not run
            fallback = 'test_energy_rmse_per_atom' if key.startswith('energy') else 'test_force_rmse'
            values = [v if v is not None else _milli((rows_by_family.get(f) or {}).get(fallback))
                      for v, f in zip(values, families)]
        if all(v is None for v in values) and key not in ('energy_rmse_meV_per_atom', 'force_rmse_meV_per_A'):
            continue
        rows.append([label] + [fmt(v) for v in values])
    for key, label in (('train_energy_rmse_per_atom', 'Train energy RMSE (meV/atom)'),
                       ('train_force_rmse', 'Train force RMSE (meV/Å)')):
        values = [_milli((rows_by_family.get(f) or {}).get(key)) for f in families]
        if any(v is not None for v in values):
            rows.append([label] + [fmt(v) for v in values])
    frames = [(errors.get(f) or {}).get('n_frames') for f in families]
    rows.append(['Test frames'] + [fmt(v) for v in frames])
    by_element = {f: (errors.get(f) or {}).get('force_rmse_by_element_meV_per_A') or {} for f in families}
    for element in sorted({e for values in by_element.values() for e in values}):
        rows.append([f'Force RMSE {element} (meV/Å)'] + [fmt(by_element[f].get(element)) for f in families])
    labels = report.get('labels') or {}
    note = (f'Every family scored on the same {fmt(labels.get("test_frames"))} held-out DFT frame(s), trained on '
            f'{fmt(labels.get("training_frames"))}.')
    return Section('errors', title, [Table(header, rows, note)], [])


def _rdf_section(data: dict) -> Section:
    overlap = (data.get('report') or {}).get('rdf_overlap') or {}
    title = 'RDF overlap with DFT (AIMD at the same temperature)'
    if not overlap:
        return Section('rdf', title, [], [], _missing(data, 'RDF overlap'))
    pairs = []
    for scores in overlap.values():
        for name in (scores or {}):
            if name != 'total' and name not in pairs:
                pairs.append(name)
    header = ['Model', 'T (K)', 'total'] + pairs
    rows = []
    for key in sorted(overlap, key=lambda k: (_run_key(k)[0], _float(_run_key(k)[1]))):
        family, temperature = _run_key(key)
        scores = overlap[key] or {}
        rows.append([family.upper(), temperature, fmt(scores.get('total'), 3)] + [fmt(scores.get(p), 3) for p in pairs])
    note = 'S = 1 − ∫|g_DFT − g_model| dr / ∫(g_DFT + g_model) dr; 1 = identical.'
    return Section('rdf', title, [Table(header, rows, note)], [])


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.inf


def _vdos_section(data: dict) -> Section:
    overlap = (data.get('report') or {}).get('vdos_overlap') or {}
    title = 'Vibrational DOS overlap'
    if not overlap:
        return Section('vdos', title, [], [], _missing(data, 'VDOS overlap'))
    labels = []
    for values in overlap.values():
        for name in values or {}:
            if name != 'reference' and name not in labels:
                labels.append(name)
    header = ['T', 'Reference'] + [name.upper() for name in labels]
    rows = [[key, str((overlap[key] or {}).get('reference', DASH)).upper()]
            + [fmt((overlap[key] or {}).get(name), 3) for name in labels]
            for key in sorted(overlap, key=lambda k: _float(k.rstrip('K')))]
    note = 'S = ∫ min(g_ref, g_model) dν of unit-area DOS; 1 = identical.'
    return Section('vdos', title, [Table(header, rows, note)], [])


def _diffusive(run: dict, values: dict) -> str:
    for source in (values, run):
        if isinstance(source.get('diffusive'), bool):
            return fmt(source['diffusive'])
    value, error = values.get('D_A2_per_ps'), values.get('D_err_A2_per_ps')
    if value is None or error is None or (isinstance(error, float) and math.isnan(error)):
        return DASH
    return ('yes' if value > 2 * error else 'no') + '*'


def _diffusion_section(data: dict) -> Section:
    diffusion = (data.get('report') or {}).get('diffusion') or {}
    arrhenius = (data.get('report') or {}).get('arrhenius') or {}
    tables, text = [], []
    if diffusion:
        header = ['Model', 'T (K)', 'Species', 'D (Å²/ps)', 'D (cm²/s)', 'Error method', 'Window (ps)', 'Diffusive']
        rows = []
        flagged = False
        for key in sorted(diffusion, key=lambda k: (_run_key(k)[0], _float(_run_key(k)[1]))):
            family, temperature = _run_key(key)
            run = diffusion[key] or {}
            species = dict(run.get('species') or {})
            if run.get('all'):
                species['all'] = run['all']
            for name, values in species.items():
                values = values or {}
                window = values.get('window_ps') or []
                flag = _diffusive(run, values)
                flagged = flagged or flag.endswith('*')
                rows.append([family.upper(), fmt(run.get('temperature_K')) if run.get('temperature_K') is not None
                             else temperature, name, _pm(values.get('D_A2_per_ps'), values.get('D_err_A2_per_ps')),
                             _pm(values.get('D_cm2_per_s'), values.get('D_err_cm2_per_s')),
                             str(values.get('error_method') or DASH),
                             ' – '.join(fmt(w, 3) for w in window) if window else DASH, flag])
        note = '* D larger than twice its error (the fit gave no diffusive flag).' if flagged else ''
        tables.append(Table(header, rows, note))
    if arrhenius:
        header = ['Fit', 'Ea (eV)', 'Prefactor', 'Temperatures (K)', 'Weighted']
        rows = [[key.upper() if '_' not in key else key.split('_', 1)[0].upper() + ' (' + key.split('_', 1)[1] + ')',
                 _pm(fit.get('activation_energy_eV'), fit.get('activation_energy_err_eV'), 3),
                 _pm(fit.get('prefactor'), fit.get('prefactor_err'), 3) + (
                     f' {fit["prefactor_units"]}' if fit.get('prefactor_units') else ''),
                 ', '.join(fmt(v) for v in fit.get('temperatures_K') or []) or DASH, fmt(fit.get('weighted'))]
                for key, fit in sorted(arrhenius.items()) for fit in [fit or {}]]
        tables.append(Table(header, rows, 'Ea from ln D = ln D0 − Ea / k_B T.'))
    title = 'Diffusion and activation energy'
    if not tables:
        return Section('diffusion', title, [], [], _missing(data, 'D(T) and Ea'))
    if diffusion and not arrhenius:
        text.append(_missing(data, 'Arrhenius fit (needs D at two temperatures or more)'))
    return Section('diffusion', title, tables, text)


def _speed_section(data: dict) -> Section:
    speed = (data.get('report') or {}).get('speed') or {}
    title = 'MD speed'
    models = speed.get('models') or list(speed.get('atom_steps_per_s') or {})
    if not models:
        return Section('speed', title, [], [], _missing(data, 'speed comparison'))
    details = speed.get('details') or {}
    header = ['Model', 'atom-steps/s', 'Ratio to slowest', 'Hardware']
    rows = [[m.upper(), fmt((speed.get('atom_steps_per_s') or {}).get(m)),
             fmt((speed.get('ratio_to_slowest') or {}).get(m), 3),
             str((details.get(m) or {}).get('hardware') or (details.get(m) or {}).get('label') or DASH)]
            for m in models]
    return Section('speed', title, [Table(header, rows)], list(speed.get('statements') or []))


AL_COLUMNS = (
    ('iteration', 'Iter.', None), ('training_frames', 'Training frames', None),
    ('candidate_fraction', 'Candidate fraction', None), ('labels_added', 'Labels added', None),
    ('train_force_rmse', 'Train F RMSE (meV/Å)', 1000.0), ('test_force_rmse', 'Test F RMSE (meV/Å)', 1000.0),
    ('test_energy_rmse_per_atom', 'Test E RMSE (meV/atom)', 1000.0),
    ('new_frames_force_rmse', 'F RMSE on new labels (meV/Å)', 1000.0),
)


def _join(words: list[str]) -> str:
    return words[0] + ' ' + '; '.join(words[1:]) if len(words) > 1 else ''.join(words)


def _learning_section(data: dict) -> Section:
    report_families = (data.get('report') or {}).get('families') or {}
    loops = data.get('families') or {}
    tables, text = [], []
    for family in _families(data):
        loop = loops.get(family) or {}
        rows_in = loop.get('iterations') or []
        summary = report_families.get(family) or {}
        state = loop.get('state')
        words = [f'{family.upper()}:']
        if loop.get('pk') is not None:
            words.append(f'loop <{loop["pk"]}>' + (f' {state}' if state else ''))
        if summary.get('iterations') is not None:
            words.append(f'{summary["iterations"]} iteration(s), {fmt(summary.get("labels_added"))} label(s) added')
        if loop.get('stop_reason'):
            words.append(f'stop: {loop["stop_reason"]}')
        elif loop and state not in (None, 'finished'):
            words.append('not stopped yet')
        if not rows_in:
            text.append(_join(words + ['no iteration finished yet' if loop else 'no active-learning loop']))
            continue
        header = [label for _, label, _ in AL_COLUMNS] + ['Warnings']
        rows = []
        for row in rows_in:
            cells = []
            for key, _, scale in AL_COLUMNS:
                value = row.get(key)
                cells.append(fmt(value * scale if (scale and isinstance(value, (int, float))) else value,
                                 3 if key == 'candidate_fraction' else 4))
            cells.append('; '.join(row.get('warnings') or []) or '')
            rows.append(cells)
        tables.append(Table(header, rows, _join(words)))
    title = 'Active learning'
    if not tables and not text:
        return Section('learning', title, [], [], _missing(data, 'active learning'))
    return Section('learning', title, tables, text)


def _code_cells(data: dict, roles: t.Iterable[str]) -> str:
    codes = {c.get('role'): c for c in data.get('codes') or []}
    words = []
    for role in roles:
        code = codes.get(role)
        if code is None:
            continue
        text = f'{code.get("label") or "?"}@{code.get("computer") or "?"}'
        if code.get('version'):
            text += f' v{code["version"]}'
        words.append(f'{role}: {text}')
    return '; '.join(words) or DASH


def _pks(*pairs) -> str:
    return ', '.join(f'{name} <{pk}>' for name, pk in pairs if pk is not None) or DASH


def _provenance_section(data: dict) -> Section:
    provenance = data.get('provenance') or {}
    report = data.get('report') or {}
    figures_pk = provenance.get('figures') or {}
    potentials = provenance.get('potentials') or {}
    training = (provenance.get('training_set') or {})
    test = (provenance.get('test_set') or {})
    labels = report.get('labels') or {}
    train_frames = training.get('frames', labels.get('training_frames'))
    test_frames = test.get('frames', labels.get('test_frames'))
    per_family = provenance.get('family_training_frames') or {}
    report_pk = ('report', provenance.get('report'))

    def frames(family: str | None) -> tuple[str, str, str]:
        train = per_family.get(family, train_frames) if family else train_frames
        total = (train or 0) + (test_frames or 0) if (train is not None or test_frames is not None) else None
        return fmt(train), fmt(test_frames), fmt(total)

    def roles(kind: str, family: str | None = None) -> list[str]:
        return [role.format(family=family) for role in ROLES_OF[kind]]

    def figure(name: str):
        return (f'figure {name}', figures_pk.get(name))

    rows = []
    for family in _families(data):
        rows.append([f'Test errors {family.upper()}', *frames(family), _code_cells(data, roles('errors', family)),
                     _pks(report_pk, ('errors', provenance.get('errors')),
                          (f'potential {family}', potentials.get(family)), ('training_set', training.get('pk')),
                          ('test_set', test.get('pk')), figure('parity'))])
    for key in report.get('rdf_overlap') or {}:
        family, _ = _run_key(key)
        rows.append([f'RDF overlap {key}', *frames(family), _code_cells(data, roles('md', family)),
                     _pks(report_pk, (f'potential {family}', potentials.get(family)), figure(f'rdf_{key}'),
                          figure(f'rdf_compare_{key}'))])
    for key, values in (report.get('vdos_overlap') or {}).items():
        models = [m for m in (values or {}) if m != 'reference']
        rows.append([f'VDOS overlap {key}', *frames(None), _code_cells(data, ['dft', 'md']),
                     _pks(report_pk, *((f'potential {m}', potentials.get(m)) for m in models),
                          figure(f'vdos_compare_{key}'))])
    for key in report.get('diffusion') or {}:
        family, _ = _run_key(key)
        rows.append([f'D(T) {key}', *frames(family), _code_cells(data, roles('md', family)),
                     _pks(report_pk, (f'potential {family}', potentials.get(family)), figure(f'msd_{key}'))])
    for key in report.get('arrhenius') or {}:
        family = key.split('_', 1)[0]
        rows.append([f'Ea {key}', *frames(family), _code_cells(data, roles('md', family)),
                     _pks(report_pk, (f'potential {family}', potentials.get(family)), figure(f'arrhenius_{key}'))])
    if (report.get('speed') or {}).get('models'):
        rows.append(['Speed', DASH, DASH, DASH, _code_cells(data, roles('speed')), _pks(report_pk, figure('speed'))])
    nodes = [['report', fmt(provenance.get('report'))], ['errors', fmt(provenance.get('errors'))]]
    for name in ('training_set', 'test_set', 'seed_set'):
        entry = provenance.get(name) or {}
        nodes.append([f'{name} ({fmt(entry.get("frames"))} frames)', fmt(entry.get('pk'))])
    nodes += [[f'potentials.{family}', fmt(pk)] for family, pk in sorted(potentials.items())]
    nodes += [[f'figures.{name}', fmt(pk)] for name, pk in sorted(figures_pk.items())]
    nodes += [[f'child {label}', fmt(pk)] for label, pk in sorted((provenance.get('children') or {}).items())]
    codes = [[str(c.get('role') or DASH), str(c.get('label') or DASH), str(c.get('computer') or DASH),
              str(c.get('version') or DASH)] for c in data.get('codes') or []]
    tables = []
    if rows:
        tables.append(Table(['Number', 'Training frames (DFT)', 'Test frames (DFT)', 'DFT labels in all', 'Codes',
                             'Nodes (PK)'], rows,
                            'Every number rests on the DFT labels it was trained on and scored against.'))
    if codes:
        tables.append(Table(['Role', 'Code', 'Computer', 'Version'], codes))
    tables.append(Table(['Node', 'PK'], nodes))
    return Section('provenance', 'Provenance', tables, [])


def _sections(data: dict) -> list[Section]:
    return [_errors_section(data), _rdf_section(data), _vdos_section(data), _diffusion_section(data),
            _speed_section(data)]


def _header_lines(data: dict) -> list[tuple[str, str]]:
    campaign = data.get('campaign') or {}
    report = data.get('report') or {}
    state = campaign.get('state') or DASH
    if campaign.get('exit_status') not in (None, 0):
        state += f' [{campaign["exit_status"]}]' + (f' {campaign["exit_message"]}' if campaign.get('exit_message')
                                                   else '')
    lines = [('Campaign', f'{report.get("campaign") or campaign.get("label") or DASH}'
                          + (f' <{campaign["pk"]}>' if campaign.get('pk') is not None else '')),
             ('Material', ', '.join(report.get('species') or campaign.get('species') or []) or DASH),
             ('State', state), ('Stage', campaign.get('stage') or DASH)]
    for key, label in (('description', 'Description'), ('uuid', 'UUID'), ('ctime', 'Created'),
                       ('mtime', 'Last change'), ('generated', 'Page generated')):
        if campaign.get(key):
            lines.append((label, str(campaign[key])))
    labels = report.get('labels') or {}
    if labels:
        lines.append(('DFT labels', f'{fmt(labels.get("training_frames"))} training, '
                                    f'{fmt(labels.get("test_frames"))} test'))
    return lines


def _status_lines(data: dict) -> list[str]:
    """What the reader must know before the numbers: a running campaign, a provisional report."""
    campaign = data.get('campaign') or {}
    lines = []
    if campaign.get('terminated') is False:
        lines.append(f'The campaign is still running (stage {campaign.get("stage") or "?"}): this page shows what '
                     'exists so far.')
        for child in campaign.get('running') or []:
            lines.append(f'running: {child.get("label")} {child.get("process_label") or ""}<{child.get("pk")}> '
                         f'({child.get("state") or "?"})')
    if data.get('report') is None:
        lines.append('No report yet: the numbers below are missing until the campaign writes its report.')
    elif data.get('report_final') is False:
        lines.append('Provisional numbers: gathered from the stages that finished; the campaign has not written its '
                     'report yet.')
    return lines


# ------------------------------------------------------------------------------------------------ markdown
def figure_path(name: str) -> str:
    """Where the page expects figure ``name``: ``figures/<name>.png``, relative to the page (URL-quoted)."""
    return 'figures/' + urllib.parse.quote(f'{name}.png')


def _md(text: t.Any) -> str:
    return str(text).replace('\\', '\\\\').replace('|', '\\|').replace('\n', ' ')


def _md_table(table: Table) -> list[str]:
    lines = ['| ' + ' | '.join(_md(h) for h in table.header) + ' |',
             '|' + '|'.join('---' for _ in table.header) + '|']
    lines += ['| ' + ' | '.join(_md(c) for c in row) + ' |' for row in table.rows]
    if table.note:
        lines += ['', f'_{_md(table.note)}_']
    return lines + ['']


def _md_section(section: Section, level: str = '###') -> list[str]:
    lines = [f'{level} {section.title}', '']
    if section.missing:
        return lines + [f'_{_md(section.missing)}_', '']
    for table in section.tables:
        lines += _md_table(table)
    lines += [f'{_md(line)}  ' for line in section.text]
    return lines + ([''] if section.text else [])


def render_markdown(data: dict) -> str:
    """The report page in Markdown (GitHub flavour): the same sections as :func:`render_html`."""
    campaign = data.get('campaign') or {}
    report = data.get('report') or {}
    name = report.get('campaign') or campaign.get('label') or 'campaign'
    lines = [f'# Campaign report: {_md(name)}', '']
    lines += [f'- **{label}**: {_md(value)}' for label, value in _header_lines(data)] + ['']
    for line in _status_lines(data):
        lines.append(f'> **{_md(line)}**  ')
    warnings = report.get('warnings') or []
    lines += ['', f'## Warnings ({len(warnings)})', '']
    lines += [f'- ⚠ {_md(w)}' for w in warnings] or ['None.']
    lines += ['', '## The numbers of the study', '']
    for section in _sections(data):
        lines += _md_section(section)
    lines += _md_section(_learning_section(data), '##')
    lines += ['## Figures', '']
    figures = data.get('figures') or []
    lines += [f'![{_md(f)}]({figure_path(f)})' + '\n' for f in figures] or ['_No figure yet._', '']
    lines += _md_section(_provenance_section(data), '##')
    return '\n'.join(lines).rstrip() + '\n'


# ---------------------------------------------------------------------------------------------------- html
def _e(text: t.Any) -> str:
    return html.escape(str(text), quote=True)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1.5em;color:#1d2330;background:#fff;line-height:1.4}
h1{margin:.2em 0;font-size:1.8em}h2{border-bottom:2px solid #dde3ee;padding-bottom:.2em;margin-top:1.6em}
h3{margin-top:1.3em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #cdd5e2;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef2f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#f8fafd}
dl.header{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:.5em 0}
dl.header dt{font-weight:600}dl.header dd{margin:0}
.status{background:#e8f1ff;border-left:5px solid #2b6cd4;padding:.6em 1em;margin:1em 0}
.warnings{background:#fff4e5;border:2px solid #e08a00;border-radius:6px;padding:.6em 1em;margin:1em 0}
.warnings h2{border:none;margin:.2em 0;color:#a35d00}.warnings li{margin:.2em 0}
.ok{color:#2d7a2d}.missing{color:#6b7380;font-style:italic}.note{color:#4a5260;font-size:.88em}
.statement{font-weight:600}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em}
figure{margin:0;border:1px solid #dde3ee;border-radius:6px;padding:.5em;background:#fff}
figure img{width:100%;height:auto}figcaption{font-size:.85em;color:#4a5260;text-align:center}
"""


def _numeric(cell: str) -> bool:
    head = cell.split(' ')[0].replace('±', '').replace('−', '-')
    try:
        float(head)
    except ValueError:
        return False
    return True


def _html_table(table: Table) -> list[str]:
    out = ['<table>', '<thead><tr>' + ''.join(f'<th>{_e(h)}</th>' for h in table.header) + '</tr></thead>', '<tbody>']
    for row in table.rows:
        out.append('<tr>' + ''.join(f'<td class="num">{_e(c)}</td>' if _numeric(c) else f'<td>{_e(c)}</td>'
                                    for c in row) + '</tr>')
    out.append('</tbody></table>')
    if table.note:
        out.append(f'<p class="note">{_e(table.note)}</p>')
    return out


def _html_section(section: Section, level: int = 3) -> list[str]:
    out = [f'<section id="{_e(section.key)}">', f'<h{level}>{_e(section.title)}</h{level}>']
    if section.missing:
        out.append(f'<p class="missing">{_e(section.missing)}</p>')
    for table in section.tables:
        out += _html_table(table)
    out += [f'<p class="statement">{_e(line)}</p>' if section.key == 'speed' else f'<p>{_e(line)}</p>'
            for line in section.text]
    return out + ['</section>']


def render_html(data: dict) -> str:
    """The report page as one self-contained HTML document (inline CSS; figures are ``figures/<name>.png``)."""
    campaign = data.get('campaign') or {}
    report = data.get('report') or {}
    name = report.get('campaign') or campaign.get('label') or 'campaign'
    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f'<title>Campaign report: {_e(name)}</title>', f'<style>{CSS}</style>', '</head>', '<body>',
           f'<h1>Campaign report: {_e(name)}</h1>', '<dl class="header">']
    out += [f'<dt>{_e(label)}</dt><dd>{_e(value)}</dd>' for label, value in _header_lines(data)]
    out.append('</dl>')
    status = _status_lines(data)
    if status:
        out.append('<div class="status">' + '<br>'.join(_e(line) for line in status) + '</div>')
    warnings = report.get('warnings') or []
    if warnings:
        out += ['<div class="warnings" id="warnings">', f'<h2>⚠ Warnings ({len(warnings)})</h2>', '<ul>']
        out += [f'<li>{_e(w)}</li>' for w in warnings]
        out += ['</ul>', '</div>']
    elif data.get('report') is not None:
        out.append('<p class="ok" id="warnings">No warnings.</p>')
    out += ['<section id="numbers">', '<h2>The numbers of the study</h2>']
    for section in _sections(data):
        out += _html_section(section)
    out.append('</section>')
    out += _html_section(_learning_section(data), 2)
    out += ['<section id="figures">', '<h2>Figures</h2>']
    figures = data.get('figures') or []
    pks = (data.get('provenance') or {}).get('figures') or {}
    if figures:
        out.append('<div class="figures">')
        for figure in figures:
            caption = figure + (f' <{pks[figure]}>' if pks.get(figure) is not None else '')
            src = _e(figure_path(figure))
            out.append(f'<figure><a href="{src}"><img src="{src}" alt="{_e(figure)}"></a>'
                       f'<figcaption>{_e(caption)}</figcaption></figure>')
        out.append('</div>')
    else:
        out.append('<p class="missing">No figure yet.</p>')
    out.append('</section>')
    out += _html_section(_provenance_section(data), 2)
    out += ['</body>', '</html>']
    return '\n'.join(out) + '\n'
