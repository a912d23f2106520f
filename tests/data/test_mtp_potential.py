"""Tests of ``MtpPotentialData``: validation, motep-layout normalisation, storing and reloading."""

import hashlib
import io
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import DataFactory

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.mtp import check_mlip2_layout, read_mtp

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mtp'
AS_WRITTEN = FIXTURES / 'cu_emt_L08_made-here_motep020_AS-WRITTEN_not-mlip2-readable.mtp'
LBFGSB = FIXTURES / 'cu_emt_L08_made-here_motep020_mlip2-layout.mtp'
BFGS = FIXTURES / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
MLIP2_TRAINED = FIXTURES / 'cu_emt_L08_mlip2-trained_from-motep-tests.mtp'

ERRORS = {'train': {'energy_per_atom_rmse': 0.00019, 'forces_rmse': 0.0065}, 'test': {'energy_per_atom_rmse': 0.00032}}


def test_entry_point_is_registered():
    assert DataFactory('mlcampaign.potential.mtp') is MtpPotentialData


def test_store_and_reload_with_attributes(aiida_profile_clean, tmp_path):
    node = MtpPotentialData(BFGS, species=['Cu'], training_errors={**ERRORS, 'n_iter': np.int64(874)})
    node.store()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, MtpPotentialData)
    text = BFGS.read_text()
    assert loaded.get_content() == text
    assert loaded.filename == BFGS.name
    attributes = loaded.base.attributes.all
    expected = {
        'species': ['Cu'], 'species_count': 1, 'level': 8, 'min_dist': 2.0, 'max_dist': 5.0, 'radial_basis_size': 8,
        'radial_funcs_count': 2, 'parameter_count': 26, 'is_trained': True, 'scaling': 1.0, 'layout_fixed': False,
        'checksum': hashlib.sha256(BFGS.read_bytes()).hexdigest(), 'training_errors': {**ERRORS, 'n_iter': 874},
    }
    assert {key: attributes[key] for key in expected} == expected
    assert loaded.species == ['Cu'] and loaded.level == 8 and loaded.is_trained
    assert loaded.training_errors['n_iter'] == 874
    mtp = loaded.get_mtp()
    assert mtp.is_trained and mtp.species_coeffs[0] == -3.922767299686902
    written = loaded.write(tmp_path / 'out.mtp')
    assert written.read_bytes() == BFGS.read_bytes()
    assert loaded.write(tmp_path).name == BFGS.name


def test_motep_layout_is_fixed_before_storing(aiida_profile):
    node = MtpPotentialData(AS_WRITTEN, species=['Cu']).store()
    assert node.layout_fixed and node.base.attributes.get('layout_fixed') is True
    content = node.get_content()
    assert check_mlip2_layout(content) == []
    assert node.checksum == hashlib.sha256(content.encode()).hexdigest()
    fixed, reference = node.get_mtp(), read_mtp(LBFGSB)
    assert np.array_equal(fixed.radial_coeffs_array(), reference.radial_coeffs_array())
    assert np.array_equal(fixed.moment_coeffs, reference.moment_coeffs)
    assert np.array_equal(fixed.species_coeffs, reference.species_coeffs)
    assert (node.min_dist, node.max_dist, node.parameter_count) == (2.0, 5.0, 26)


def test_text_handle_and_crlf_input(aiida_profile):
    text = MLIP2_TRAINED.read_text()
    from_text = MtpPotentialData(text, species=['Cu'])
    assert from_text.filename == 'potential.mtp'
    assert from_text.base.attributes.get('scaling') == 1.247515558262017e-02
    from_handle = MtpPotentialData(io.BytesIO(text.replace('\n', '\r\n').encode()), species=['Cu'], filename='cu.mtp')
    assert from_handle.filename == 'cu.mtp'
    assert from_handle.get_content() == text  # line endings normalised to LF
    assert from_handle.checksum == from_text.checksum == hashlib.sha256(text.encode()).hexdigest()
    assert not from_handle.layout_fixed
    with open(MLIP2_TRAINED, 'rb') as handle:
        assert MtpPotentialData(handle, species=['Cu']).filename == MLIP2_TRAINED.name
    assert MtpPotentialData(str(MLIP2_TRAINED), species=['Cu']).checksum == from_text.checksum


def test_from_template_three_species(aiida_profile):
    node = MtpPotentialData.from_template(8, ['Li', 'P', 'S'], min_dist=1.8, max_dist=5.5).store()
    assert node.species == ['Li', 'P', 'S'] and node.species_count == 3
    assert node.level == 8 and not node.is_trained and node.parameter_count == 156
    assert (node.min_dist, node.max_dist) == (1.8, 5.5)
    assert node.base.attributes.get('scaling') == 1.0 and node.training_errors == {}
    assert node.filename == 'init_L08.mtp'
    assert check_mlip2_layout(node.get_content()) == []
    larger = MtpPotentialData.from_template('12', ['Cu', 'Al'], 2.0, 5.0, radial_basis_size=10)
    assert larger.level == 12 and larger.parameter_count == 29 + 2 + 4 * 3 * 10


def test_to_motep_sets_the_atomic_numbers(aiida_profile):
    pytest.importorskip('motep')
    data = MtpPotentialData.from_template(8, ['Li', 'P', 'S'], 1.8, 5.5).to_motep()
    assert list(data.species) == [3, 15, 16] and data.species_count == 3
    assert data.radial_basis.size == 8


@pytest.mark.parametrize('species, message', [
    (['Cu', 'Al'], 'species: 2 element'),
    ([], 'species: at least one'),
    (['Xx'], "species: unknown element 'Xx'"),
    (['cu'], "species: unknown element 'cu'"),
    (['X'], "species: unknown element 'X'"),
    ('Cu', 'species: expected a list'),
    (None, 'species: required'),
])
def test_species_are_validated(aiida_profile, species, message):
    with pytest.raises(ValueError, match=message):
        MtpPotentialData(BFGS, species=species)


def test_template_species_validation(aiida_profile):
    with pytest.raises(ValueError, match='species: elements listed twice'):
        MtpPotentialData.from_template(8, ['Cu', 'Cu'], 2.0, 5.0)
    with pytest.raises(ValueError, match='level'):
        MtpPotentialData.from_template(22, ['Cu'], 2.0, 5.0)
    with pytest.raises(ValueError, match='min_dist'):
        MtpPotentialData.from_template(8, ['Cu'], 5.0, 2.0)


@pytest.mark.parametrize('edit, field', [
    (('alpha_index_basic_count = 11', 'alpha_index_basic_count = 12'), 'alpha_index_basic_count'),
    (('moment_coeffs = {', 'moment_coeffs = {1.0, '), 'moment_coeffs'),
    (('species_count = 1', 'species_count=1'), 'species_count'),
    (('\tmin_dist = 2.000000000000000e+00', '\tmin_dist = 6.000000000000000e+00'), 'min_dist'),
])
def test_broken_files_are_refused_naming_the_problem(aiida_profile, edit, field):
    text = BFGS.read_text()
    with pytest.raises(FormatError, match=field):
        MtpPotentialData(text.replace(*edit, 1), species=['Cu'])


def test_broken_motep_file_with_wrong_counts_is_refused(aiida_profile):
    text = AS_WRITTEN.read_text().replace('species_coeffs = {', 'species_coeffs = {0.5, ')
    with pytest.raises(FormatError, match='species_coeffs'):
        MtpPotentialData(text, species=['Cu'])


def test_training_errors_must_be_json_clean(aiida_profile):
    with pytest.raises(ValueError, match='training_errors: expected a dict'):
        MtpPotentialData(BFGS, species=['Cu'], training_errors=[1.0])
    with pytest.raises(ValueError, match='training_errors.train: not a finite number'):
        MtpPotentialData(BFGS, species=['Cu'], training_errors={'train': float('nan')})


def test_missing_file_and_unchanged_checksum(aiida_profile, tmp_path):
    with pytest.raises(ValueError, match='file:'):
        MtpPotentialData(tmp_path / 'missing.mtp', species=['Cu'])
    node = MtpPotentialData(BFGS, species=['Cu'])
    node.base.attributes.set('checksum', '0' * 64)
    with pytest.raises(Exception, match='checksum'):
        node.store()
