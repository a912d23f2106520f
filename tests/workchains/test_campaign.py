"""``mlcampaign.campaign`` at the fast tier: the builder from a config, what its validator refuses, the report's
schema and the status screen. The campaign run for real is tests/daemon/test_campaign.py (and the quickstart)."""

import copy
import pathlib

import pytest

from aiida_mlcampaign.campaign import load_config
from tests.cli.test_campaign_validate import complete_family, localhost_codes, make_family  # noqa: F401 - fixtures

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / 'examples'
QUICKSTART = EXAMPLES / 'quickstart.yaml'


def test_shipped_quickstart_is_the_example():
    from aiida_mlcampaign.cli.quickstart import quickstart_config_path

    assert quickstart_config_path().read_text() == QUICKSTART.read_text()


def test_builder_from_config(complete_family):  # noqa: F811
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain, config_of

    config = load_config(QUICKSTART)
    builder = CampaignWorkChain.get_builder_from_config(config)
    assert sorted(builder.codes) == ['dft', 'explore', 'md', 'mtp_train', 'nep_train']
    assert list(builder.structures) == ['quickstart']
    assert builder.structures['quickstart'].get_formula() == 'Cu3PS4'
    again = config_of(builder.config, [builder.structures['quickstart'].get_ase()])
    assert again.model_dump() == config.model_dump()  # the stored config round-trips
    assert CampaignWorkChain.spec().inputs.validator(builder._inputs(prune=True), None) is None


def test_validator_names_the_missing_code_and_the_bad_config(complete_family):  # noqa: F811
    from aiida import orm

    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain

    config = load_config(QUICKSTART)
    builder = CampaignWorkChain.get_builder_from_config(config)
    inputs = builder._inputs(prune=True)
    validator = CampaignWorkChain.spec().inputs.validator
    del inputs['codes']['nep_train']
    assert "codes: the config needs a code for ['nep_train']" in validator(inputs, None)
    inputs = builder._inputs(prune=True)
    data = copy.deepcopy(inputs['config'].get_dict())
    data['stages']['active_learning']['mtp']['level'] = 7
    inputs['config'] = orm.Dict(data)
    assert 'stages.active_learning.mtp.level: must be an even number' in validator(inputs, None)
    inputs = builder._inputs(prune=True)
    inputs['codes']['gpu'] = inputs['codes']['md']
    assert "codes: unknown role(s) ['gpu']" in validator(inputs, None)


def test_resume_refuses_another_study(complete_family, tmp_path):  # noqa: F811
    from aiida_mlcampaign.cli.campaign import _resume_problems
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain

    config = load_config(QUICKSTART)
    stored = CampaignWorkChain.get_builder_from_config(config).config

    class Previous:
        class inputs:  # noqa: N801 - stands for a node's inputs
            pass

    Previous.inputs.config = stored
    assert _resume_problems(config, Previous) == []
    file = tmp_path / 'campaign.yaml'
    file.write_text(QUICKSTART.read_text().replace('count: 4', 'count: 5'))
    assert _resume_problems(load_config(file), Previous) == ['stages']


def test_report_summarize_keeps_every_number():
    from aiida_mlcampaign.campaign.report import summarize

    config = {'campaign': {'name': 'x'}, 'stages': {'active_learning': {'mtp': {}, 'nep': {}}}}
    results = {
        'al_mtp': [{'iteration': 1, 'labels_added': 2, 'candidate_fraction': 0.5, 'test_force_rmse': 0.3}],
        'final_nep': {'train_force_rmse': 0.1, 'test_force_rmse': 0.2},
        'errors': {'mtp': {'n_frames': 3, 'force_rmse_meV_per_A': 300.0}},
        'rdf_mtp_600K': {'overlap': {'total': 0.9}},
        'vdos_600K': {'labels': ['dft', 'mtp', 'nep'], 'overlap': [[1.0, 0.8, 0.7], [0.8, 1, 0.9], [0.7, 0.9, 1]]},
        'diffusion_nep_600K': {'species': {'Cu': {'D_A2_per_ps': 0.1}}},
        'arrhenius_nep_Cu': {'activation_energy_eV': 0.3},
        'speed': {'statements': ['NEP 2.0x faster than MTP']},
    }
    report = summarize(config, results, ['w'], {'frames': 10, 'species': ['Cu', 'P', 'S'], 'test_frames': 3})
    assert report['families']['mtp']['labels_added'] == 2 and report['families']['mtp']['test_force_rmse'] == 0.3
    assert report['families']['nep']['test_force_rmse'] == 0.2
    assert report['labels'] == {'training_frames': 10, 'test_frames': 3}
    assert report['rdf_overlap'] == {'mtp_600K': {'total': 0.9}}
    assert report['vdos_overlap'] == {'600K': {'reference': 'dft', 'mtp': 0.8, 'nep': 0.7}}
    assert report['arrhenius'] == {'nep_Cu': {'activation_energy_eV': 0.3}}
    assert report['warnings'] == ['w']


def test_status_screen():
    from aiida_mlcampaign.cli.campaign_status import render_status

    status = {'pk': 7, 'name': 'quickstart', 'state': 'waiting', 'exit_status': None, 'exit_message': None,
              'stage': 'active_learning', 'elapsed_seconds': 125.0, 'projected_seconds': 400.0, 'dft_labels': 13,
              'families': {'mtp': {'state': 'waiting', 'stop_reason': None, 'rows': [
                  {'iteration': 1, 'training_frames': 9, 'train_force_rmse': 0.1, 'test_force_rmse': 0.2,
                   'candidate_fraction': 0.5, 'labels_added': 2}]},
                  'nep': {'state': 'pending', 'stop_reason': None, 'rows': []}},
              'computers': {'localhost': {'running': 1, 'queued': 0, 'finished': 12, 'failed': 0}},
              'warnings': ['diffusion mtp_600K: not diffusive']}
    text = render_status(status)
    assert 'campaign quickstart <7>: waiting' in text
    assert '[x] seed' in text and '[>] active_learning' in text and '[ ] md' in text
    assert 'elapsed 2m05s, projected total 6m40s' in text
    assert '0.2000' in text and 'localhost' in text and '! diffusion mtp_600K: not diffusive' in text


@pytest.mark.parametrize('stage', ['relax', 'seed', 'md'])
def test_every_stage_has_a_place(stage):
    from aiida_mlcampaign.workchains.campaign import STAGES

    assert stage in STAGES


def test_arrhenius_defaults_to_the_most_mobile_species():
    from aiida_mlcampaign.workchains.campaign import _most_mobile, _t

    results = {'600': {'species': {'Cu': {'D_A2_per_ps': 0.1}, 'S': {'D_A2_per_ps': 0.3}}},
               '900': {'species': {'Cu': {'D_A2_per_ps': 0.9}, 'S': {'D_A2_per_ps': 0.2}}}}
    assert _most_mobile(results) == 'Cu'  # at the hottest temperature
    assert _t(612.5) == '612p5' and _t(600.0) == '600'
