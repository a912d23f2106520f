"""The campaign report page (``aiida_mlcampaign.campaign.report_page``) on hand-written data: every number of the
study on the page, HTML well formed and escaped, every figure a file, a partial report says what is missing; and
the page as a real browser draws it (headless Chromium screenshot)."""

from __future__ import annotations

import copy
import html
import html.parser
import os
import pathlib
import shutil
import subprocess

import pytest

from aiida_mlcampaign.campaign.report_page import fmt, render_html, render_markdown

FIGURES = ('parity', 'rdf_mtp_600K', 'rdf_compare_mtp_600K', 'msd_nep_600K', 'vdos_compare_600K', 'arrhenius_nep',
           'speed')
#: Headless browsers the screenshot test tries, in order. CI installs the first (``.ci/run``:
#: ``apt-get install -y chromium-headless-shell``, Debian bookworm).
BROWSERS = ('chromium-headless-shell', 'chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable',
            'headless_shell')

REPORT = {
    'campaign': 'cu7ps6-toy',
    'species': ['Cu', 'P', 'S'],
    'labels': {'training_frames': 412, 'test_frames': 46},
    'families': {
        'mtp': {'iterations': 3, 'labels_added': 57, 'last_candidate_fraction': 0.012, 'train_force_rmse': 0.0712,
                'train_energy_rmse_per_atom': 0.00231, 'test_force_rmse': 0.0891, 'test_energy_rmse_per_atom': 0.00312},
        'nep': {'iterations': 2, 'labels_added': 31, 'last_candidate_fraction': 0.021, 'train_force_rmse': 0.0644,
                'train_energy_rmse_per_atom': 0.00198, 'test_force_rmse': 0.0823, 'test_energy_rmse_per_atom': 0.00287},
    },
    'errors': {
        'mtp': {'energy_rmse_meV_per_atom': 3.127, 'force_rmse_meV_per_A': 89.14, 'virial_rmse_meV_per_atom': 11.52,
                'energy_mae_meV_per_atom': 2.411, 'force_mae_meV_per_A': 66.03,
                'force_rmse_by_element_meV_per_A': {'Cu': 95.51, 'P': 60.27, 'S': 81.66}, 'n_frames': 46},
        'nep': {'energy_rmse_meV_per_atom': 2.874, 'force_rmse_meV_per_A': 82.36, 'virial_rmse_meV_per_atom': None,
                'energy_mae_meV_per_atom': 2.093, 'force_mae_meV_per_A': 61.48,
                'force_rmse_by_element_meV_per_A': {'Cu': 88.07, 'P': 57.11, 'S': 75.92}, 'n_frames': 46},
    },
    'rdf_overlap': {
        'mtp_600K': {'total': 0.9731, 'Cu-S': 0.9612, 'P-S': 0.9887},
        'nep_600K': {'total': 0.9688, 'Cu-S': 0.9544, 'P-S': 0.9901},
    },
    'vdos_overlap': {'600K': {'reference': 'dft', 'mtp': 0.9123, 'nep': 0.9347}},
    'diffusion': {
        'mtp_600K': {'temperature_K': 600.0, 'species': {
            'Cu': {'D_A2_per_ps': 0.04215, 'D_err_A2_per_ps': 0.00312, 'D_cm2_per_s': 4.215e-06,
                   'D_err_cm2_per_s': 3.12e-07, 'error_method': 'block_average', 'window_ps': [2.0, 18.0]},
            'S': {'D_A2_per_ps': 0.00031, 'D_err_A2_per_ps': 0.00029, 'D_cm2_per_s': 3.1e-08,
                  'D_err_cm2_per_s': 2.9e-08, 'error_method': 'block_average', 'window_ps': [2.0, 18.0]}}},
        'nep_600K': {'temperature_K': 600.0, 'diffusive': True, 'species': {
            'Cu': {'D_A2_per_ps': 0.03977, 'D_err_A2_per_ps': 0.00288, 'D_cm2_per_s': 3.977e-06,
                   'D_err_cm2_per_s': 2.88e-07, 'error_method': 'least_squares_lower_bound',
                   'window_ps': [2.0, 18.0]}}},
        'nep_900K': {'temperature_K': 900.0, 'species': {
            'Cu': {'D_A2_per_ps': 0.1618, 'D_err_A2_per_ps': 0.0101, 'D_cm2_per_s': 1.618e-05,
                   'D_err_cm2_per_s': 1.01e-06, 'error_method': 'block_average', 'window_ps': [2.0, 18.0],
                   'diffusive': True}}},
    },
    'arrhenius': {'nep': {'quantity': 'diffusion', 'activation_energy_eV': 0.2128, 'activation_energy_err_eV': 0.0154,
                          'prefactor': 2.481, 'prefactor_err': 0.31, 'prefactor_units': 'same as the values',
                          'temperatures_K': [600.0, 900.0], 'weighted': True}},
    'speed': {'models': ['nep', 'mtp'], 'atom_steps_per_s': {'nep': 4.13e6, 'mtp': 1.007e5},
              'ratio_to_slowest': {'nep': 41.01, 'mtp': 1.0}, 'slowest': 'mtp', 'fastest': 'nep',
              'statements': ['NEP 41.0x faster than MTP'],
              'details': {'nep': {'hardware': '1 core'}, 'mtp': {'hardware': '1 core'}}},
    'warnings': ['diffusion mtp_600K: S <moves> less than 1 Å² & is not diffusive',
                 '<script>alert("x")</script>'],
}

DATA = {
    'report': REPORT,
    'report_final': True,
    'campaign': {'pk': 1234, 'uuid': '0b6a1b2c-0000-4000-8000-000000000001', 'label': 'cu7ps6-toy',
                 'description': 'Cu7PS6 argyrodite, MTP vs NEP', 'state': 'finished', 'exit_status': 0,
                 'stage': 'done', 'ctime': '2025-01-02T03:04:05+00:00', 'terminated': True, 'running': []},
    'codes': [{'role': 'dft', 'label': 'pw', 'computer': 'localhost', 'version': '7.2'},
              {'role': 'mtp_train', 'label': 'motep', 'computer': 'localhost', 'version': None},
              {'role': 'nep_train', 'label': 'neppo', 'computer': 'localhost', 'version': None},
              {'role': 'md', 'label': 'mlcampaign-md', 'computer': 'localhost', 'version': None}],
    'families': {
        'mtp': {'pk': 2001, 'state': 'finished', 'stop_reason': 'converged: candidate fraction 0.012 < 0.05',
                'iterations': [
                    {'iteration': 0, 'training_frames': 355, 'candidate_fraction': 0.182, 'labels_added': 40,
                     'train_force_rmse': 0.0801, 'test_force_rmse': 0.1014, 'new_frames_force_rmse': 0.2231,
                     'warnings': []},
                    {'iteration': 1, 'training_frames': 395, 'candidate_fraction': 0.012, 'labels_added': 17,
                     'train_force_rmse': 0.0733, 'test_force_rmse': 0.0911, 'new_frames_force_rmse': 0.1122,
                     'warnings': ['test force RMSE grew & shrank']}]},
        'nep': {'pk': 2002, 'state': 'finished', 'stop_reason': 'max_iterations: 2 iteration(s) run',
                'iterations': [{'iteration': 0, 'training_frames': 412, 'candidate_fraction': 0.021,
                                'labels_added': 0, 'train_force_rmse': 0.0644, 'test_force_rmse': 0.0823}]},
    },
    'figures': list(FIGURES),
    'provenance': {'report': 3001, 'errors': 3002, 'training_set': {'pk': 3003, 'frames': 412},
                   'test_set': {'pk': 3004, 'frames': 46}, 'seed_set': {'pk': 3005, 'frames': 401},
                   'potentials': {'mtp': 3006, 'nep': 3007}, 'family_training_frames': {'mtp': 412, 'nep': 412},
                   'figures': {name: 3100 + i for i, name in enumerate(FIGURES)}, 'children': {'report': 3008}},
}


def expected_numbers(data: dict) -> list[str]:
    """Every number of the study as the page writes it (``fmt``)."""
    report = data['report']
    numbers = []
    for model in report['errors'].values():
        numbers += [fmt(model['energy_rmse_meV_per_atom']), fmt(model['force_rmse_meV_per_A'])]
        numbers += [fmt(v) for v in model['force_rmse_by_element_meV_per_A'].values()]
    for scores in report['rdf_overlap'].values():
        numbers += [fmt(v, 3) for v in scores.values()]
    for values in report['vdos_overlap'].values():
        numbers += [fmt(v, 3) for k, v in values.items() if k != 'reference']
    for run in report['diffusion'].values():
        for values in run['species'].values():
            numbers += [fmt(values['D_A2_per_ps']), fmt(values['D_err_A2_per_ps'], 2), fmt(values['D_cm2_per_s'])]
    for fit in report['arrhenius'].values():
        numbers += [fmt(fit['activation_energy_eV'], 3), fmt(fit['activation_energy_err_eV'], 2)]
    speed = report['speed']
    numbers += [fmt(v) for v in speed['atom_steps_per_s'].values()]
    numbers += [fmt(v, 3) for v in speed['ratio_to_slowest'].values()]
    numbers += [str(v) for v in report['labels'].values()]
    provenance = data['provenance']
    numbers += [str(pk) for pk in provenance['figures'].values()]
    numbers += [str(provenance[name]['pk']) for name in ('training_set', 'test_set', 'seed_set')]
    numbers += [str(pk) for pk in provenance['potentials'].values()] + [str(provenance['report'])]
    return numbers


class Checker(html.parser.HTMLParser):
    """Well-formedness (every element closed in order), the text, and the images of an HTML page."""

    VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.images, self.text, self.doctype = [], [], [], [], None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        if tag == 'img':
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        if tag == 'img':
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f'</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else "nothing"}')
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(text: str) -> Checker:
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.doctype and checker.doctype.lower() == 'doctype html'
    assert not checker.problems, checker.problems
    assert not checker.stack, f'never closed: {checker.stack}'
    return checker


def write_page(directory: pathlib.Path, data: dict) -> pathlib.Path:
    """The page and real PNG figures (matplotlib) in ``directory``, as ``campaign report`` writes them."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    (directory / 'figures').mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(data['figures']):
        figure, axes = plt.subplots(figsize=(4, 3), dpi=60)
        axes.plot([0, 1, 2, 3], [0, 1 + number, 0.5, 2], color='#1f77b4', linewidth=6)
        axes.set_title(name)
        figure.savefig(directory / 'figures' / f'{name}.png')
        plt.close(figure)
    page = directory / 'report.html'
    page.write_text(render_html(data), encoding='utf-8')
    (directory / 'report.md').write_text(render_markdown(data), encoding='utf-8')
    return page


# ------------------------------------------------------------------------------------------------------ tests
def test_html_is_well_formed_with_every_number_and_figure(tmp_path):
    page = write_page(tmp_path, DATA)
    checker = check_html(page.read_text(encoding='utf-8'))
    text = ' '.join(checker.text)
    missing = [number for number in expected_numbers(DATA) if number not in text]
    assert not missing, missing
    sources = [image['src'] for image in checker.images]
    assert sorted(sources) == sorted(f'figures/{name}.png' for name in FIGURES)
    assert all((tmp_path / source).is_file() for source in sources)
    for section in ('Test-set errors', 'RDF overlap with DFT', 'Vibrational DOS overlap', 'Diffusion and activation',
                    'MD speed', 'Active learning', 'Figures', 'Provenance', 'Warnings (2)'):
        assert section in text, section
    assert 'NEP 41.0x faster than MTP' in text
    assert 'pw@localhost v7.2' in text and 'converged: candidate fraction 0.012 < 0.05' in text


def test_html_escapes_every_text():
    page = render_html(DATA)
    assert '<script>' not in page and '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in page
    assert 'S &lt;moves&gt; less than 1 Å² &amp; is not diffusive' in page
    hostile = copy.deepcopy(DATA)
    hostile['figures'] = ['a"b<c>']
    hostile['campaign']['label'] = hostile['report']['campaign'] = '</title><b>x'
    page = render_html(hostile)
    check_html(page)
    assert '</title><b>' not in page and 'src="figures/a%22b%3Cc%3E.png"' in page


def test_warnings_come_before_the_numbers():
    page = render_html(DATA)
    assert page.index('class="warnings"') < page.index('id="numbers"')
    markdown = render_markdown(DATA)
    assert markdown.index('## Warnings (2)') < markdown.index('## The numbers of the study')


def test_test_errors_side_by_side():
    markdown = render_markdown(DATA)
    assert '| Metric | MTP | NEP |' in markdown
    assert '| Energy RMSE (meV/atom) | 3.127 | 2.874 |' in markdown
    assert '| Force RMSE (meV/Å) | 89.14 | 82.36 |' in markdown
    assert '| Virial RMSE (meV/atom) | 11.52 | — |' in markdown
    assert '| Train force RMSE (meV/Å) | 71.2 | 64.4 |' in markdown


def test_diffusion_table_flags_and_errors():
    markdown = render_markdown(DATA)
    assert '| MTP | 600 | Cu | 0.04215 ± 0.0031 | 4.215e-06 ± 3.1e-07 | block_average | 2 – 18 | yes* |' in markdown
    assert '| MTP | 600 | S | 0.00031 ± 0.00029 |' in markdown and '| no* |' in markdown
    assert '| NEP | 900 | Cu |' in markdown
    assert '| NEP | 0.213 ± 0.015 |' in markdown
    assert '* D larger than twice its error' in markdown


def test_markdown_has_every_number_and_figure():
    markdown = render_markdown(DATA)
    missing = [number for number in expected_numbers(DATA) if number not in markdown]
    assert not missing, missing
    for name in FIGURES:
        assert f'![{name}](figures/{name}.png)' in markdown
    assert '\\<script>' not in markdown and '| RDF overlap mtp_600K | 412 | 46 | 458 |' in markdown


def test_provenance_counts_labels_codes_and_pks():
    markdown = render_markdown(DATA)
    row = next(line for line in markdown.splitlines() if line.startswith('| Test errors MTP |'))
    assert '| 412 | 46 | 458 |' in row
    assert 'dft: pw@localhost v7.2; mtp_train: motep@localhost' in row
    for pk in ('report <3001>', 'errors <3002>', 'potential mtp <3006>', 'training_set <3003>', 'test_set <3004>',
               'figure parity <3100>'):
        assert pk in row
    assert '| figures.speed | 3106 |' in markdown


def test_a_running_campaign_says_what_is_missing(tmp_path):
    data = {
        'report': None,
        'campaign': {'pk': 7, 'label': 'toy', 'state': 'waiting', 'stage': 'active_learning', 'terminated': False,
                     'running': [{'label': 'al_nep', 'process_label': 'ActiveLearningWorkChain', 'pk': 9,
                                  'state': 'waiting'}]},
        'families': {'mtp': copy.deepcopy(DATA['families']['mtp']),
                     'nep': {'pk': 9, 'state': 'waiting', 'stop_reason': None, 'iterations': []}},
        'figures': [],
        'codes': [],
        'provenance': {},
    }
    for page in (html.unescape(render_html(data)), render_markdown(data)):
        assert 'still running (stage active_learning)' in page
        assert 'al_nep ActiveLearningWorkChain<9> (waiting)' in page
        assert 'not available yet' in page and 'No report yet' in page
        assert 'no iteration finished yet' in page
        assert '0.182' in page  # mtp's loop table is there
    check_html(render_html(data))
    assert 'Provisional numbers' in render_html({**DATA, 'report_final': False})


def test_an_empty_page_renders():
    check_html(render_html({}))
    assert render_markdown({}).startswith('# Campaign report: campaign')


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def test_headless_chromium_draws_the_page(tmp_path):
    """The page in a real browser: a screenshot that is not blank, with the figures drawn (their blue lines)."""
    browser = find_browser()
    if browser is None:
        message = 'no headless browser (apt-get install -y chromium-headless-shell)'
        if os.environ.get('CI') == 'true':
            pytest.fail(message + ': CI installs it (.ci/run)')
        pytest.skip(message)
    np = pytest.importorskip('numpy')
    image_module = pytest.importorskip('PIL.Image')
    page = write_page(tmp_path, DATA)
    screenshot = tmp_path / 'screenshot.png'
    command = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
               f'--user-data-dir={tmp_path / "profile"}', '--window-size=1280,4000',
               '--virtual-time-budget=5000', f'--screenshot={screenshot}', page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert screenshot.is_file(), f'{browser} wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}'
    pixels = np.asarray(image_module.open(screenshot).convert('RGB')).astype(int)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    not_white = (pixels < 245).any(axis=2)
    assert not_white.mean() > 0.02, 'the screenshot is (almost) blank'
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, 'too few colours for text, tables and figures'
    # the warnings box (orange border, #e08a00) and the figures' lines (matplotlib C0, #1f77b4) are drawn
    orange = (abs(pixels - np.array([0xe0, 0x8a, 0x00])).sum(axis=2) < 40).sum()
    blue = (abs(pixels - np.array([0x1f, 0x77, 0xb4])).sum(axis=2) < 40).sum()
    assert orange > 200, f'warnings box not drawn ({orange} orange pixels)'
    assert blue > 200, f'figures not drawn ({blue} blue pixels)'
