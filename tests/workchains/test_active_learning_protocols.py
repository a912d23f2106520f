"""Protocols of ``mlcampaign.al.loop`` and its families (``fast``, ``balanced``, ``stringent``): each gives a
loop that passes every launch check, with the protocol's numbers, and overrides reach loop, label and family."""

import re

import pytest
from aiida import orm

from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
from tests.workchains.conftest import TEST_OPTIONS, TEST_OVERRIDES, cu2s2
from tests.workchains.test_active_learning_inputs import codes, label_inputs, refusal  # noqa: F401 (fixtures)


def cu2s2_set():
    atoms = cu2s2(0.05, 1)
    frame = Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], positions=atoms.positions,
                  energy=-20.0, forces=[[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, -0.1, 0.0]])
    return TrainingSetData.from_frames([frame])


def builder_for(family, protocol, codes, pw_code, pseudo_family, **kwargs):  # noqa: F811
    family_codes = {'mtp': {'train': codes['motep'], 'explore': codes['mtp-explore']},
                    'nep': {'train': codes['nep'], 'explore': codes['explore']}}[family]
    overrides = {'label': TEST_OVERRIDES, **kwargs.pop('overrides', {})}
    return ActiveLearningWorkChain.get_builder_from_protocol(
        family, cu2s2_set(), [orm.StructureData(ase=cu2s2())], family_codes, pw_code, protocol=protocol,
        overrides=overrides, pseudo_family=pseudo_family.label, options=TEST_OPTIONS, **kwargs)


@pytest.mark.parametrize('family', ['mtp', 'nep'])
@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_every_protocol_gives_a_valid_loop(family, protocol, codes, pw_code, pseudo_family):  # noqa: F811
    builder = builder_for(family, protocol, codes, pw_code, pseudo_family)
    assert refusal(builder) is None
    loop = ActiveLearningWorkChain.get_protocol_inputs(protocol)
    assert builder.label_budget.value == loop['label_budget'] and builder.max_iterations.value == loop['max_iterations']
    assert builder.label.dft.pw.parameters['SYSTEM']['ecutwfc'] == 20.0  # the label overrides reached dft.label
    assert set(builder[family].explore.structures) == {'structure_00'}
    if family == 'mtp':
        potential = builder.mtp.potential
        assert potential.species == ['Cu', 'S']
        assert f'init_L{ {"fast": 6, "balanced": 10, "stringent": 16}[protocol]:02d}' in potential.filename
    else:
        assert builder.nep.committee_size.value == {'fast': 2, 'balanced': 4, 'stringent': 5}[protocol]
        assert builder.nep.train.species.get_list() == ['Cu', 'S']
        window = builder.nep.explore.parameters.get_dict()
        assert 0 < window['select_threshold'] < window['break_threshold']


def test_overrides_and_temperatures_reach_loop_and_family(codes, pw_code, pseudo_family):  # noqa: F811
    builder = builder_for('mtp', 'fast', codes, pw_code, pseudo_family, temperatures=[500, 1000],
                          overrides={'label_budget': 3, 'mtp': {'level': 8, 'train': {'max_iter': 10}}})
    assert builder.label_budget.value == 3
    assert 'init_L08' in builder.mtp.potential.filename
    assert builder.mtp.train.settings['max_iter'] == 10
    assert builder.mtp.explore.parameters['temperatures'] == [500.0, 1000.0]
    assert refusal(builder) is None


def test_an_unknown_family_is_refused_by_name(codes, pw_code, pseudo_family):  # noqa: F811
    with pytest.raises(ValueError, match=r"family: 'gap' is not installed; choose one of \['emt', 'mtp', 'nep'\]"):
        ActiveLearningWorkChain.get_builder_from_protocol('gap', cu2s2_set(), [orm.StructureData(ase=cu2s2())], {},
                                                          pw_code)


@pytest.mark.parametrize(('overrides', 'message'), [
    ({'label_budjet': 3}, "overrides: unknown key(s) ['label_budjet']"),
    ({'mtp': {'levl': 12}}, "overrides.mtp: unknown key(s) ['levl']"),
])
def test_a_misspelt_override_is_refused_by_name(codes, pw_code, pseudo_family, overrides, message):  # noqa: F811
    with pytest.raises(ValueError, match=re.escape(message)):
        builder_for('mtp', 'fast', codes, pw_code, pseudo_family, overrides=overrides)
