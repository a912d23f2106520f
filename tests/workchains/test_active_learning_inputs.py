"""Input checks of ``mlcampaign.al.loop`` for both families: refused before anything is submitted."""

import pathlib

import pytest
from aiida import orm
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from ase.build import bulk

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain
from aiida_mlcampaign.workchains.al_nep import get_nep_builder_from_loop

RECORDED = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'nep'


@pytest.fixture
def label_inputs(pw_code, pseudo_family):
    """A valid ``label`` namespace (DftLabelWorkChain's protocol), so the loop's own checks are reached."""
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain
    from tests.workchains.conftest import TEST_OPTIONS, TEST_OVERRIDES, cu2s2

    template = DftLabelWorkChain.get_builder_from_protocol(
        pw_code, [orm.StructureData(ase=cu2s2())], protocol='fast', pseudo_family=pseudo_family.label,
        overrides=TEST_OVERRIDES, options=TEST_OPTIONS)
    return {key: template[key] for key in ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction',
                                           'min_distance')}


@pytest.fixture
def codes(aiida_localhost, label_inputs):
    def code(label, plugin):
        # Labels of their own: a real code's label (motep@localhost) would shadow the program setup finds.
        return orm.InstalledCode(label=f'{label}-true', computer=aiida_localhost, filepath_executable='/bin/true',
                                 default_calc_job_plugin=plugin).store()
    return {'label': label_inputs, 'nep': code('nep', 'mlcampaign.nep.train'),
            'explore': code('explore', 'mlcampaign.nep.explore'),
            'motep': code('motep', 'mlcampaign.motep.train'), 'mtp-explore': code('mtp-x', 'mlcampaign.mtp.explore')}


def pbte_set():
    """One labelled rattled PbTe frame (nep needs an energy and forces on every frame)."""
    from aiida_mlcampaign.formats.frames import Frame

    atoms = bulk('PbTe', 'rocksalt', a=6.46)
    atoms.rattle(0.05, seed=1)
    frame = Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], positions=atoms.positions,
                  energy=-10.0, forces=[[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]])
    return TrainingSetData.from_frames([frame], species=['Te', 'Pb'])


def nep_builder(codes, training_set, **parameters):
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = training_set
    builder.nep.committee_size = orm.Int(2)
    builder.nep.train.code = codes['nep']
    builder.nep.train.species = orm.List(['Te', 'Pb'])
    builder.nep.explore.code = codes['explore']
    builder.nep.explore.structures = {'start': orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))}
    builder.nep.explore.parameters = orm.Dict({'temperatures': [300.0], 'seeds': [1], 'steps': 10, 'time_step': 1.0,
                                               'grade_every': 5, 'select_threshold': 0.05,
                                               'break_threshold': 0.5, **parameters})
    for key, value in codes['label'].items():
        setattr(builder.label, key, value)
    return builder


def refusal(builder):
    """The validation message of ``builder``'s inputs, or None when they are accepted."""
    try:
        instantiate_process(get_manager().get_runner(), builder)
    except ValueError as exception:
        return str(exception)
    return None


def test_nep_family_inputs_pass_validation(codes):
    assert refusal(nep_builder(codes, pbte_set())) is None


@pytest.mark.parametrize(('change', 'field'), [
    (lambda b: setattr(b.nep.explore, 'parameters', orm.Dict(
        {**b.nep.explore.parameters.get_dict(), 'select_threshold': 0.6})), 'break_threshold'),
    (lambda b: setattr(b.nep, 'committee_size', orm.Int(1)), 'committee_size'),
    (lambda b: setattr(b.nep.train, 'species', orm.List(['Pb'])), 'species [\'Te\'] are not in train.species'),
    (lambda b: setattr(b.nep.train, 'settings', orm.Dict({'generation': -5})), 'nep.train: settings.generation'),
    (lambda b: setattr(b.nep.train, 'settings', orm.Dict({'type': [2, 'Te', 'Pb']})), 'nep.train: settings'),
    (lambda b: setattr(b, 'training_set', TrainingSetData.from_ase([bulk('PbTe', 'rocksalt', a=6.46)])),
     'nep.train: training_set'),  # unlabelled frames: refused at launch, not when the committee is created
])
def test_nep_family_refusals_name_the_field(codes, change, field):
    builder = nep_builder(codes, pbte_set())
    try:  # a port validator refuses at assignment, the namespace validator when the process is created
        change(builder)
        message = refusal(builder)
    except ValueError as exception:
        message = str(exception)
    assert message is not None and field in message, message


def test_family_namespaces_are_not_mixed(codes):
    builder = nep_builder(codes, pbte_set())
    builder.mtp.potential = MtpPotentialData.from_template(2, ['Te', 'Pb'], min_dist=2.0, max_dist=5.0)
    builder.mtp.train.code = codes['motep']
    builder.mtp.explore.code = codes['mtp-explore']
    builder.mtp.explore.structures = dict(builder.nep.explore.structures)
    builder.mtp.explore.parameters = orm.Dict({'temperatures': [300.0], 'seeds': [1], 'steps': 10, 'time_step': 1.0,
                                               'grade_every': 5})
    assert 'exactly one potential family, got mtp, nep' in refusal(builder)
    del builder.nep
    assert refusal(builder) is None  # the same mtp namespace alone is a valid loop

    mtp = ActiveLearningWorkChain.get_builder()
    for key, value in codes['label'].items():
        setattr(mtp.label, key, value)
    mtp.training_set = pbte_set()
    assert 'exactly one potential family, got none' in refusal(mtp)
    mtp.mtp.potential = MtpPotentialData.from_template(2, ['Te', 'Pb'], min_dist=2.0, max_dist=5.0)
    message = refusal(mtp)  # the rest of the family's namespace is still missing, and named
    assert "'inputs.mtp.explore.structures'" in message, message


def test_a_family_without_a_cpu_or_gpu_explorer_is_refused(codes):
    builder = nep_builder(codes, pbte_set())
    del builder.nep.explore
    assert 'explore, gpumd: family nep explores with exactly one of them, got none' in refusal(builder)


def test_nep_builder_from_a_finished_loop_uses_its_training_set(codes):
    from aiida.common.links import LinkType

    loop = orm.WorkflowNode()
    training_set = pbte_set().store()
    test_set = pbte_set().store()
    loop.base.links.add_incoming(test_set, LinkType.INPUT_WORK, 'test_set')
    loop.set_process_state('finished')
    loop.set_exit_status(0)
    loop.store()
    training_set.base.links.add_incoming(loop, LinkType.RETURN, 'training_set')

    builder = get_nep_builder_from_loop(loop, codes['nep'], {'generation': 100}, species=orm.List(['Te', 'Pb']))
    assert builder.training_set.uuid == training_set.uuid
    assert builder.test_set.uuid == test_set.uuid
    assert builder.settings.get_dict() == {'generation': 100}

    failed = orm.WorkflowNode()
    failed.set_process_state('finished')
    failed.set_exit_status(410)
    failed.store()
    with pytest.raises(ValueError, match='loop'):
        get_nep_builder_from_loop(failed, codes['nep'])


def test_recorded_committee_members_are_distinct_models():
    members = [NepPotentialData(RECORDED / name / 'nep.txt') for name in ('pbte_train_master',
                                                                          'pbte_train_legacy_v3.9.5')]
    assert members[0].species == members[1].species == ['Te', 'Pb']
    assert members[0].checksum != members[1].checksum
