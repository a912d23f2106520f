"""Tests of ``NepPotentialData``: header attributes, checksum, storing and reloading, refusal of malformed files."""

import hashlib
import importlib.metadata
import pathlib

import pytest
from aiida import orm
from aiida.plugins import DataFactory

from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import nep_in, read_nep_in

NEP = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'nep'
PBTE = NEP / 'pbte_train_master' / 'nep.txt'
QNEP = NEP / 'qnep_pbte_master' / 'nep.txt'
ENTRY_POINT = 'mlcampaign.potential.nep'


def _registered() -> bool:
    return any(ep.name == ENTRY_POINT for ep in importlib.metadata.entry_points(group='aiida.data'))


@pytest.fixture
def nep_entry_point(entry_points):
    """Until ``mlcampaign.potential.nep`` is in pyproject.toml (and the package re-installed), register it for the test.

    Storing needs a registered entry point; aiida's ``entry_points`` fixture patches the entry point list, and the
    class lookups cached by ``lru_cache`` are cleared so that the temporary registration is seen (and forgotten).
    """
    from aiida.plugins import entry_point

    def clear():
        entry_point.get_entry_point_from_class.cache_clear()
        entry_point.is_registered_entry_point.cache_clear()

    if not _registered():
        entry_points.add(NepPotentialData, f'aiida.data:{ENTRY_POINT}')
    clear()
    yield
    clear()


@pytest.mark.skipif(not _registered(), reason='add "mlcampaign.potential.nep" to [project.entry-points."aiida.data"]')
def test_entry_point_is_registered():
    assert DataFactory(ENTRY_POINT) is NepPotentialData


def test_store_and_reload_with_header_attributes(aiida_profile_clean, nep_entry_point, tmp_path):
    node = NepPotentialData(PBTE).store()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, NepPotentialData)
    assert loaded.filename == 'nep.txt'
    assert loaded.get_content() == PBTE.read_text()
    attributes = loaded.base.attributes.all
    expected = {
        'model': 'nep4', 'nep_version': 4, 'model_type': 'potential', 'charge_mode': 0, 'zbl': False,
        'species': ['Te', 'Pb'], 'n_types': 2, 'cutoff': [8.0, 4.0], 'per_species_cutoffs': False,
        'max_neighbors': [73, 8], 'n_max': [6, 6], 'basis_size': [6, 6], 'l_max': [4, 2, 0], 'neurons': [30, 0],
        'descriptor_dim': 42, 'n_parameters': 3033, 'n_q_scalers': 42, 'n_header_lines': 6, 'n_body_lines': 3075,
        'body_matches': True, 'loadable_by_gpumd_5_3_plus': True,
        'checksum': hashlib.sha256(PBTE.read_bytes()).hexdigest(),
    }
    assert {key: attributes[key] for key in expected} == expected
    assert loaded.species == ['Te', 'Pb'] and loaded.model == 'nep4' and loaded.n_parameters == 3033
    assert loaded.cutoff == [8.0, 4.0] and loaded.nep_version == 4 and loaded.model_type == 'potential'
    assert loaded.get_header()['n_body_lines'] == 3075
    assert loaded.write(tmp_path / 'copy.txt').read_bytes() == PBTE.read_bytes()
    assert loaded.write(tmp_path).name == 'nep.txt'
    # The architecture of the stored model gives a prediction-mode nep.in that matches the training defaults.
    text = nep_in({'type': loaded.species, 'prediction': 1, **loaded.get_architecture()}, '5.6')
    assert read_nep_in(text)['n_max'] == [6, 6] and 'prediction     1' in text
    qb = orm.QueryBuilder().append(NepPotentialData, filters={'attributes.species': {'contains': ['Pb']}})
    assert qb.count() == 1


@pytest.mark.parametrize(('path', 'model', 'species', 'parameters'), [
    (QNEP, 'nep4_charge2', ['Te', 'Pb'], 3094),
    (NEP / 'models' / 'nep3_Al_legacy.txt', 'nep3', ['Al'], 1769),
    (NEP / 'models' / 'nep4_charge1_water.txt', 'nep4_charge1', ['H', 'O'], 2342),
    (NEP / 'models' / 'nep4_dipole_water.txt', 'nep4_dipole', ['O', 'H'], 1637),
    (NEP / 'models' / 'nep4_water_OH.txt', 'nep4', ['O', 'H'], 2281),
])
def test_fixture_models_are_accepted(path, model, species, parameters):
    node = NepPotentialData(path)
    assert (node.model, node.species, node.n_parameters) == (model, species, parameters)
    assert node.base.attributes.get('body_matches') is True
    assert node.filename == path.name
    assert node.base.attributes.get('loadable_by_gpumd_5_3_plus') is (model != 'nep3')


def test_text_handle_and_crlf_are_normalised(tmp_path):
    text = PBTE.read_text()
    crlf = tmp_path / 'nep_crlf.txt'
    crlf.write_bytes(text.replace('\n', '\r\n').encode())
    node = NepPotentialData(crlf)
    assert node.get_content() == text
    assert node.checksum == hashlib.sha256(text.encode()).hexdigest()
    with open(PBTE, 'rb') as handle:
        assert NepPotentialData(handle).checksum == node.checksum
    assert NepPotentialData(text, filename='model.txt').filename == 'model.txt'


def test_truncated_body_is_refused():
    lines = PBTE.read_text().splitlines()
    with pytest.raises(FormatError, match=r'parameters: .*implies 3075 numbers .*3033 parameters \+ 42 q_scalers.*'
                                          r'the file has 3074'):
        NepPotentialData('\n'.join(lines[:-1]) + '\n')


@pytest.mark.parametrize(('change', 'message'), [
    (lambda lines: ['nep 2 Te Pb', *lines[1:]], 'NEP2'),
    (lambda lines: ['nep4 3 Te Pb', *lines[1:]], 'species: 3 types announced'),
    (lambda lines: [lines[0], 'cutoff 8 4', *lines[2:]], 'cutoff: no neighbour counts'),
    (lambda lines: lines[:5] + ['ANN 30 0', 'junk'] + lines[7:], 'line 7: parameters: expected one number'),
    (lambda lines: lines[:3], 'basis_size: header line missing'),
])
def test_malformed_files_are_refused(change, message):
    lines = PBTE.read_text().splitlines()
    with pytest.raises(FormatError, match=message):
        NepPotentialData('\n'.join(change(lines)) + '\n')


def test_unbuilt_node_cannot_be_stored(aiida_profile_clean, nep_entry_point):
    node = NepPotentialData()
    with pytest.raises(Exception, match='file|attributes'):
        node.store()


def test_changed_file_fails_checksum_validation(aiida_profile_clean, nep_entry_point):
    import io

    from aiida.common.exceptions import ValidationError

    node = NepPotentialData(PBTE)
    orm.SinglefileData.set_file(node, io.BytesIO(QNEP.read_bytes()), filename='nep.txt')
    with pytest.raises(ValidationError, match='checksum'):
        node.store()
