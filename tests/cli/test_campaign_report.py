"""``aiida-mlcampaign campaign report PK -o DIR`` on hand-built campaign nodes: a finished one (every output under its
link label) and a running one (no report yet: the page is gathered from the children that finished)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

import aiida_mlcampaign.cli.campaign_report  # noqa: F401 - registers `campaign report`
from aiida_mlcampaign.cli import cli
from tests.campaign.test_report_page import REPORT, check_html, expected_numbers

PROCESS_TYPE = 'aiida.workflows:mlcampaign.campaign'
PNG = bytes.fromhex('89504e470d0a1a0a0000000d4948445200000001000000010806000000'
                    '1f15c4890000000d4944415478da6364f8ffbf1e000500020142d5f5d70000000049454e44ae426082')
CONFIG = {'campaign': {'name': 'cu7ps6-toy'}, 'stages': {'active_learning': {'order': ['mtp', 'nep']}}}


def training_set(frames: int, store: bool = True):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_mlcampaign.data.training_set import TrainingSetData

    images = []
    for i in range(frames):
        atoms = Atoms('Cu2S', positions=[[0, 0, 0], [1.2 + 0.01 * i, 0, 0], [0, 1.3, 0]], cell=[6, 6, 6], pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - i, forces=np.zeros((3, 3)))
        images.append(atoms)
    node = TrainingSetData.from_ase(images)
    return node.store() if store else node


def figure(name: str):
    from aiida import orm

    return orm.SinglefileData(io.BytesIO(PNG), filename=f'{name}.png').store()


def returned(node, label: str, output) -> None:
    from aiida.common.links import LinkType

    output.base.links.add_incoming(node, link_type=LinkType.RETURN, link_label=label)


def created(process, label: str, output):
    from aiida.common.links import LinkType

    output.base.links.add_incoming(process, link_type=LinkType.CREATE, link_label=label)
    return output.store()


def process(cls, caller, label: str, state: str = 'finished', process_label: str | None = None, **kwargs):
    """A child process of ``caller`` under call link label ``label``, stored (``state``: finished or running)."""
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    from aiida import orm

    node = cls(**kwargs)
    if process_label:
        node.set_process_label(process_label)
    node.set_process_state(ProcessState.FINISHED if state == 'finished' else ProcessState.RUNNING)
    if state == 'finished':
        node.set_exit_status(0)
    link_type = LinkType.CALL_WORK if isinstance(node, orm.WorkflowNode) else LinkType.CALL_CALC
    node.base.links.add_incoming(caller, link_type=link_type, link_label=label)
    return node.store()


@pytest.fixture
def codes(aiida_profile_clean, aiida_localhost, aiida_code_installed):
    """Codes of the roles dft, mtp_train, nep_train, md; pw.x reported version 7.2 in one of its runs."""
    from aiida.common.links import LinkType

    from aiida import orm

    made = {role: aiida_code_installed(label=label, default_calc_job_plugin=plugin, computer=aiida_localhost,
                                       filepath_executable='/bin/true')
            for role, label, plugin in (('dft', 'pw', 'quantumespresso.pw'),
                                        ('mtp_train', 'motep', 'core.arithmetic.add'),
                                        ('nep_train', 'neppo', 'core.arithmetic.add'),
                                        ('md', 'mlcampaign-md', 'core.arithmetic.add'))}
    calculation = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:quantumespresso.pw')
    calculation.base.links.add_incoming(made['dft'], link_type=LinkType.INPUT_CALC, link_label='code')
    calculation.store()
    created(calculation, 'output_parameters', orm.Dict({'code_version': '7.2', 'energy': -1.0}))
    return made


def campaign_node(codes, state: str = 'finished'):
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    from aiida import orm

    node = orm.WorkflowNode(process_type=PROCESS_TYPE, label='cu7ps6-toy')
    node.set_process_state(ProcessState.FINISHED if state == 'finished' else ProcessState.WAITING)
    if state == 'finished':
        node.set_exit_status(0)
    node.base.links.add_incoming(orm.Dict(CONFIG).store(), link_type=LinkType.INPUT_WORK, link_label='config')
    for role, code in codes.items():
        node.base.links.add_incoming(code, link_type=LinkType.INPUT_WORK, link_label=f'codes__{role}')
    node.store()
    node.base.extras.set('campaign_stage', 'done' if state == 'finished' else 'md')
    return node


def invoke(profile, pk, directory):
    return CliRunner().invoke(cli, ['campaign', 'report', '-p', profile.name, str(pk), '-o', str(directory)],
                              catch_exceptions=False)


FIGURES = ('parity', 'rdf_mtp_600K', 'rdf_compare_mtp_600K', 'msd_nep_600K', 'vdos_compare_600K', 'arrhenius_nep',
           'speed')


def test_a_finished_campaign(codes, aiida_profile_clean, tmp_path):
    from aiida import orm

    node = campaign_node(codes)
    report = orm.Dict(REPORT).store()
    sets = {'training_set': training_set(5), 'test_set': training_set(2), 'seed_set': training_set(6)}
    potentials = {'mtp': orm.SinglefileData(io.BytesIO(b'mtp'), filename='pot.mtp').store(),
                  'nep': orm.SinglefileData(io.BytesIO(b'nep'), filename='nep.txt').store()}
    figures = {name: figure(name) for name in FIGURES}
    rows = [{'iteration': 0, 'training_frames': 3, 'candidate_fraction': 0.25, 'labels_added': 2,
             'train_force_rmse': 0.0801, 'test_force_rmse': 0.1014, 'warnings': []}]
    returned(node, 'report', report)
    for name, value in sets.items():
        returned(node, name, value)
    for family, potential in potentials.items():
        returned(node, f'potentials__{family}', potential)
        returned(node, f'learning__{family}__summary', orm.List(rows).store())
        returned(node, f'learning__{family}__stop_reason', orm.Str(f'{family} converged').store())
    for name, value in figures.items():
        returned(node, f'figures__{name}', value)
    errors = created(process(orm.CalcFunctionNode, node, 'compare_errors'), 'errors', orm.Dict(REPORT['errors']))
    returned(node, 'errors', errors)

    result = invoke(aiida_profile_clean, node.pk, tmp_path / 'out')
    assert result.exit_code == 0, result.output
    out = tmp_path / 'out'
    for name in ('report.html', 'report.md', 'report.json'):
        assert str(out / name) in result.output
    assert sorted(p.name for p in (out / 'figures').iterdir()) == sorted(f'{name}.png' for name in FIGURES)
    assert (out / 'figures' / 'parity.png').read_bytes() == PNG

    data = json.loads((out / 'report.json').read_text())
    assert data['report'] == REPORT and data['report_final'] is True
    assert data['codes'] == [
        {'role': 'dft', 'label': 'pw', 'computer': aiida_localhost_label(codes), 'version': '7.2'},
        {'role': 'mtp_train', 'label': 'motep', 'computer': aiida_localhost_label(codes), 'version': None},
        {'role': 'nep_train', 'label': 'neppo', 'computer': aiida_localhost_label(codes), 'version': None},
        {'role': 'md', 'label': 'mlcampaign-md', 'computer': aiida_localhost_label(codes), 'version': None}]
    provenance = data['provenance']
    assert provenance['report'] == report.pk and provenance['errors'] == errors.pk
    assert provenance['training_set'] == {'pk': sets['training_set'].pk, 'frames': 5}
    assert provenance['test_set'] == {'pk': sets['test_set'].pk, 'frames': 2}
    assert provenance['potentials'] == {family: p.pk for family, p in potentials.items()}
    assert provenance['figures'] == {name: f.pk for name, f in figures.items()}
    assert data['families']['mtp']['stop_reason'] == 'mtp converged' and data['families']['nep']['iterations'] == rows
    assert data['campaign']['state'] == 'finished' and data['campaign']['terminated'] is True

    text = (out / 'report.html').read_text(encoding='utf-8')
    checker = check_html(text)
    page_text = ' '.join(checker.text)
    numbers = [n for n in expected_numbers({'report': REPORT, 'provenance': provenance}) if n not in page_text]
    assert not numbers, numbers
    assert all((out / image['src']).is_file() for image in checker.images) and len(checker.images) == len(FIGURES)
    assert f'report <{report.pk}>' in page_text and f'pw@{aiida_localhost_label(codes)} v7.2' in page_text
    markdown = (out / 'report.md').read_text(encoding='utf-8')
    assert '| Energy RMSE (meV/atom) | 3.127 | 2.874 |' in markdown


def aiida_localhost_label(codes) -> str:
    return codes['dft'].computer.label


def test_a_running_campaign_is_gathered_from_its_children(codes, aiida_profile_clean, tmp_path):
    from aiida import orm

    node = campaign_node(codes, state='running')
    returned(node, 'seed_set', training_set(6))
    split = process(orm.CalcFunctionNode, node, 'split')
    created(split, 'train', training_set(4, store=False))
    test = created(split, 'test', training_set(2, store=False))
    returned(node, 'test_set', test)
    # mtp: its loop finished; nep: its loop runs, iteration 0 done
    loop = process(orm.WorkflowNode, node, 'al_mtp', process_type='aiida.workflows:mlcampaign.al.loop')
    rows = [{'iteration': 0, 'training_frames': 4, 'candidate_fraction': 0.25, 'labels_added': 2,
             'train_force_rmse': 0.0801, 'test_force_rmse': 0.1014, 'warnings': []}]
    returned(loop, 'summary', orm.List(rows).store())
    returned(loop, 'stop_reason', orm.Str('max_iterations: 1 iteration(s) run').store())
    returned(loop, 'training_set', training_set(6))
    returned(loop, 'potential', orm.SinglefileData(io.BytesIO(b'mtp'), filename='pot.mtp').store())
    returned(node, 'learning__mtp__summary', loop.outputs.summary)
    running = process(orm.WorkflowNode, node, 'al_nep', state='running',
                      process_type='aiida.workflows:mlcampaign.al.loop')
    returned(running, 'iterations__iteration_00__statistics',
             orm.Dict({'candidate_fraction': 0.4321, 'train_force_rmse': 0.0912, 'test_force_rmse': 0.1111}).store())
    returned(running, 'iterations__iteration_00__training_set', training_set(7))
    # errors of mtp scored on the test set, with its parity figure
    compare = process(orm.CalcFunctionNode, node, 'compare_errors')
    created(compare, 'errors', orm.Dict({'mtp': REPORT['errors']['mtp']}))
    parity = created(compare, 'figure', orm.SinglefileData(io.BytesIO(PNG), filename='parity.png'))
    md = process(orm.CalcJobNode, node, 'md_mtp_600K', state='running', computer=codes['md'].computer,
                 process_type='aiida.calculations:mlcampaign.md.cpu', process_label='MdCpuCalculation')
    node.logger.warning('WARNING config: a warning & <more>')

    result = invoke(aiida_profile_clean, node.pk, tmp_path / 'out')
    assert result.exit_code == 0, result.output
    assert 'still running' in result.output
    out = tmp_path / 'out'
    data = json.loads((out / 'report.json').read_text())
    assert data['report_final'] is False and data['campaign']['terminated'] is False
    report = data['report']
    assert report['errors'] == {'mtp': REPORT['errors']['mtp']}
    assert report['families']['mtp']['iterations'] == 1 and report['families']['mtp']['labels_added'] == 2
    assert report['labels'] == {'training_frames': 4, 'test_frames': 2}  # the split's test set
    assert report['warnings'] == ['config: a warning & <more>']
    assert data['families']['nep']['iterations'] == [{'iteration': 0, 'candidate_fraction': 0.4321,
                                                      'train_force_rmse': 0.0912, 'test_force_rmse': 0.1111,
                                                      'training_frames_after': 7}]
    assert data['families']['nep']['state'] == 'running' and data['families']['mtp']['state'] == 'finished'
    assert data['figures'] == ['parity'] and data['provenance']['figures'] == {'parity': parity.pk}
    assert data['provenance']['test_set'] == {'pk': test.pk, 'frames': 2}
    assert data['provenance']['family_training_frames'] == {'mtp': 6}
    assert [child['label'] for child in data['campaign']['running']] == ['al_nep', 'md_mtp_600K']
    assert data['campaign']['running'][1]['pk'] == md.pk

    text = (out / 'report.html').read_text(encoding='utf-8')
    page_text = ' '.join(check_html(text).text)
    for fragment in ('still running (stage md)', 'Provisional numbers',
                     f'md_mtp_600K MdCpuCalculation<{md.pk}> (running)', '89.14', '0.432',
                     'config: a warning & <more>', 'not available yet'):
        assert fragment in page_text, fragment
    assert (out / 'figures' / 'parity.png').is_file()


def test_not_a_campaign(aiida_profile_clean, tmp_path):
    from aiida import orm

    node = orm.Int(1).store()
    result = CliRunner().invoke(cli, ['campaign', 'report', '-p', aiida_profile_clean.name, str(node.pk), '-o',
                                      str(tmp_path)])
    assert result.exit_code != 0 and 'is not a campaign' in result.output


def test_output_is_required():
    result = CliRunner().invoke(cli, ['campaign', 'report', '1'])
    assert result.exit_code == 2 and '--output' in result.output
