"""``mlcampaign.dft.label``: input refusal before submission, failure tolerance, settings record (real pw.x)."""

import copy

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain
from tests.helpers import outputs_without_creator
from tests.workchains.conftest import TEST_OPTIONS, TEST_OVERRIDES, cu2s2

pytestmark = pytest.mark.pw


def builder_for(pw_code, pseudo_family, structures, **overrides):
    merged = copy.deepcopy(TEST_OVERRIDES)
    merged.update(overrides)
    return DftLabelWorkChain.get_builder_from_protocol(
        pw_code, structures, protocol='fast', overrides=merged, options=TEST_OPTIONS,
        pseudo_family=pseudo_family.label,
    )


def launch_refused(builder, match):
    """The process must be refused at validation: no PwCalculation and no work chain node is created."""
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=match):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_missing_pseudopotential_is_refused(pw_code, pseudo_family):
    good = orm.StructureData(ase=cu2s2())
    builder = builder_for(pw_code, pseudo_family, {'good': good})
    atoms = cu2s2()
    atoms[0].symbol = 'Na'
    builder.structures = {'good': good, 'sodium': orm.StructureData(ase=atoms)}
    launch_refused(builder, r"structures\.sodium: no pseudopotential for \['Na'\]")


def test_close_atoms_are_refused(pw_code, pseudo_family):
    builder = builder_for(pw_code, pseudo_family, [orm.StructureData(ase=cu2s2())])
    builder.structures = {'close': orm.StructureData(ase=cu2s2(shift=[0.3, 0, 0]))}
    launch_refused(builder, r'structures\.close: atoms 0 and 1 are 0\.30 Å apart \(< 0\.5 Å\)')


def test_empty_structures_are_refused(pw_code, pseudo_family):
    with pytest.raises(ValueError, match='structures: at least one structure'):
        builder_for(pw_code, pseudo_family, [])
    builder = builder_for(pw_code, pseudo_family, [orm.StructureData(ase=cu2s2())])
    with pytest.raises(ValueError, match='structures: at least one structure'):
        builder.structures = {}


def test_unknown_family_is_refused(pw_code, pseudo_family):
    builder = builder_for(pw_code, pseudo_family, [orm.StructureData(ase=cu2s2())])
    builder.pseudo_family = orm.Str('no-such-family')
    launch_refused(builder, "pseudo_family: no family labelled 'no-such-family'")


def test_conflicting_fraction_is_refused(pw_code, pseudo_family):
    builder = builder_for(pw_code, pseudo_family, [orm.StructureData(ase=cu2s2())])
    with pytest.raises(ValueError, match=r'max_failed_fraction: must be in \[0, 1\]'):
        builder.max_failed_fraction = orm.Float(1.5)


def test_unknown_element_cannot_even_be_stored():
    atoms = cu2s2()
    with pytest.raises(ValueError):
        orm.StructureData(ase=atoms).append_atom(position=(0, 0, 0), symbols='Xy')


def test_low_cutoffs_warn(pw_code, pseudo_family):
    with pytest.warns(UserWarning, match=r'ecutwfc = 20\.0 Ry is below the lowest recommendation'):
        builder_for(pw_code, pseudo_family, [orm.StructureData(ase=cu2s2())])


def test_builder_uses_union_of_elements_for_cutoffs(pw_code, pseudo_family):
    """Without overrides the cutoffs are the family's maximum over all structures' elements, not the first's."""
    copper = orm.StructureData(ase=cu2s2()[:2])
    phosphorus = cu2s2()
    for atom in phosphorus:
        atom.symbol = 'P'
    builder = DftLabelWorkChain.get_builder_from_protocol(
        pw_code, [orm.StructureData(ase=phosphorus), copper], protocol='balanced', options=TEST_OPTIONS,
        pseudo_family=pseudo_family.label,
    )
    system = builder.dft.pw.parameters['SYSTEM']
    assert (system['ecutwfc'], system['ecutrho']) == pseudo_family.get_recommended_cutoffs(
        elements=('Cu', 'P'), stringency='normal', unit='Ry')
    assert (system['ecutwfc'], system['ecutrho']) == (45.0, 360.0)


def test_failed_frames_are_tolerated_and_reported(pw_code, pseudo_family):
    """Real pw.x failure: with nbnd = 20 for all frames, Cu4 (44 electrons, 22 occupied bands) is refused
    by pw.x, while the Cu2S2 cells (34 electrons) run; 1 failure of 3 is within max_failed_fraction 0.4.
    """
    copper = cu2s2()
    copper.set_chemical_symbols(['Cu'] * 4)
    structures = {
        'rattled_a': orm.StructureData(ase=cu2s2(0.03, seed=1)),
        'too_many_electrons': orm.StructureData(ase=copper),
        'rattled_b': orm.StructureData(ase=cu2s2(0.03, seed=2)),
    }
    builder = builder_for(pw_code, pseudo_family, structures)
    parameters = builder.dft.pw.parameters.get_dict()
    parameters['SYSTEM']['nbnd'] = 20
    builder.dft.pw.parameters = orm.Dict(parameters)
    builder.dft.max_iterations = orm.Int(1)
    builder.max_failed_fraction = orm.Float(0.4)
    builder.max_concurrent = orm.Int(2)
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_status
    assert results['failed_structures'].get_list() == ['too_many_electrons']
    assert outputs_without_creator(node) == []  # every output made by a calcfunction (calculations/records.py)
    training_set = results['training_set']
    assert training_set.num_frames == 2
    assert set(training_set.get_array('origins')) == {'dft-label'}
    # Frames carry the calculation that made them and its exact forces.
    for frame, uuid in zip(training_set.iter_frames(), training_set.get_array('source_uuids'), strict=True):
        calculation = orm.load_node(str(uuid))
        assert calculation.process_type.endswith('quantumespresso.pw') and calculation.is_finished_ok
        np.testing.assert_array_equal(frame.forces, calculation.outputs.output_trajectory.get_array('forces')[-1])
        # QE's stress (GPa, compression positive) becomes ASE's (eV/Å^3, tension positive).
        qe_stress = calculation.outputs.output_trajectory.get_array('stress')[-1]
        np.testing.assert_allclose(frame.stress, -qe_stress / 160.21766208)
    settings = results['dft_settings'].get_dict()
    assert settings['ecutwfc'] == 20.0 and settings['ecutrho'] == 160.0
    assert settings['pseudo_family'] == pseudo_family.label
    assert set(settings['pseudo_md5']) == {'Cu', 'S'}

    # The same failure above the allowed fraction fails the work chain but keeps the finished frame.
    del structures['rattled_b']
    builder.structures = structures
    builder.max_failed_fraction = orm.Float(0.0)
    results, node = run_get_node(builder)
    assert node.exit_status == DftLabelWorkChain.exit_codes.ERROR_TOO_MANY_FAILURES.status
    assert results['training_set'].num_frames == 1
