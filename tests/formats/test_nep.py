"""Tests of the GPUMD ``nep`` formats: nep.txt headers, nep.in writing/reading, loss.out and parity files.

Spot values are literals read from the recorded fixtures (``tests/fixtures/gpumd/nep``, provenance in
``tests/fixtures/gpumd/SOURCES-nep.md``). Shared fixtures without recorded provenance are read from
the shared fixtures beside the checkout when that folder exists.
"""

import io
import math
import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import (
    ARCHITECTURE_KEYWORDS,
    architecture_from_header,
    fill_nep_defaults,
    nep_in,
    nep_parameter_count,
    read_loss,
    read_nep_header,
    read_nep_in,
    read_parity,
)

NEP = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'nep'

NEP89_SPECIES = (
    'H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr '
    'Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir '
    'Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu'
)
# Header of a NEP89-like foundation model (the architecture the fine_tune fixture's nep.in says must not change).
NEP89_HEADER = (
    f'nep4_zbl 89 {NEP89_SPECIES}\nzbl 1 2\ncutoff 6 5 150 60\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 1\nANN 80 0\n'
)


def with_body(header: str, count: int) -> str:
    """A nep.txt: ``header`` followed by ``count`` numbers, one per line."""
    return header + ''.join(f'{0.001 * (k % 97) - 0.05:15.7e}\n' for k in range(count))


# ================================================================================================ nep.txt
def test_pbte_header_matches_the_documented_check():
    header = read_nep_header(NEP / 'pbte_train_master' / 'nep.txt')
    assert header['model'] == 'nep4' and header['nep_version'] == 4 and header['model_type'] == 'potential'
    assert header['species'] == ['Te', 'Pb'] and header['n_types'] == 2
    assert header['zbl'] is False and header['zbl_radii'] is None
    assert header['cutoff'] == [8.0, 4.0] and header['cutoffs'] == [[8.0, 4.0], [8.0, 4.0]]
    assert header['per_species_cutoffs'] is False and header['max_neighbors'] == [73, 8]
    assert header['n_max'] == [6, 6] and header['basis_size'] == [6, 6] and header['l_max'] == [4, 2, 0]
    assert header['four_body'] is True and header['five_body'] is False and header['neurons'] == [30, 0]
    assert header['descriptor_dim'] == 42
    assert header['n_ann_parameters'] == 2641 and header['n_descriptor_parameters'] == 392
    assert header['n_parameters'] == 3033 and header['n_q_scalers'] == 42
    assert header['n_header_lines'] == 6 and header['n_body_lines'] == 3075 and header['body_matches'] is True
    assert header['n_header_lines'] + header['n_body_lines'] == 3081  # the file's line count


def test_header_from_text_and_handle():
    text = (NEP / 'pbte_train_master' / 'nep.txt').read_text()
    path = str(NEP / 'pbte_train_master' / 'nep.txt')
    assert read_nep_header(text) == read_nep_header(io.StringIO(text)) == read_nep_header(path)


@pytest.mark.parametrize(('path', 'expected'), [
    (NEP / 'qnep_pbte_master' / 'nep.txt',
     {'model': 'nep4_charge2', 'charge_mode': 2, 'species': ['Te', 'Pb'], 'n_parameters': 3094, 'n_q_scalers': 42,
      'n_body_lines': 3136, 'max_neighbors': [73, 8]}),
    (NEP / 'models' / 'nep3_Al_legacy.txt',
     {'model': 'nep3', 'nep_version': 3, 'species': ['Al'], 'n_max': [8, 6], 'basis_size': [12, 12],
      'l_max': [4, 0, 0], 'four_body': False, 'neurons': [40, 0], 'descriptor_dim': 37, 'n_parameters': 1769,
      'n_body_lines': 1806, 'loadable_by_gpumd_5_3_plus': False}),
    (NEP / 'models' / 'nep4_charge1_water.txt',
     {'model': 'nep4_charge1', 'charge_mode': 1, 'species': ['H', 'O'], 'cutoff': [4.0, 4.0],
      'max_neighbors': [39, 39], 'n_parameters': 2342, 'n_q_scalers': 30}),
    (NEP / 'models' / 'nep4_dipole_water.txt',
     {'model': 'nep4_dipole', 'model_type': 'dipole', 'species': ['O', 'H'], 'l_max': [4, 2, 1], 'five_body': True,
      'neurons': [10, 0], 'descriptor_dim': 49, 'n_parameters': 1637, 'n_body_lines': 1686}),
    (NEP / 'models' / 'nep4_water_OH.txt',
     {'model': 'nep4', 'species': ['O', 'H'], 'cutoff': [6.0, 4.0], 'max_neighbors': [251, 80], 'n_max': [4, 4],
      'basis_size': [8, 8], 'descriptor_dim': 30, 'n_parameters': 2281, 'n_body_lines': 2311}),
])
def test_fixture_model_headers(path, expected):
    header = read_nep_header(path)
    assert {key: header[key] for key in expected} == expected
    assert header['body_matches'] is True


def test_zbl_and_per_species_cutoffs():
    header_text = ('nep4_zbl 2 Si O\nzbl 1.1 2.2 0.7\ncutoff 6 4 5.5 3.5 60 30\nn_max 4 4\nbasis_size 8 8\n'
                   'l_max 4 2 0\nANN 30 0\n')
    counts = nep_parameter_count(4, 2, [4, 4], [8, 8], [4, 2, 0], [30, 0])
    header = read_nep_header(with_body(header_text, counts['n_parameters'] + counts['n_q_scalers']))
    assert header['zbl'] is True and header['zbl_radii'] == [1.1, 2.2] and header['zbl_typewise_factor'] == 0.7
    assert header['per_species_cutoffs'] is True and header['cutoffs'] == [[6.0, 4.0], [5.5, 3.5]]
    assert header['cutoff'] == [6.0, 4.0] and header['max_neighbors'] == [60, 30]
    assert header['n_header_lines'] == 7 and header['body_matches'] is True
    arch = architecture_from_header(header)
    assert arch['cutoff'] == [6.0, 4.0, 5.5, 3.5] and arch['zbl'] == 2.2 and arch['use_typewise_cutoff_zbl'] == 0.7


def test_flexible_zbl_adds_ten_numbers_per_pair():
    header_text = 'nep4_zbl 3 Ba Ti O\nzbl 0 0\ncutoff 6 4 60 30\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\nANN 30 0\n'
    counts = nep_parameter_count(4, 3, [4, 4], [8, 8], [4, 2, 0], [30, 0])
    body = counts['n_parameters'] + counts['n_q_scalers'] + 60  # 6 species pairs x 10
    header = read_nep_header(with_body(header_text, body))
    assert header['zbl_flexible'] is True and header['n_zbl_parameters'] == 60 and header['body_matches'] is True


@pytest.mark.parametrize(('tag', 'n_types', 'neurons', 'ann'), [
    # dim = 5 + 5 * (4 + 1) = 30 for n_max 4 4, l_max 4 2 0
    ('nep4', 2, [30, 0], 32 * 30 * 2 + 1),
    ('nep3', 2, [30, 0], 32 * 30 + 1),
    ('nep5', 2, [30, 0], (32 * 30 + 1) * 2 + 1),
    ('nep4_polarizability', 2, [30, 0], 2 * (32 * 30 * 2 + 1)),
    ('nep4_charge2', 2, [30, 0], 32 * 30 * 2 + 1 + 30 * 2 + 1),
    ('nep4_charge3', 2, [30, 0], 32 * 30 * 2 + 1 + 30 * 2 + 1 + 30 * 2),
    ('nep4_temperature', 2, [30, 0], 33 * 30 * 2 + 1),  # temperature is one more input (dim 31)
    ('nep4', 2, [30, 20], (31 * 30 + 32 * 20) * 2 + 1),  # second hidden layer
])
def test_ann_parameter_formulas(tag, n_types, neurons, ann):
    header_text = (f'{tag} 2 Pb Te\ncutoff 8 4 70 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\n'
                   f'ANN {neurons[0]} {neurons[1]}\n')
    descriptor = 4 * (5 * 9 + 5 * 9)
    dim = 31 if 'temperature' in tag else 30
    header = read_nep_header(with_body(header_text, ann + descriptor + dim))
    assert header['n_ann_parameters'] == ann and header['n_descriptor_parameters'] == descriptor
    assert header['body_matches'] is True and header['n_q_scalers'] == dim


def test_wrong_body_length_is_reported_not_raised():
    lines = (NEP / 'pbte_train_master' / 'nep.txt').read_text().splitlines()
    header = read_nep_header('\n'.join(lines[:-42]) + '\n')  # q_scalers lost
    assert header['body_matches'] is False and header['n_body_lines'] == 3033
    header_only = read_nep_header('\n'.join(lines[:6]) + '\n')
    assert header_only['n_body_lines'] == 0 and header_only['expected_body_lines'] == 3075


@pytest.mark.parametrize(('text', 'message'), [
    ('nep_zbl 1 Si\n', r'line 1: model tag: .*NEP2'),
    ('nep6 1 Si\n', r'line 1: model tag: .*not a NEP model tag'),
    ('nep4 2 Te\n', r'line 1: species: 2 types announced but 1'),
    ('nep4 1 Xx\n', r'line 1: species: .*Xx'),
    ('nep4 2 Te Te\n', r'species listed twice'),
    ('nep4_zbl 1 Si\ncutoff 6 4 10 10\n', r'line 2: zbl: tag .* needs'),
    ('nep4 1 Si\nzbl 1 2\n', r'line 2: zbl: line present'),
    ('nep4 1 Si\ncutoff 6 4\n', r'line 2: cutoff: no neighbour counts'),
    ('nep4 2 Si O\ncutoff 6 4 5 10 10\n', r'line 2: cutoff: expected r_R r_A'),
    ('nep4 1 Si\ncutoff 4 6 10 10\n', r'line 2: cutoff: angular cutoff 6 exceeds radial 4'),
    ('nep4 1 Si\ncutoff 6 4 10.5 10\n', r'line 2: cutoff \(neighbour counts\): expected an integer'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nbasis_size 8 8\n', r'line 3: n_max: expected the n_max line'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4\n', r'line 3: n_max: expected 2 integer'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 3 0\n', r'line 5: l_max: 4-body field'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 9 2 0\n', r'line 5: l_max: l3 must be 2 to 8'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\n', r'ANN: header line missing'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\nANN 0 0\n', r'line 6: ANN: neuron'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\nANN 30 0\n1.0\n2.0 3.0\n',
     r'line 8: parameters: expected one number per line'),
    ('nep4 1 Si\ncutoff 6 4 10 10\nn_max 4 4\nbasis_size 8 8\nl_max 4 2 0\nANN 30 0\nnan\n',
     r'line 7: parameters: not a finite number'),
])
def test_malformed_headers_are_refused(text, message):
    with pytest.raises(FormatError, match=message):
        read_nep_header(text)


# ================================================================================================ nep.in
def test_pbte_nep_in_written_with_every_architecture_keyword():
    settings = read_nep_in(NEP / 'pbte_train_master' / 'nep.in')
    assert settings == {'type': ['Te', 'Pb'], 'generation': 20000}
    assert nep_in(settings, '5.6') == (
        'type           2 Te Pb\n'
        'version        4\n'
        'model_type     0\n'
        'cutoff         8 4\n'
        'n_max          6 6\n'
        'basis_size     6 6\n'
        'l_max          4 2 0\n'
        'neuron         30\n'
        'generation     20000\n'
    )
    # The v5.2+ defaults written explicitly are exactly the architecture in the trained nep.txt header.
    header = read_nep_header(NEP / 'pbte_train_master' / 'nep.txt')
    written = read_nep_in(nep_in(settings, '5.6'))
    arch = architecture_from_header(header)
    assert {key: written[key] for key in ('cutoff', 'n_max', 'basis_size', 'l_max', 'neuron', 'version')} == {
        key: arch[key] for key in ('cutoff', 'n_max', 'basis_size', 'l_max', 'neuron', 'version')}


@pytest.mark.parametrize(('folder', 'version', 'n_max', 'basis_size'), [
    ('pbte_train_master', '5.6', [6, 6], [6, 6]),
    ('pbte_predict_master', '5.6', [6, 6], [6, 6]),
    ('qnep_pbte_master', '5.6', [6, 6], [6, 6]),
    ('pbte_train_v4.0', '4.0', [4, 4], [8, 8]),
    ('tnep_dipole_legacy_v3.9.5', '3.9.5', [6, 6], [10, 10]),
])
def test_generated_nep_in_is_equivalent_to_fixture(folder, version, n_max, basis_size):
    fixture = read_nep_in(NEP / folder / 'nep.in', version=version)
    text = nep_in(fixture, version)
    lines = [line.split() for line in text.splitlines()]
    assert lines[0][0] == 'type'
    assert {line[0] for line in lines} >= {*ARCHITECTURE_KEYWORDS} - {'zbl'}
    regenerated = read_nep_in(text, version=version)
    assert fill_nep_defaults(regenerated, version) == fill_nep_defaults(fixture, version)
    full = fill_nep_defaults(fixture, version)
    assert full['n_max'] == n_max and full['basis_size'] == basis_size


def test_fixture_nep_in_values():
    qnep = read_nep_in(NEP / 'qnep_pbte_master' / 'nep.in')
    assert qnep == {'type': ['Te', 'Pb'], 'charge_mode': 2, 'cutoff': [8.0, 4.0], 'generation': 20000}
    assert 'charge_mode    2' in nep_in(qnep)
    assert read_nep_in(NEP / 'pbte_predict_master' / 'nep.in') == {'type': ['Te', 'Pb'], 'prediction': 1}
    tnep = read_nep_in(NEP / 'tnep_dipole_legacy_v3.9.5' / 'nep.in', version='3.9.5')
    assert tnep['type'] == ['H', 'C', 'N', 'O', 'S', 'Cl'] and tnep['model_type'] == 1
    assert tnep['l_max'] == [4, 1, 1] and tnep['lambda_1'] == 0.001 and tnep['batch'] == 10000
    assert 'l_max          4 2 1' in nep_in(tnep, '3.9.5')
    assert fill_nep_defaults(tnep, '3.9.5')['lambda_v'] == 1.0  # TNEP default


@pytest.mark.parametrize(('folder', 'version'), [('pbte_train_legacy_v3.9.5', '3.9.5'), ('finetune_nep89_MoS2', '5.6')])
def test_nep_in_fixtures_without_shared_provenance_row(folder, version):
    fixture = read_nep_in(NEP / folder / 'nep.in', version=version)
    foundation = NEP89_HEADER if 'fine_tune' in fixture else None
    text = nep_in(fixture, version, foundation=foundation)
    assert fill_nep_defaults(read_nep_in(text, version=version), version) == fill_nep_defaults(fixture, version)


def test_version_aware_defaults():
    old = read_nep_in(nep_in({'type': ['Si']}, '5.1'))
    new = read_nep_in(nep_in({'type': ['Si']}, '5.2'))
    assert (old['n_max'], old['basis_size']) == ([4, 4], [8, 8])
    assert (new['n_max'], new['basis_size']) == ([6, 6], [6, 6])
    assert old['l_max'] == new['l_max'] == [4, 1, 0] and old['neuron'] == 30 and old['cutoff'] == [8.0, 4.0]
    assert nep_in({'type': ['Si']}, 'master') == nep_in({'type': ['Si']}, 'v5.6')


def test_rich_settings_round_trip():
    settings = {
        'type': ['Ba', 'Ti', 'O'], 'version': 4, 'zbl': 2.0, 'use_typewise_cutoff_zbl': True,
        'cutoff': [[6, 4], [6, 4], [5, 3.5]], 'n_max': [5, 5], 'basis_size': [8, 8], 'l_max': [4, 2, 1],
        'neuron': [40, 10], 'lambda_1': 0.0, 'lambda_e': 1.0, 'lambda_f': 2.0, 'lambda_v': 0.5, 'lambda_shear': 2,
        'force_delta': 0.1, 'type_weight': [1, 1, 2], 'batch': [500, 1], 'population': 60, 'generation': 50000,
        'save_potential': [10000, 0, 1],
    }
    text = nep_in(settings, '5.6')
    assert text.splitlines()[0] == 'type           3 Ba Ti O'
    assert 'cutoff         6 4 6 4 5 3.5\n' in text and 'save_potential 10000 0 1\n' in text
    assert 'use_typewise_cutoff_zbl 0.7\n' in text and 'neuron         40 10\n' in text
    back = read_nep_in(text)
    assert back['cutoff'] == [6.0, 4.0, 6.0, 4.0, 5.0, 3.5] and back['l_max'] == [4, 1, 1]
    assert back['batch'] == [500, 1] and back['neuron'] == [40, 10] and back['type_weight'] == [1.0, 1.0, 2.0]
    assert nep_in(back, '5.6') == text


def test_prediction_mode():
    text = nep_in({'type': ['Te', 'Pb'], 'prediction': 1, 'output_descriptor': 2})
    assert 'prediction     1\n' in text and 'output_descriptor 2\n' in text


@pytest.mark.parametrize(('settings', 'version', 'message'), [
    ({'generation': 10}, '5.6', r'^type: mandatory'),
    ({'type': ['Xx']}, '5.6', r'^type: .*Xx'),
    ({'type': ['Si'], 'foo': 1}, '5.6', r'^foo: unknown nep.in keyword'),
    ({'type': ['Si'], 'n_max': [13, 4]}, '5.6', r'^n_max \(radial\): must be <= 12'),
    ({'type': ['Si'], 'n_max': [4, 9]}, '5.6', r'^n_max \(angular\): must be <= 8'),
    ({'type': ['Si'], 'n_max': [4]}, '5.6', r'^n_max: expected 2 value'),
    ({'type': ['Si'], 'basis_size': [17, 8]}, '5.6', r'^basis_size \(radial\): must be <= 16'),
    ({'type': ['Si'], 'basis_size': [8, 13]}, '5.6', r'^basis_size \(angular\): must be <= 12'),
    ({'type': ['Si'], 'cutoff': [8, 2]}, '5.6', r'^cutoff: angular cutoff must be >= 3'),
    ({'type': ['Si'], 'cutoff': [4, 5]}, '5.6', r'^cutoff: angular cutoff 5 exceeds radial cutoff 4'),
    ({'type': ['Si'], 'cutoff': [101, 4]}, '5.6', r'^cutoff: radial cutoff must be <= 100'),
    ({'type': ['Si', 'O'], 'cutoff': [6, 4, 5]}, '5.6', r'^cutoff: expected 2 or 4 value'),
    ({'type': ['Si', 'O'], 'cutoff': [6, 4, 5, 4]}, '4.0', r'^cutoff: per-species cutoffs need GPUMD v4.7'),
    ({'type': ['Si'], 'l_max': [9]}, '5.6', r'^l_max \(3-body\): must be <= 8'),
    ({'type': ['Si'], 'l_max': [4, 2, 1, 1]}, '5.2', r'^l_max: expected 1 or 2 or 3 value'),
    ({'type': ['Si'], 'l_max': [4, 0, 1]}, '5.2', r'^l_max: the 5-body term needs the 4-body term'),
    ({'type': ['Si'], 'neuron': 121}, '5.6', r'^neuron: must be <= 120'),
    ({'type': ['Si'], 'neuron': 0}, '5.6', r'^neuron: must be >= 1'),
    ({'type': ['Si'], 'zbl': 5}, '5.6', r'^zbl: must be <= 4'),
    ({'type': ['Si'], 'zbl': 0.5}, '5.6', r'^zbl: must be >= 1'),
    ({'type': ['Si'], 'use_typewise_cutoff_zbl': 0.4, 'zbl': 2}, '5.6', r'^use_typewise_cutoff_zbl: must be >= 0.5'),
    ({'type': ['Si'], 'use_typewise_cutoff_zbl': True}, '5.6', r'^use_typewise_cutoff_zbl: needs zbl'),
    ({'type': ['Si'], 'population': 5}, '5.6', r'^population: must be >= 10'),
    ({'type': ['Si'], 'population': 201}, '5.6', r'^population: must be <= 200'),
    ({'type': ['Si'], 'generation': 10_000_001}, '5.6', r'^generation: must be <= 10000000'),
    ({'type': ['Si'], 'batch': 0}, '5.6', r'^batch: must be >= 1'),
    ({'type': ['Si'], 'lambda_e': -1}, '5.6', r'^lambda_e: must be >= 0'),
    ({'type': ['Si'], 'lambda_1': 'big'}, '5.6', r'^lambda_1: expected a number'),
    ({'type': ['Si'], 'save_potential': [1000, 1]}, '5.6', r'^save_potential: expected 3 value'),
    ({'type': ['Si'], 'save_potential': [1000, 2, 0]}, '5.6', r'^save_potential \(format\): must be <= 1'),
    ({'type': ['Si'], 'version': 3}, '5.6', r'^version: NEP version 3 is not accepted'),
    ({'type': ['Si'], 'model_type': 4}, '5.6', r'^model_type: must be <= 3'),
    ({'type': ['Si'], 'output_descriptor': 1}, '5.6', r'^output_descriptor: only allowed in prediction mode'),
    ({'type': ['Si'], 'atomic_v': 1}, '5.6', r'^atomic_v: only for dipole or polarizability'),
    ({'type': ['Si'], 'type_weight': [1, 2]}, '5.6', r'^type_weight: expected 1 value'),
    ({'type': ['Si', 'O'], 'charge_mode': 2, 'cutoff': [6, 4, 6, 4]}, '5.6', r'^charge_mode: .*uniform cutoff'),
    ({'type': ['Si'], 'charge_mode': 1, 'neuron': [30, 10]}, '5.6', r'^charge_mode: .*one hidden layer'),
    ({'type': ['Si'], 'fine_tune': ['a.txt']}, '5.6', r'^fine_tune: expected 2 value'),
    ({'type': ['Si']}, '3.4', r'^version: GPUMD .* not supported'),
])
def test_invalid_settings_are_refused_naming_the_key(settings, version, message):
    with pytest.raises(FormatError, match=message):
        nep_in(settings, version)


def test_fine_tune_checks_the_foundation_architecture():
    settings = {'type': ['Mo', 'S'], 'fine_tune': ['nep89.txt', 'nep89.restart'], 'generation': 11000}
    text = nep_in(settings, '5.6', foundation=NEP89_HEADER)
    written = read_nep_in(text)
    assert written['zbl'] == 2.0 and written['cutoff'] == [6.0, 5.0] and written['n_max'] == [4, 4]
    assert written['basis_size'] == [8, 8] and written['l_max'] == [4, 1, 1] and written['neuron'] == 80
    assert 'l_max          4 2 1\n' in text and 'fine_tune      nep89.txt nep89.restart\n' in text
    header = read_nep_header(NEP89_HEADER)
    assert nep_in({**settings, 'n_max': [4, 4], 'neuron': 80}, foundation=header) == text
    with pytest.raises(FormatError, match=r"^n_max: \[6, 6\] does not match the foundation model's \[4, 4\]"):
        nep_in({**settings, 'n_max': [6, 6]}, foundation=header)
    with pytest.raises(FormatError, match=r'^zbl: 3.0 does not match'):
        nep_in({**settings, 'zbl': 3}, foundation=header)
    with pytest.raises(FormatError, match=r"^type: species \['Po'\] are not in the foundation model"):
        nep_in({**settings, 'type': ['Mo', 'Po']}, foundation=header)
    with pytest.raises(FormatError, match=r'^fine_tune: pass foundation='):
        nep_in(settings)
    with pytest.raises(FormatError, match=r'^fine_tune: a foundation model was given'):
        nep_in({'type': ['Mo']}, foundation=header)


def test_read_nep_in_grammar():
    text = '# comment\ntype 2 Te Pb   # species\nmode 1 # alias\n\ncutoff 7 4\ngeneration 10\ngeneration 20\n'
    assert read_nep_in(text) == {'type': ['Te', 'Pb'], 'model_type': 1, 'cutoff': [7.0, 4.0], 'generation': 20}
    with pytest.raises(FormatError, match=r'^nep.in line 1: cutoff: must come after type'):
        read_nep_in('cutoff 8 4\ntype 1 Si\n')
    with pytest.raises(FormatError, match=r'^nep.in line 2: frobnicate: unknown keyword'):
        read_nep_in('type 1 Si\nfrobnicate 1\n')
    with pytest.raises(FormatError, match=r'^nep.in line 1: type: 2 species announced but 1'):
        read_nep_in('type 2 Si\n')
    with pytest.raises(FormatError, match=r'^nep.in line 2: n_max \(radial\): must be <= 12'):
        read_nep_in('type 1 Si\nn_max 20 4\n')
    with pytest.raises(FormatError, match=r'^nep.in line 2: l_max \(4-body\): must be one of \[0, 2\]'):
        read_nep_in('type 1 Si\nl_max 4 1 0\n', version='5.2')  # 0/2 before v5.3
    assert read_nep_in('type 1 Si\nl_max 4 1 0\n', version='5.6')['l_max'] == [4, 1, 0]
    assert read_nep_in('type 1 Si\nl_max 4\n')['l_max'] == [4, 1, 0]
    assert read_nep_in('type 1 Si\nuse_typewise_cutoff_zbl\nzbl 2\n')['use_typewise_cutoff_zbl'] == 0.7
    with pytest.raises(FormatError, match=r'^nep.in: type: mandatory'):
        read_nep_in('generation 10\n')


# ================================================================================================ loss.out
def test_loss_potential_10_columns():
    loss = read_loss(NEP / 'pbte_train_master' / 'loss.out')
    assert loss['kind'] == 'potential' and len(loss['columns']) == 10 and loss['data'].shape == (200, 10)
    assert loss['columns'][4] == 'rmse_energy_train' and loss['columns'][9] == 'rmse_virial_test'
    assert loss['data'][0].tolist()[:6] == [100, 0.15328, 0.02081, 0.02458, 0.00189, 0.10600]
    assert loss['data'][-1, 0] == 20000
    assert not loss['data'][:, 7:].any()  # no test set: test columns are 0


def test_loss_qnep_14_and_tnep_6_columns():
    qnep = read_loss(NEP / 'qnep_pbte_master' / 'loss.out', kind='charge')
    assert qnep['data'].shape == (200, 14) and qnep['columns'][7] == 'rmse_charge_train'
    assert qnep['data'][0, 7] == 0.15685
    tnep = read_loss(NEP / 'tnep_dipole_legacy_v3.9.5' / 'loss.out')
    assert tnep['kind'] == 'tensor' and tnep['data'].shape == (200, 6)
    assert tnep['data'][0].tolist() == [100, 0.01468, 0.00029, 0.00036, 0.01403, 0.01383]


def test_loss_comments_headers_and_errors(tmp_path):
    rows = '100 0.1 0 0 0.01 0.1 0 0 0 0\n200 0.1 0 0 0.01 0.1 0 0 0 0\n'
    path = tmp_path / 'loss.out'
    path.write_text('# a comment line\n' + rows)
    assert read_loss(path)['data'].shape == (2, 10)
    path.write_text('# columns gen total l1 l2 e f v ediff e_t f_t v_t\n100 1 2 3 4 5 6 7 8 9 10\n')
    custom = read_loss(path)
    assert custom['kind'] == 'custom' and custom['columns'][7] == 'ediff'
    path.write_text(rows + '100000000.15328 0 0 0.01 0.1 0 0 0 0\n')  # generation 10^7 ran into the loss
    with pytest.raises(FormatError, match=r'^loss.out line 3: 9 columns instead of 10'):
        read_loss(path)
    path.write_text(rows + '300 100.123450.02040 0 0.01 0.1 0 0 0 0\n')  # qNEP %-9.5f loss >= 100
    with pytest.raises(FormatError, match=r'^loss.out line 3: expected numbers, .*runs into the next one'):
        read_loss(path)
    path.write_text('100 0.1 0 0 0.01 0.1 0 0\n')
    with pytest.raises(FormatError, match=r'^loss.out line 1: 8 columns; expected 10'):
        read_loss(path)
    path.write_text(rows)
    with pytest.raises(FormatError, match=r"^loss.out: kind 'tensor' expected but the file has 10 columns"):
        read_loss(path, kind='tensor')
    path.write_text('# nothing\n')
    with pytest.raises(FormatError, match='no data rows'):
        read_loss(path)


# ================================================================================================ parity files
def test_energy_and_force_parity():
    energy = read_parity(NEP / 'pbte_train_master' / 'energy_train.out', 'energy')
    assert energy['prediction'].shape == (25, 1) and energy['target'].shape == (25, 1)
    assert energy['prediction'][0, 0] == -3.74744 and energy['target'][0, 0] == -3.74876
    assert not energy['missing'].any()
    force = read_parity(NEP / 'pbte_train_master' / 'force_train.out', 'force')
    assert force['prediction'].shape == (500, 3)
    assert force['prediction'][0].tolist() == [0.075966, 0.237666, -0.20433]
    assert force['target'][0].tolist() == [0.0783459, 0.336893, -0.132339]


def test_virial_and_stress_missing_targets_become_nan():
    virial = read_parity(NEP / 'pbte_train_master' / 'virial_train.out', 'virial')
    assert virial['components'] == ['xx', 'yy', 'zz', 'xy', 'yz', 'zx']
    assert virial['prediction'].shape == (25, 6) and virial['missing'].all() and np.isnan(virial['target']).all()
    assert virial['prediction'][0, 0] == 1.04335
    stress_path = NEP / 'pbte_train_master' / 'stress_train.out'
    assert stress_path.read_text().split()[6] == '-1e+06'  # v4.9.1+ sentinel: exactly -1e6
    stress = read_parity(stress_path, 'stress')
    assert stress['missing'].all() and stress['prediction'][0, 0] == 4.71474
    old_path = NEP / 'pbte_train_v4.0' / 'stress_train.out'
    assert math.isclose(float(old_path.read_text().split()[6]), -4.51884e6)  # -1e6 * N/V * 160.2 before v4.9.1
    old = read_parity(old_path, 'stress')
    assert old['missing'].all() and np.isnan(old['target']).all() and old['prediction'][0, 0] == 2.24109
    qnep = read_parity(NEP / 'qnep_pbte_master' / 'stress_train.out', 'stress')
    assert qnep['prediction'].shape == (25, 6) and qnep['missing'].all()


def test_partial_missing_targets_and_errors(tmp_path):
    path = tmp_path / 'virial_test.out'
    path.write_text('1 2 3 4 5 6 1.1 2.1 3.1 4.1 5.1 6.1\n1 2 3 4 5 6 -1e6 -1e6 -1e6 -1e6 -1e6 -1e6\n')
    virial = read_parity(path, 'virial')
    assert virial['missing'].tolist() == [False, True]
    assert virial['target'][0].tolist() == [1.1, 2.1, 3.1, 4.1, 5.1, 6.1] and np.isnan(virial['target'][1]).all()
    with pytest.raises(FormatError, match=r'^force parity file line 1: 12 columns; expected 6'):
        read_parity(path, 'force')
    with pytest.raises(FormatError, match=r"^kind: 'charge' is not a parity file kind"):
        read_parity(path, 'charge')
    path.write_text('1 2\n1 2 3\n')
    with pytest.raises(FormatError, match=r'^energy parity file line 2: 3 columns instead of 2'):
        read_parity(path, 'energy')


def test_dipole_parity():
    dipole = read_parity(NEP / 'tnep_dipole_legacy_v3.9.5' / 'dipole_train.out', 'dipole')
    assert dipole['prediction'].shape == (200, 3) and not dipole['missing'].any()
    assert dipole['target'][0].tolist() == [0.0124615, 0.00212308, 0.000353846]


def test_legacy_two_column_virial_layout():
    virial = read_parity(NEP / 'pbte_train_legacy_v3.9.5' / 'virial_train.out', 'virial')
    assert virial['legacy_layout'] is True and virial['prediction'].shape == (25, 6)
    assert virial['prediction'][0, 0] == 0.526215 and virial['missing'].all()
