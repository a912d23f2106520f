"""``mlcampaign.dft.aimd`` with real pw.x: a 3-step BOMD in two segments, and input refusal."""

import copy

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.workchains.dft_aimd import DftAimdWorkChain
from aiida_mlcampaign.workchains.dft_common import last_calculation
from tests.helpers import outputs_without_creator
from tests.workchains.conftest import TEST_OPTIONS, TEST_OVERRIDES, cu2s2

pytestmark = pytest.mark.pw


def aimd_builder(pw_code, pseudo_family, **overrides):
    merged = copy.deepcopy(TEST_OVERRIDES)
    merged.update(overrides)
    return DftAimdWorkChain.get_builder_from_protocol(
        pw_code, orm.StructureData(ase=cu2s2(0.02, seed=5)), temperature=600.0, steps=3, protocol='fast',
        overrides=merged, options=TEST_OPTIONS, pseudo_family=pseudo_family.label,
    )


def test_three_step_nve_in_two_segments(pw_code, pseudo_family):
    builder = aimd_builder(pw_code, pseudo_family, segment_steps=2, thermostat='initial', equilibration_steps=1,
                           every=1)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    assert outputs_without_creator(node) == []

    segments = [n for n in node.called if n.process_label == 'PwBaseWorkChain']
    assert len(segments) == 2
    assert last_calculation(segments[1]).inputs.parameters['IONS']['ion_velocities'] == 'from_input'

    thermo = results['thermo']
    temperatures = thermo.get_array('temperature')
    assert len(temperatures) == 3 and temperatures[0] == pytest.approx(600.0)
    # Velocities carried across the segment boundary: the conserved energy stays put (NVE).
    conserved = thermo.get_array('conserved_energy')
    assert np.ptp(conserved) / 4 < 2e-3, conserved

    training_set = results['training_set']
    assert training_set.num_frames == 2  # step 0 dropped as equilibration
    np.testing.assert_allclose(training_set.get_array('temperatures'), temperatures[1:])
    first_segment = last_calculation(segments[0])
    trajectory = first_segment.outputs.output_trajectory
    frame = training_set.get_frame(0)
    np.testing.assert_array_equal(frame.positions, trajectory.get_array('positions')[1])
    np.testing.assert_array_equal(frame.forces, trajectory.get_array('forces')[1])
    assert frame.energy == trajectory.get_array('energy')[1]
    assert training_set.get_array('source_uuids')[0] == first_segment.uuid
    assert results['dft_settings']['thermostat'] == 'initial'
    assert 'final_structure' in results


def test_thermostat_segments_restart_velocities(pw_code, pseudo_family):
    builder = aimd_builder(pw_code, pseudo_family, segment_steps=1, thermostat='berendsen', equilibration_steps=0,
                           every=2)
    builder.steps = orm.Int(2)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calcs = [last_calculation(n) for n in node.called if n.process_label == 'PwBaseWorkChain']
    assert [c.inputs.parameters['IONS']['ion_temperature'] for c in calcs] == ['berendsen', 'berendsen']
    assert results['training_set'].num_frames == 1  # steps 0 and 1, every 2nd kept


@pytest.mark.parametrize('field, value, match', [
    ('temperature', -10.0, 'temperature: must be positive'),
    ('temperature', 0.0, 'temperature: must be positive'),
    ('steps', 0, 'steps: must be positive'),
    ('time_step', -1.0, 'time_step: must be positive'),
    ('thermostat', 'nose', "thermostat: 'nose' is not one of"),
])
def test_bad_md_settings_are_refused(pw_code, pseudo_family, field, value, match):
    builder = aimd_builder(pw_code, pseudo_family)
    node_type = {float: orm.Float, int: orm.Int, str: orm.Str}[type(value)]
    with pytest.raises(ValueError, match=match):
        setattr(builder, field, node_type(value))


def test_equilibration_longer_than_run_is_refused(pw_code, pseudo_family):
    builder = aimd_builder(pw_code, pseudo_family, equilibration_steps=3)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match='equilibration_steps: 3 drops every one of the 3 steps'):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


@pytest.mark.parametrize('lengths, equilibration, every, expected', [
    ([3], 1, 1, {'000': 1}),
    ([2, 1], 1, 1, {'000': 1, '001': 0}),
    ([5, 5, 5], 3, 4, {'000': 3, '001': 2, '002': 1}),  # global steps 3, 7, 11 in segments 0-4, 5-9, 10-14
    ([4, 4], 0, 3, {'000': 0, '001': 2}),          # global 0, 3, 6 -> seg0 skip 0 (0, 3); seg1 6-4=2
    ([2, 2], 5, 1, {}),                            # everything is equilibration
])
def test_segment_skips_follow_the_global_grid(lengths, equilibration, every, expected):
    from aiida_mlcampaign.workchains.dft_aimd import segment_skips

    assert segment_skips(lengths, equilibration, every) == expected


def test_analysis_of_a_real_aimd_training_set_is_linked_to_its_pw_calculations(pw_code, pseudo_family):
    """Issue acceptance: analysis nodes and figures from an AIMD TrainingSetData, linked in the graph."""
    from aiida_mlcampaign.calculations.analysis_structure import compute_msd, compute_rdf

    builder = DftAimdWorkChain.get_builder_from_protocol(
        pw_code, orm.StructureData(ase=cu2s2(0.02, seed=5)), temperature=600.0, steps=6, protocol='fast',
        overrides={**copy.deepcopy(TEST_OVERRIDES), 'equilibration_steps': 0, 'every': 1}, options=TEST_OPTIONS,
        pseudo_family=pseudo_family.label,
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    frames = results['training_set']
    assert frames.num_frames >= 6

    rdf = compute_rdf(frames, r_max=orm.Float(2.0), bins=orm.Int(40))
    msd = compute_msd(frames, time_step_fs=orm.Float(results['dft_settings']['time_step_fs']), blocks=orm.Int(2))
    for outputs in (rdf, msd):
        figure = outputs['figure']
        with figure.open(mode='rb') as handle:
            assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
    # From each figure back to the pw.x runs that produced the frames, by a graph walk.
    for figure in (rdf['figure'], msd['figure']):
        query = orm.QueryBuilder()
        query.append(orm.SinglefileData, filters={'id': figure.pk}, tag='figure')
        query.append(orm.CalcFunctionNode, with_outgoing='figure', tag='analysis')
        query.append(orm.Data, with_outgoing='analysis', filters={'id': frames.pk}, tag='frames')
        query.append(orm.CalcFunctionNode, with_outgoing='frames', tag='assembly')
        query.append(orm.Data, with_outgoing='assembly', tag='trajectory')
        query.append(orm.CalcJobNode, with_outgoing='trajectory', project='id')
        pw_jobs = {pk for pk, in query.all()}
        assert pw_jobs and all(orm.load_node(pk).process_type.endswith('quantumespresso.pw') for pk in pw_jobs)
