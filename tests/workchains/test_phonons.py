"""``mlcampaign.analysis.phonons``: the same displacements through NEP, MTP and (real pw.x) DFT, then compared."""

import copy
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlcampaign.calculations.analysis_vibrations import compare_dos, phonon_dos_from_forces
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.workchains.dft_common import last_calculation
from aiida_mlcampaign.workchains.phonons import PhononDosWorkChain
from tests.workchains.conftest import TEST_OPTIONS

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures'
NEP_PBTE = FIXTURES / 'gpumd' / 'nep' / 'pbte_train_master' / 'nep.txt'
MTP_CU = FIXTURES / 'mtp' / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
FAST = {'parameters': {'mesh': [8, 8, 8], 'frequency_pitch_THz': 0.02}}


@pytest.fixture(scope='module')
def nep(aiida_profile):
    return NepPotentialData(NEP_PBTE).store()


@pytest.fixture(scope='module')
def mtp(aiida_profile):
    return MtpPotentialData(MTP_CU, species=['Cu']).store()


@pytest.fixture(scope='module')
def copper(aiida_profile):
    return orm.StructureData(ase=bulk('Cu', 'fcc', a=3.61)).store()


@pytest.fixture(scope='module')
def mtp_run(copper, mtp):
    builder = PhononDosWorkChain.get_builder_from_protocol(copper, [2, 2, 2], engine='mtp', potential=mtp,
                                                           protocol='fast', overrides=FAST)
    return run_get_node(builder)


def test_entry_point():
    assert WorkflowFactory('mlcampaign.analysis.phonons') is PhononDosWorkChain


def test_nep_pbte_rock_salt(nep):
    """PbTe, 2-atom rock-salt primitive cell (a = 6.46 Å), 2x2x2 supercell, GPUMD's example NEP on the CPU."""
    structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46))
    builder = PhononDosWorkChain.get_builder_from_protocol(structure, [2, 2, 2], engine='nep', potential=nep,
                                                           protocol='fast', overrides=FAST)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    dos = results['dos']
    assert dos.base.attributes.get('species') == ['Pb', 'Te']
    assert dos.base.attributes.get('integral_per_species') == pytest.approx([3.0, 3.0], rel=0.03)
    gamma = np.sort(dos.get_array('gamma_frequencies_THz'))
    assert np.abs(gamma[:3]).max() < 1e-3  # acoustic
    assert 1.0 < gamma[3] < 4.0  # optical at Γ without LO-TO splitting (no Born charges): ~2.2 THz
    assert dos.base.attributes.get('min_frequency_THz') > -0.05  # stable rock salt
    assert results['forces'].get_array('forces').shape == (2, 16, 3)  # one displacement per species
    assert results['forces'].base.attributes.get('engine') == 'calorine CPUNEP'
    assert results['figure'].get_content(mode='rb').startswith(b'\x89PNG')
    labels = {link.link_label for link in node.base.links.get_outgoing(node_class=orm.CalcFunctionNode).all()}
    assert labels == {'generate_displacements', 'potential_forces', 'phonon_dos'}
    # The DOS was computed from the forces of the NEP run, which consumed the potential.
    forces_creator = results['forces'].creator
    assert forces_creator.base.links.get_incoming().get_node_by_label('potential').uuid == nep.uuid
    assert dos.creator.base.links.get_incoming().get_node_by_label('forces').uuid == results['forces'].uuid


def test_mtp_copper_matches_its_emt_reference(copper, mtp_run):
    """The MTP was fitted to EMT: its phonon DOS must overlap the EMT one almost perfectly."""
    results, node = mtp_run
    assert node.is_finished_ok, node.exit_message
    assert results['forces'].base.attributes.get('engine') == 'motep'
    emt = []
    for key in sorted(results['forces'].base.attributes.get('keys')):
        supercell = node.base.links.get_outgoing(node_class=orm.CalcFunctionNode).get_node_by_label(
            'generate_displacements').outputs[key].get_ase()
        supercell.calc = EMT()
        emt.append(supercell.get_forces())
    forces = orm.ArrayData()
    forces.set_array('forces', np.array(emt))
    reference = phonon_dos_from_forces(copper, results['displacement_dataset'], forces,
                                       orm.Dict(FAST['parameters']))['dos']
    comparison = compare_dos(emt=reference, mtp=results['dos'])
    overlap = comparison['overlap'].get_array('overlap')
    assert comparison['overlap'].base.attributes.get('labels') == ['emt', 'mtp']
    print(f'Cu 2x2x2 phonon DOS overlap, MTP vs its EMT training reference: {overlap[0, 1]:.3f}')
    assert overlap[0, 1] > 0.9
    assert comparison['figure'].get_content(mode='rb').startswith(b'\x89PNG')


@pytest.mark.parametrize('port, value, message', [
    ('engine', ('Str', 'lammps'), r"engine: expected one of \['dft', 'nep', 'mtp'\]"),
    ('supercell_matrix', ('List', [2, 2, 0]), 'supercell_matrix: determinant must be >= 1'),
    ('displacement_amplitude', ('Float', 0.0), r'displacement_amplitude: must be in \(0, 0.2\]'),
    ('parameters', ('Dict', {'mesh': 'dense'}), 'parameters.mesh: three positive integers'),
])
def test_bad_values_are_refused_by_the_ports(copper, mtp, port, value, message):
    builder = PhononDosWorkChain.get_builder_from_protocol(copper, [2, 2, 2], engine='mtp', potential=mtp)
    with pytest.raises(ValueError, match=message):
        setattr(builder, port, getattr(orm, value[0])(value[1]))


@pytest.mark.parametrize('change, message', [
    ({'engine': 'nep'}, "potential: engine 'nep' needs a NepPotentialData, got MtpPotentialData"),
    ({'engine': 'dft'}, "potential: not used with engine 'dft'"),
    ({'structure': 'NaCl'}, r"potential: has no parameters for \['Cl', 'Na'\]"),
])
def test_inconsistent_inputs_are_refused_before_anything_runs(copper, mtp, change, message):
    builder = PhononDosWorkChain.get_builder_from_protocol(copper, [2, 2, 2], engine='mtp', potential=mtp)
    for key, value in change.items():
        if key == 'structure':
            setattr(builder, key, orm.StructureData(ase=bulk(value, 'rocksalt', a=5.64)))
        else:
            setattr(builder, key, orm.Str(value))
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


#: pw.x settings for the DFT test: 30/240 Ry gives the displaced-atom force of the 45/360 Ry run to 1 %
#: (20/160 Ry, the labelling tests' cutoffs, gives a force of the wrong sign for this pseudopotential);
#: 0.6 Å^-1 is a 3x3x3 mesh for the 4-atom cubic supercell (that force within 4 % of the 4x4x4 one, half the time).
#: The 4-atom supercell gives a nearly flat band (5.33 THz) whose delta-like peak the tetrahedron method loses
#: (∫ = 2.88 instead of 3): Gaussian smearing keeps the weight.
DFT_OVERRIDES = {'dft': {'kpoints_distance': 0.6,
                         'pw': {'parameters': {'SYSTEM': {'ecutwfc': 30.0, 'ecutrho': 240.0}}}},
                 'parameters': {'mesh': [8, 8, 8], 'frequency_pitch_THz': 0.01, 'sigma_THz': 0.05}}
CUBIC = [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]  # fcc primitive -> 4-atom conventional cube


@pytest.mark.pw
def test_dft_copper_with_real_pw(pw_code, pseudo_family, copper, mtp):
    """Cu fcc primitive cell in its 4-atom cubic supercell: one displacement, one pw.x run; then DFT vs MTP."""
    builder = PhononDosWorkChain.get_builder_from_protocol(
        copper, CUBIC, engine='dft', code=pw_code, protocol='fast', overrides=copy.deepcopy(DFT_OVERRIDES),
        options=TEST_OPTIONS, pseudo_family=pseudo_family.label,
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    pw_runs = node.base.links.get_outgoing(node_class=orm.WorkChainNode).all()
    assert [link.link_label for link in pw_runs] == ['pw_supercell_0000']
    assert results['forces'].base.attributes.get('engine') == 'pw.x'
    assert results['forces'].get_array('forces').shape == (1, 4, 3)
    assert last_calculation(pw_runs[0].node).inputs.kpoints.get_kpoints_mesh()[0] == [3, 3, 3]
    dos = results['dos']
    assert np.abs(dos.get_array('gamma_frequencies_THz')).max() < 1e-3
    assert dos.base.attributes.get('integral_per_species') == pytest.approx([3.0], rel=0.03)
    assert 5.0 < dos.base.attributes.get('max_frequency_THz') < 10.0  # Cu: 7.3 THz measured

    mtp_builder = PhononDosWorkChain.get_builder_from_protocol(copper, CUBIC, engine='mtp', potential=mtp,
                                                               protocol='fast', overrides=DFT_OVERRIDES)
    mtp_dos = run_get_node(mtp_builder)[0]['dos']
    comparison, compare_node = compare_dos.run_get_node(dft=dos, mtp=mtp_dos)
    assert comparison['overlap'].base.attributes.get('labels') == ['dft', 'mtp']
    overlap = comparison['overlap'].get_array('overlap')[0, 1]
    print(f'DFT (PBE, 30 Ry) vs MTP (fitted to EMT) phonon DOS overlap: {overlap:.3f}')
    assert 0.0 < overlap <= 1.0
    assert compare_node.outputs.figure.get_content(mode='rb').startswith(b'\x89PNG')
