"""MtpExploreCalculation with the real ``mlcampaign-explore`` driver (console script of this package)."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_mlcampaign.calculations.explore import MtpExploreCalculation

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from tests.helpers import require_executable

POTENTIAL = 'mtp/cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
TRAIN_CFG = 'mtp/cu_emt_train_40cfg_made-here.cfg'
PARAMETERS = {'temperatures': [300, 3000], 'seeds': [1, 2], 'steps': 200, 'time_step': 2.0, 'grade_every': 10}


@pytest.fixture(scope='module')
def explore_code(aiida_profile, tmp_path_factory):
    require_executable('mlcampaign-explore')
    from aiida_mlcampaign.setup import profile as profile_setup

    computer = profile_setup.ensure_localhost(workdir=str(tmp_path_factory.mktemp('scratch')), mpiprocs=1)
    codes = profile_setup.discover_codes(computer, {'mlcampaign-explore': ('mlcampaign.mtp.explore', False)})
    return codes['mlcampaign-explore']


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
