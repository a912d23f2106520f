"""``aiida-mlcampaign campaign query`` and ``campaign cost`` on a hand-built campaign graph (still running)."""

import json

import pytest
from click.testing import CliRunner

import aiida_mlcampaign.cli.campaign_inspect  # noqa: F401 - registers query and cost on the campaign group
from aiida_mlcampaign.cli import cli
from tests.workchains.test_provenance import _computer, build_campaign


@pytest.fixture(scope='module')
def graph(aiida_profile):
    g = build_campaign(_computer('cpu'), _computer('gpu', 'core.slurm'))
    g.all_pks = sorted([g.pw_relax.pk, g.pw_a.pk, g.pw_b_failed.pk, g.pw_b.pk, g.pw_aimd.pk, g.pw_al.pk])
    g.profile = aiida_profile.name
    return g


def invoke(graph, *args):
    return CliRunner().invoke(cli, ['campaign', *args[:1], '-p', graph.profile, *map(str, args[1:])],
                              catch_exceptions=False)


def test_commands_are_on_the_campaign_group():
    result = CliRunner().invoke(cli, ['campaign', '--help'])
    assert result.exit_code == 0 and 'query' in result.output and 'cost' in result.output


def test_query_a_merged_training_set(graph):
    result = invoke(graph, 'query', graph.train_1.pk)
    assert result.exit_code == 0, result.output
    assert f'TrainingSetData<{graph.train_1.pk}>: 6 pw.x calculation(s) behind it (5 finished ok)' in result.output
    assert 'Cu2S2 x6' in result.output and graph.pw_relax.computer.label in result.output
    listed = [int(line.split()[0]) for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert listed == graph.all_pks
    assert ' 400 ' in result.output  # the failed run, with its exit status

    data = json.loads(invoke(graph, 'query', graph.train_1.pk, '--json').output)
    assert data['count'] == 6 and data['pks'] == graph.all_pks and data['finished_ok'] == 5
    assert data['formulas'] == {'Cu2S2': 6} and 'outputs' not in data

    limited = invoke(graph, 'query', graph.train_1.pk, '--limit', 2)
    assert '... 4 more' in limited.output


def test_query_a_campaign_counts_the_dft_behind_each_output(graph):
    data = json.loads(invoke(graph, 'query', graph.campaign.pk, '--json').output)
    assert data['pks'] == graph.all_pks
    assert data['outputs']['potentials.mtp'] == {'pk': graph.potential_mtp.pk, 'type': 'SinglefileData',
                                                 'dft_calls': 6}
    assert data['outputs']['structures.Cu2S2']['dft_calls'] == 1  # the relaxation behind the supercell
    text = invoke(graph, 'query', graph.campaign.pk).output
    assert 'potentials.nep' in text and 'DFT calcs behind' in text


def test_query_of_a_node_without_dft_and_of_a_missing_pk(graph):
    result = invoke(graph, 'query', graph.structure.pk)
    assert result.exit_code == 0 and '0 pw.x calculation(s)' in result.output
    missing = CliRunner().invoke(cli, ['campaign', 'query', '-p', graph.profile, '987654321'])
    assert missing.exit_code == 1 and 'PK 987654321' in missing.output


def test_cost_table_and_json(graph):
    result = invoke(graph, 'cost', graph.campaign.pk)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert 'cost so far' in lines[0]
    (relax,) = [line for line in lines if line.startswith('relax ')]
    assert relax.split()[2:] == ['1', '-', '1', '0.40', '-']  # jobs, running, DFT calls, core-h, GPU-h
    (total,) = [line for line in lines if line.startswith('total')]
    assert total.split()[1:4] == ['11', '1', '6']
    assert 'not yet known (queued or running) 1' in result.output
    (mtp,) = [line for line in lines if line.startswith('mtp ')]
    assert mtp.split() == ['mtp', 'running', '1', '100', '10', '4', '1', '1', 'iterations']

    data = json.loads(invoke(graph, 'cost', graph.campaign.pk, '--json').output)
    assert data['total']['dft_calls'] == 6 and data['stages']['final_fit']['gpu_hours'] == pytest.approx(48.0)


def test_cost_refuses_a_data_node(graph):
    result = CliRunner().invoke(cli, ['campaign', 'cost', '-p', graph.profile, str(graph.train_1.pk)])
    assert result.exit_code == 1 and 'not a workflow' in result.output
