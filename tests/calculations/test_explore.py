"""MtpExploreCalculation with the real ``mlcampaign-explore`` driver (console script of this package)."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_mlcampaign.calculations.explore import MtpExploreCalculation

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from tests.helpers import local_codes

POTENTIAL = 'mtp/cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
TRAIN_CFG = 'mtp/cu_emt_train_40cfg_made-here.cfg'
PARAMETERS = {'temperatures': [300, 3000], 'seeds': [1, 2], 'steps': 200, 'time_step': 2.0, 'grade_every': 10}


@pytest.fixture(scope='module')
def explore_code(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'mlcampaign-explore')['mlcampaign-explore']


@pytest.fixture(scope='module')
def copper(aiida_profile, fixtures_dir):
    frames = list(read_cfg(fixtures_dir / TRAIN_CFG, ['Cu']))
    potential = MtpPotentialData(fixtures_dir / POTENTIAL, species=['Cu']).store()
    training_set = TrainingSetData.from_frames(frames, species=['Cu']).store()
    start = orm.StructureData(ase=frames[0].to_ase()).store()  # 8-atom fcc cell from the training set
    return potential, training_set, start


def _builder(code, copper, parameters=None, **structures):
    potential, training_set, start = copper
    builder = MtpExploreCalculation.get_builder()
    builder.code = code
    builder.potential = potential
    builder.training_set = training_set
    builder.structures = structures or {'fcc': start}
    builder.parameters = orm.Dict(parameters or PARAMETERS)
    return builder


def test_explore_runs_and_returns_unlabelled_candidates(explore_code, copper):
    results, node = run_get_node(_builder(explore_code, copper))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    statistics = results['statistics'].get_dict()
    totals, walkers = statistics['totals'], statistics['walkers']
    assert totals['walkers'] == len(walkers) == 4 and totals['exploded'] == 0
    assert {w['start_label'] for w in walkers} == {'fcc'}
    cold = [w for w in walkers if w['temperature'] == 300.0]
    hot = [w for w in walkers if w['temperature'] == 3000.0]
    assert all(w['stop_reason'] == 'completed' and w['above_select'] == 0 for w in cold)
    assert all(w['stop_reason'] == 'break' for w in hot)

    candidates = results['candidates']
    assert candidates.num_frames == totals['candidates'] == sum(w['candidates'] for w in walkers) > 0
    assert candidates.species == ['Cu']
    assert candidates.base.attributes.get('num_labelled') == 0
    assert np.isnan(candidates.get_array('energies')).all()
    assert np.isnan(candidates.get_array('forces')).all()
    assert np.isnan(candidates.get_array('stresses')).all()
    assert set(candidates.get_array('origins')) == {'explore'}
    assert set(candidates.get_array('temperatures')) == {3000.0}
    assert set(candidates.get_array('source_uuids')) == {node.uuid}

    grades = results['grades']
    assert len(grades.get_array('grades')) == candidates.num_frames
    assert (grades.get_array('grades') > 2.1).all()
    assert set(grades.get_array('walkers')) <= {w['walker'] for w in hot}
    assert (grades.get_array('steps') % 10 == 0).all()
    assert totals['candidate_fraction'] == pytest.approx(totals['above_select'] / totals['graded'])
    assert totals['above_select'] >= candidates.num_frames

    # the working directory held what a remote computer needs and nothing machine-specific
    names = node.base.repository.list_object_names()
    assert {'settings.json', 'potential.mtp', 'training.cfg', 'starts.xyz'} <= set(names)


def test_all_walkers_exploded_is_a_scientific_error(explore_code, copper):
    # fcc Cu has 2.55 Å nearest neighbours: a 3 Å minimum distance explodes every walker at step 0
    parameters = {**PARAMETERS, 'temperatures': [300], 'seeds': [1], 'steps': 10, 'min_distance': 3.0}
    results, node = run_get_node(_builder(explore_code, copper, parameters))
    assert node.exit_status == MtpExploreCalculation.exit_codes.ERROR_ALL_WALKERS_EXPLODED.status
    assert results['statistics']['totals']['exploded'] == 1
    assert 'candidates' not in results and 'grades' not in results


def test_bad_inputs_are_refused(explore_code, copper):
    start = copper[2]
    builder = MtpExploreCalculation.get_builder()
    with pytest.raises(ValueError, match=r'parameters.temperatures\[0\]: must be a number > 0'):
        builder.parameters = orm.Dict({**PARAMETERS, 'temperatures': [-300]})
    with pytest.raises(ValueError, match='parameters.break_threshold: must be > select_threshold'):
        builder.parameters = orm.Dict({**PARAMETERS, 'break_threshold': 1.5})
    with pytest.raises(ValueError, match=r"parameters: unknown key\(s\) \['nsteps'\]"):
        builder.parameters = orm.Dict({**PARAMETERS, 'nsteps': 5})

    silver = start.get_ase()
    silver[3].symbol = 'Ag'
    builder = _builder(explore_code, copper, fcc=start, silver=orm.StructureData(ase=silver))
    with pytest.raises(ValueError, match=r"structures.silver: elements \['Ag'\] are not in the potential's species"):
        run_get_node(builder)

    close = start.get_ase()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    with pytest.raises(ValueError, match=r'structures.close: two atoms are 0.300 Å apart'):
        _builder(explore_code, copper, fcc=start, close=orm.StructureData(ase=close))

    builder = _builder(explore_code, copper)
    with pytest.raises(ValueError, match='potential: the potential has no coefficients'):
        builder.potential = MtpPotentialData.from_template(8, ['Cu'], min_dist=2.0, max_dist=5.0)

    builder = _builder(explore_code, copper)
    silver_cell = start.get_ase()
    silver_cell.symbols[:] = 'Ag'
    builder.training_set = TrainingSetData.from_ase([silver_cell], species=['Ag'])
    with pytest.raises(ValueError, match=r"training_set: species \['Ag'\] are not in the potential's species"):
        run_get_node(builder)


# ------------------------------------------------------------------------------- NEP committee

NEP_MODELS = ('gpumd/nep/pbte_train_master/nep.txt', 'gpumd/nep/pbte_train_legacy_v3.9.5/nep.txt')
NEP_PARAMETERS = {'temperatures': [300, 3000], 'seeds': [1], 'steps': 60, 'time_step': 2.0, 'grade_every': 5,
                  'select_threshold': 0.03, 'break_threshold': 0.06}


@pytest.fixture(scope='module')
def pbte(aiida_profile, fixtures_dir):
    from ase.build import bulk

    from aiida_mlcampaign.data.nep_potential import NepPotentialData

    committee = {f'member_{n}': NepPotentialData(fixtures_dir / path).store() for n, path in enumerate(NEP_MODELS)}
    start = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True)).store()
    return committee, start


def _nep_builder(code, pbte, parameters=None, **structures):
    from aiida_mlcampaign.calculations.explore import NepExploreCalculation

    committee, start = pbte
    builder = NepExploreCalculation.get_builder()
    builder.code = code
    builder.potentials = committee
    builder.structures = structures or {'rocksalt': start}
    builder.parameters = orm.Dict(parameters or NEP_PARAMETERS)
    return builder


def test_nep_explore_runs_with_the_committee(explore_code, pbte):
    pytest.importorskip('calorine')
    results, node = run_get_node(_nep_builder(explore_code, pbte))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    statistics = results['statistics'].get_dict()
    assert statistics['family'] == 'nep' and statistics['committee']['models'] == 2
    assert statistics['committee']['files'] == ['potential_0.txt', 'potential_1.txt']
    walkers = {w['temperature']: w for w in statistics['walkers']}
    assert walkers[300.0]['stop_reason'] == 'completed' and walkers[300.0]['candidates'] == 0
    assert walkers[3000.0]['stop_reason'] == 'break'

    candidates = results['candidates']
    assert candidates.species == ['Te', 'Pb'] and candidates.base.attributes.get('num_labelled') == 0
    assert candidates.num_frames == statistics['totals']['candidates'] > 0
    assert set(candidates.get_array('source_uuids')) == {node.uuid}
    grades = results['grades'].get_array('grades')
    assert len(grades) == candidates.num_frames and (grades >= 0.03).all() and grades[-1] >= 0.06
    names = set(node.base.repository.list_object_names())
    assert {'settings.json', 'potential_0.txt', 'potential_1.txt', 'starts.xyz'} <= names
    assert 'training.cfg' not in names


def test_nep_members_in_natural_order(fake_code, generate_calc_job, pbte):
    import json

    from aiida_mlcampaign.calculations.explore import NepExploreCalculation

    committee, start = pbte
    members = {'member_10': committee['member_0'], 'member_2': committee['member_1']}
    inputs = {'code': fake_code('explore'), 'potentials': members, 'structures': {'rocksalt': start},
              'parameters': orm.Dict(NEP_PARAMETERS)}
    calcinfo, folder, _ = generate_calc_job(NepExploreCalculation, inputs)
    assert (folder / 'potential_0.txt').read_bytes() == members['member_2'].get_content(mode='rb')
    assert (folder / 'potential_1.txt').read_bytes() == members['member_10'].get_content(mode='rb')
    settings = json.loads((folder / 'settings.json').read_text())
    assert settings['family'] == 'nep' and settings['potentials'] == ['potential_0.txt', 'potential_1.txt']
    assert settings['species'] == ['Te', 'Pb'] and 'engine' not in settings
    assert calcinfo.retrieve_list == ['explore.out', 'exit_status.txt', 'summary.json', 'candidates.xyz']


def test_nep_bad_inputs_are_refused(fake_code, pbte, fixtures_dir):
    from aiida_mlcampaign.calculations.explore import NepExploreCalculation
    from aiida_mlcampaign.data.nep_potential import NepPotentialData

    committee, start = pbte
    builder = NepExploreCalculation.get_builder()
    with pytest.raises(ValueError, match='potentials: a committee needs at least 2 NEPs'):
        builder.potentials = {'member_0': committee['member_0']}
    water = NepPotentialData(fixtures_dir / 'gpumd/nep/models/nep4_water_OH.txt')
    with pytest.raises(ValueError, match=r"potentials.water: species \['O', 'H'\] differ from potentials.member_0"):
        builder.potentials = {**committee, 'water': water}
    dipole = NepPotentialData(fixtures_dir / 'gpumd/nep/models/nep4_dipole_water.txt')
    with pytest.raises(ValueError, match='potentials.a_dipole: a dipole model predicts no forces'):
        builder.potentials = {**committee, 'a_dipole': dipole}
    with pytest.raises(ValueError, match="parameters.family: this calculation explores with family 'nep'"):
        builder.parameters = orm.Dict({**NEP_PARAMETERS, 'family': 'mtp'})
    with pytest.raises(ValueError, match="parameters.engine: only used with family 'mtp'"):
        builder.parameters = orm.Dict({**NEP_PARAMETERS, 'engine': 'cext'})
    with pytest.raises(ValueError, match=r'parameters.break_threshold: must be > select_threshold \(0.03\)'):
        builder.parameters = orm.Dict({**NEP_PARAMETERS, 'break_threshold': 0.01})

    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    def instantiate(builder):
        return instantiate_process(get_manager().get_runner(), NepExploreCalculation, **builder)

    copper = start.get_ase()
    copper[0].symbol = 'Cu'
    with pytest.raises(ValueError, match=r"structures.copper: elements \['Cu'\] are not in the potentials' species"):
        instantiate(_nep_builder(fake_code('explore'), pbte, rocksalt=start, copper=orm.StructureData(ase=copper)))
    slab = start.get_ase()
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match='structures.slab: nep_cpu treats every cell as periodic'):
        instantiate(_nep_builder(fake_code('explore'), pbte, slab=orm.StructureData(ase=slab)))
