"""``mlcampaign.fit.compare``: a real MTP (motep) and a real NEP (neppo) fitted to one TrainingSetData and
compared on one held-out test set with ``mlcampaign.analysis.errors``.

Frames: 12 + 4 EMT-labelled Cu6Au2 cells (``tests/fixtures/neppo/train_stages``, ``SOURCES.md`` there): the
comparison machinery does not depend on where the labels came from; the daemon tests label with pw.x.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.fit_compare import FitCompareWorkChain
from tests.helpers import local_codes

FRAMES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'neppo' / 'train_stages'
NEP_SETTINGS = {'cutoff': [5.0, 4.0], 'n_max': [4, 4], 'basis_size': [4, 4], 'neuron': 8, 'batch': 4,
                'generation': 150, 'output_interval': 50, 'seed': 2}


@pytest.fixture(scope='module')
def codes(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'motep', 'neppo')


@pytest.fixture(scope='module')
def frames(aiida_profile):
    return {split: TrainingSetData.from_extxyz(FRAMES / f'{split}.xyz', species=['Cu', 'Au']).store()
            for split in ('train', 'test')}


def builder(codes, frames, template=None):
    builder = FitCompareWorkChain.get_builder()
    builder.training_set = frames['train']
    builder.test_set = frames['test']
    builder.mtp.code = codes['motep']
    builder.mtp.potential = template or MtpPotentialData.from_template(6, ['Cu', 'Au'], min_dist=2.0, max_dist=5.0)
    builder.mtp.settings = orm.Dict({'max_iter': 150, 'seed': 1})
    builder.nep.code = codes['neppo']
    builder.nep.settings = orm.Dict(NEP_SETTINGS)
    return builder


def test_mtp_and_nep_on_the_same_labels(codes, frames):
    results, node = run_get_node(builder(codes, frames))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    # Both models descend from the one training set; both predictions from the one test set.
    fits = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    assert fits['fit_mtp'].inputs.training_set.uuid == fits['fit_nep'].inputs.training_set.uuid == frames['train'].uuid
    assert fits['predict_mtp'].inputs.frames.uuid == frames['test'].uuid
    assert fits['predict_nep'].inputs.frames.uuid == frames['test'].uuid
    assert 'test_set' not in fits['fit_nep'].inputs  # neither trainer sees the test frames
    assert fits['fit_nep'].outputs.output_parameters['engine'] == 'neppo'

    errors = results['errors'].get_dict()
    assert set(errors) == {'mtp', 'nep'}
    for model in ('mtp', 'nep'):
        metrics = errors[model]
        assert np.isfinite(metrics['force_rmse_meV_per_A']) and metrics['force_rmse_meV_per_A'] > 0
        assert set(metrics['force_rmse_by_element_meV_per_A']) == {'Cu', 'Au'}
        assert np.isfinite(metrics['energy_rmse_meV_per_atom'])
    # The errors are those of the predictions against the test labels (recomputed here from the nodes).
    reference = frames['test'].get_array('forces')
    nep_forces = results['nep_predictions'].get_array('forces')
    assert errors['nep']['force_rmse_meV_per_A'] == pytest.approx(
        1000 * np.sqrt(np.mean((nep_forces - reference) ** 2)), rel=1e-6)
    assert results['figure'].filename == 'parity.png'
    assert results['mtp_potential'].is_trained and results['nep_potential'].species == ['Cu', 'Au']


def test_species_are_checked_before_anything_runs(codes, frames):
    with pytest.raises(ValueError, match=r"mtp: training_set: species \['Au'\] are not in the potential's species"):
        run_get_node(builder(codes, frames, MtpPotentialData.from_template(6, ['Cu'], min_dist=2.0, max_dist=5.0)))
    bad = builder(codes, frames)
    bad.nep.settings = orm.Dict({**NEP_SETTINGS, 'population': 10})
    with pytest.raises(ValueError, match='nep: settings.population: a setting of GPUMD'):
        run_get_node(bad)
