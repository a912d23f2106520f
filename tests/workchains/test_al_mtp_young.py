"""Fast tier: the MTP family explores a young potential (few training frames) without a break threshold.

With a handful of training frames the active set is tiny and even sound frames grade 1e8 and more, so the usual
break at 10 would end every walker at its first grade check. The rule is a pure function
(:func:`young_exploration_parameters`); the step test instantiates the family, calls ``explore`` with ``submit``
replaced, and reads what would have been submitted and what was reported. No executable runs.
"""

import pytest
from aiida import orm
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.exploration import check_explore_settings
from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.workchains.al_mtp import MtpIterationWorkChain, young_exploration_parameters
from tests.workchains.conftest import cu2s2

pytestmark = pytest.mark.usefixtures('aiida_profile')

PARAMETERS = {'temperatures': [300.0], 'seeds': [1], 'steps': 200, 'time_step': 1.0, 'grade_every': 10}


def training_set(frames: int) -> TrainingSetData:
    return TrainingSetData.from_frames([
        Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], positions=atoms.positions, energy=-20.0,
              forces=[[0.0] * 3] * 4)
        for atoms in (cu2s2(0.05, seed) for seed in range(frames))])


@pytest.mark.parametrize(('parameters', 'frames', 'young_break', 'expected'), [
    (PARAMETERS, 2, None, None),  # default break 10 -> none
    ({**PARAMETERS, 'break_threshold': 30.0}, 49, None, None),
    (PARAMETERS, 2, 1e4, 1e4),  # a finite young break, the larger of the two
    ({**PARAMETERS, 'break_threshold': 1e5}, 2, 1e4, 1e5),  # already larger: unchanged
    ({**PARAMETERS, 'explode_grade': 1e3}, 2, 1e4, None),  # 1e4 would not stay below explode_grade: none
    ({**PARAMETERS, 'explode_grade': 1e6}, 2, 1e4, 1e4),
    (PARAMETERS, 50, None, 10.0),  # mature: unchanged
])
def test_young_exploration_parameters(parameters, frames, young_break, expected):
    before = dict(parameters)
    result, why = young_exploration_parameters(parameters, frames, 50, young_break)
    assert parameters == before  # the input dict is not changed
    assert check_explore_settings(result)['break_threshold'] == expected
    if expected == check_explore_settings(parameters)['break_threshold']:
        assert why is None and result is parameters
    else:
        assert why.startswith(f'young potential ({frames} training frame(s) < young_training_frames 50)')
        assert result == {**parameters, 'break_threshold': expected}


def test_young_rule_off_with_zero_frames():
    assert young_exploration_parameters(PARAMETERS, 0, 0) == (PARAMETERS, None)


@pytest.fixture
def codes(aiida_localhost):
    def code(label, plugin):
        return orm.InstalledCode(label=f'{label}-young', computer=aiida_localhost, filepath_executable='/bin/true',
                                 default_calc_job_plugin=plugin).store()
    return {'train': code('motep', 'mlcampaign.motep.train'), 'explore': code('mtp-x', 'mlcampaign.mtp.explore')}


def family(codes, frames, monkeypatch, overrides=None, **inputs):
    """An MTP family from the ``fast`` protocol, instantiated, ``submit`` recording its inputs instead."""
    builder = MtpIterationWorkChain.get_builder()
    train = training_set(frames)
    MtpIterationWorkChain.fill_from_protocol(builder, training_set=train, structures={'s': orm.StructureData(
        ase=cu2s2())}, codes=codes, protocol='fast', overrides=overrides)
    builder.training_set = train
    for key, value in inputs.items():
        builder[key] = value
    process = instantiate_process(get_manager().get_runner(), builder)
    submitted = []
    monkeypatch.setattr(process, 'submit', lambda cls, **kw: submitted.append(kw) or orm.CalcJobNode())
    process.ctx.potential = builder.potential
    return process, submitted


def reports(process):
    return [log.message for log in orm.Log.collection.get_logs_for(process.node)]


def test_protocol_gives_the_young_rule(codes, monkeypatch):
    process, _ = family(codes, 2, monkeypatch)
    assert process.inputs.young_training_frames.value == 50 and 'young_break_threshold' not in process.inputs
    process, _ = family(codes, 2, monkeypatch, overrides={'young_training_frames': 5, 'young_break_threshold': 100})
    assert process.inputs.young_training_frames.value == 5 and process.inputs.young_break_threshold.value == 100


def test_a_young_potential_explores_without_break(codes, monkeypatch):
    process, submitted = family(codes, 2, monkeypatch)
    process.explore()
    (inputs,) = submitted
    assert inputs['parameters'].get_dict()['break_threshold'] is None
    assert check_explore_settings(inputs['parameters'].get_dict())['break_threshold'] is None
    assert any('young potential (2 training frame(s) < young_training_frames 50): exploration break_threshold '
               '10 -> none' in message for message in reports(process))


def test_a_young_break_threshold_is_used_when_given(codes, monkeypatch):
    process, submitted = family(codes, 3, monkeypatch, young_break_threshold=orm.Float(1e6))
    process.explore()
    assert submitted[0]['parameters']['break_threshold'] == 1e6


def test_a_mature_potential_keeps_the_break(codes, monkeypatch):
    process, submitted = family(codes, 4, monkeypatch, young_training_frames=orm.Int(4))
    given = process.inputs.explore.parameters
    process.explore()
    assert submitted[0]['parameters'].uuid == given.uuid  # the very node given, no new one
    assert check_explore_settings(given.get_dict())['break_threshold'] == 10.0
    assert not any('young potential' in message for message in reports(process))


@pytest.mark.parametrize(('inputs', 'field'), [
    ({'young_training_frames': -1}, 'young_training_frames'),
    ({'young_break_threshold': 0.5}, 'young_break_threshold'),
])
def test_young_inputs_are_validated(codes, monkeypatch, inputs, field):
    nodes = {key: (orm.Int if isinstance(value, int) else orm.Float)(value) for key, value in inputs.items()}
    with pytest.raises(ValueError, match=field):
        family(codes, 2, monkeypatch, **nodes)
