"""Calcfunctions ``mlcampaign.analysis.vdos`` / ``phonon_dos`` / ``dos_compare``: outputs, figures, provenance."""

import io
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import CalculationFactory
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_mlcampaign.calculations.analysis_vibrations import (
    compare_dos, compute_vdos, generate_displacements, phonon_dos_from_forces,
)
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import Frame

GPUMD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'


def assert_png_output(node, name):
    figure = node.outputs.figure
    assert figure.filename == name
    content = figure.get_content(mode='rb')
    assert content.startswith(b'\x89PNG') and len(content) > 2000


def incoming_labels(node):
    return {link.link_label for link in node.base.links.get_incoming().all()}


def oscillator(n_frames=400, dt_fs=2.0, frequencies=(6.0, 10.0), seed=0):
    """Positions, velocities (Å/fs) and times of a Cu + S pair of 3D oscillators."""
    rng = np.random.default_rng(seed)
    omega = 2 * np.pi * np.array(frequencies)[:, None] / 1000.0
    phase = rng.uniform(0, 2 * np.pi, (2, 3))
    times = np.arange(n_frames) * dt_fs
    centres = np.array([[0.01, 3.0, 3.0], [3.0, 3.0, 5.99]])
    for time in times:
        yield time, centres + 0.03 * np.sin(omega * time + phase), 0.03 * omega * np.cos(omega * time + phase)


def gpumd_dump(path, **kwargs):
    """A dump.xyz as GPUMD's ``dump_xyz ... velocity`` writes it (Time in fs, vel in Å/fs, wrapped positions)."""
    with open(path, 'w') as handle:
        for time, positions, velocities in oscillator(**kwargs):
            handle.write('2\n')
            handle.write(f'Time={time:.8f} pbc="T T T" Lattice="6 0 0 0 6 0 0 0 6" '
                         'Properties=species:S:1:pos:R:3:vel:R:3\n')
            for symbol, r, v in zip(('Cu', 'S'), np.mod(positions, 6.0), velocities, strict=True):
                handle.write(f'{symbol} {r[0]:.8f} {r[1]:.8f} {r[2]:.8f} {v[0]:.10f} {v[1]:.10f} {v[2]:.10f}\n')
    return path


def peak(dos, index):
    return dos.get_array('frequency_THz')[np.argmax(dos.get_array('partial_dos_per_THz')[index])]


def test_entry_points_load():
    assert CalculationFactory('mlcampaign.analysis.vdos') is compute_vdos
    assert CalculationFactory('mlcampaign.analysis.phonon_dos') is phonon_dos_from_forces
    assert CalculationFactory('mlcampaign.analysis.dos_compare') is compare_dos


def test_vdos_from_gpumd_mvac_file_and_array(aiida_profile):
    mvac_file = orm.SinglefileData(GPUMD / 'graphene_dos_vac_v4.0' / 'mvac.out')
    result, node = compute_vdos.run_get_node(mvac_file, orm.Dict({'num_atoms': 8640}))
    assert node.is_finished_ok
    dos = result['dos']
    assert dos.base.attributes.get('source') == 'gpumd_mvac'
    assert dos.base.attributes.get('integral_per_species') == pytest.approx([3 * 8640], rel=1e-9)
    assert dos.base.attributes.get('nyquist_THz') == pytest.approx(100.0)
    assert 'THz' in dos.base.attributes.get('units')['frequency_THz']
    assert_png_output(node, 'vdos.png')
    assert incoming_labels(node) == {'trajectory', 'parameters'}
    assert {link.link_label for link in node.base.links.get_outgoing().all()} == {'dos', 'figure'}

    # As the gpumd parser stores it (arrays of read_mvac), from a file holding two appended runs.
    from aiida_mlcampaign.formats.gpumd import read_mvac

    text = (GPUMD / 'graphene_dos_vac_v4.0' / 'mvac.out').read_text()
    table = read_mvac(io.StringIO(text + text))
    array = orm.ArrayData()
    for name in ('time_ps', 'mvac', 'block_starts'):
        array.set_array(name, table[name])
    again = compute_vdos(array, orm.Dict({'num_atoms': 8640, 'block': 1}))['dos']
    assert np.allclose(again.get_array('dos_per_THz'), dos.get_array('dos_per_THz'))
    with pytest.raises(ValueError, match=r'parameters.block: 2 out of range, the table has 2 block\(s\)'):
        compute_vdos(array, orm.Dict({'block': 2}))


def test_vdos_from_gpumd_dump_with_velocities(aiida_profile, tmp_path):
    dump = orm.SinglefileData(gpumd_dump(tmp_path / 'dump.xyz'))
    result, node = compute_vdos.run_get_node(dump, orm.Dict({'max_lag': 200, 'frequency_max_THz': 20.0,
                                                              'num_frequencies': 2001}))
    dos = result['dos']
    assert dos.base.attributes.get('velocity_source') == 'velocities'
    assert dos.base.attributes.get('timestep_fs') == pytest.approx(2.0)
    assert dos.base.attributes.get('species') == ['Cu', 'S']
    assert peak(dos, 0) == pytest.approx(6.0, abs=0.03) and peak(dos, 1) == pytest.approx(10.0, abs=0.03)
    assert dos.get_array('vacf').shape == (200, 2, 3)
    assert_png_output(node, 'vdos.png')


def test_vdos_from_training_set_uses_finite_differences(aiida_profile):
    frames = [Frame(symbols=['Cu', 'S'], cell=np.eye(3) * 6.0, positions=np.mod(r, 6.0))
              for _, r, _ in oscillator()]
    training_set = TrainingSetData.from_frames(frames).store()
    result, node = compute_vdos.run_get_node(training_set, orm.Dict({'timestep_fs': 2.0, 'max_lag': 200,
                                                                      'frequency_max_THz': 20.0,
                                                                      'num_frequencies': 2001}))
    dos = result['dos']
    assert dos.base.attributes.get('velocity_source') == 'finite_difference'
    assert dos.base.attributes.get('num_frames') == 400
    assert dos.base.attributes.get('num_velocity_frames') == 399
    assert peak(dos, 0) == pytest.approx(6.0, abs=0.03) and peak(dos, 1) == pytest.approx(10.0, abs=0.03)
    query = orm.QueryBuilder().append(TrainingSetData, filters={'id': training_set.pk}, tag='set')
    query.append(orm.CalcFunctionNode, with_incoming='set', tag='calc', project='id')
    query.append(orm.ArrayData, with_incoming='calc', edge_filters={'label': 'dos'}, project='id')
    assert query.all() == [[node.pk, dos.pk]]


@pytest.mark.parametrize('parameters, message', [
    ({'window': 'blackman'}, 'parameters.window: expected one of'),
    ({'max_lag': 1}, 'parameters.max_lag: at least 2 lags'),
    ({'timestep_fs': -1.0}, 'parameters.timestep_fs: must be positive'),
    ({'velocity': 'x'}, r"parameters: unknown key\(s\) \['velocity'\]"),
])
def test_bad_vdos_parameters_are_refused_before_running(aiida_profile, parameters, message):
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        compute_vdos(orm.SinglefileData(GPUMD / 'graphene_dos_vac_v4.0' / 'mvac.out'), orm.Dict(parameters))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_vdos_needs_a_time_step_for_a_training_set(aiida_profile):
    frames = [Frame(symbols=['Cu'], cell=np.eye(3) * 5, positions=[[0.1 * i, 0, 0]]) for i in range(4)]
    with pytest.raises(ValueError, match='timestep_fs: the frames carry no time'):
        compute_vdos(TrainingSetData.from_frames(frames))


@pytest.fixture(scope='module')
def copper_dos(aiida_profile):
    structure = orm.StructureData(ase=bulk('Cu', 'fcc', a=3.61))
    outputs = generate_displacements(structure, orm.List([2, 2, 2]), orm.Float(0.01))
    arrays = []
    for key in sorted(k for k in outputs if k.startswith('supercell_')):
        atoms = outputs[key].get_ase()
        atoms.calc = EMT()
        arrays.append(atoms.get_forces())
    forces = orm.ArrayData()
    forces.set_array('forces', np.array(arrays))
    result, node = phonon_dos_from_forces.run_get_node(structure, outputs['displacement_dataset'], forces,
                                orm.Dict({'mesh': [8, 8, 8]}))
    return structure, outputs, forces, result, node


def test_phonon_dos_from_emt_forces(copper_dos):
    structure, outputs, forces, result, node = copper_dos
    assert set(outputs) == {'displacement_dataset', 'reference_supercell', 'supercell_0000'}
    assert len(outputs['supercell_0000'].sites) == 8
    assert node.is_finished_ok
    dos = result['dos']
    assert dos.base.attributes.get('integral_per_species') == pytest.approx([3.0], rel=0.01)
    assert np.abs(dos.get_array('gamma_frequencies_THz')).max() < 1e-3
    assert dos.base.attributes.get('mesh') == [8, 8, 8]
    assert_png_output(node, 'phonon_dos.png')
    assert incoming_labels(node) == {'structure', 'displacement_dataset', 'forces', 'parameters'}
    # The displaced supercell was made by the displacement calcfunction from this structure.
    creator = outputs['supercell_0000'].creator
    assert creator.base.links.get_incoming().get_node_by_label('structure').uuid == structure.uuid


def test_phonon_dos_refuses_a_forces_array_without_forces(copper_dos):
    structure, outputs, _, _, _ = copper_dos
    empty = orm.ArrayData()
    empty.set_array('energies', np.zeros(1))
    with pytest.raises(ValueError, match='forces: the ArrayData needs an array "forces"'):
        phonon_dos_from_forces(structure, outputs['displacement_dataset'], empty)
    _, _, forces, _, _ = copper_dos
    with pytest.raises(ValueError, match='parameters.mesh: three positive integers'):
        phonon_dos_from_forces(structure, outputs['displacement_dataset'], forces, orm.Dict({'mesh': [0, 1, 1]}))


def test_compare_harmonic_dos_with_vdos_and_gpumd(copper_dos, aiida_profile):
    _, _, _, result, _ = copper_dos
    stretched = orm.ArrayData()
    stretched.set_array('frequency_THz', result['dos'].get_array('frequency_THz') * 1.1)
    stretched.set_array('dos_per_THz', result['dos'].get_array('dos_per_THz'))
    gpumd = orm.ArrayData()  # GPUMD dos.out layout: angular omega and three columns
    from aiida_mlcampaign.formats.gpumd import read_dos

    table = read_dos(GPUMD / 'graphene_dos_vac_v4.0' / 'dos.out')
    gpumd.set_array('omega_THz', table['omega_THz'])
    gpumd.set_array('dos_per_THz', table['dos_per_THz'])
    outputs, node = compare_dos.run_get_node(dft=result['dos'], stretched=stretched, graphene=gpumd)
    overlap = outputs['overlap']
    labels = overlap.base.attributes.get('labels')
    assert labels == ['dft', 'graphene', 'stretched']
    matrix = overlap.get_array('overlap')
    assert np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    assert 0.5 < matrix[0, 2] < 0.95  # 10 % softer/harder shifts weight but keeps most overlap
    assert matrix[0, 1] < matrix[0, 2]  # graphene (up to 50 THz) is unlike copper
    mean = overlap.get_array('mean_frequency_THz')
    assert mean[2] == pytest.approx(1.1 * mean[0], rel=0.02)
    assert_png_output(node, 'dos_comparison.png')
    assert incoming_labels(node) == {'dft', 'stretched', 'graphene'}


def test_compare_dos_needs_two(copper_dos, aiida_profile):
    _, _, _, result, _ = copper_dos
    with pytest.raises(ValueError, match='dos: give at least two DOS'):
        compare_dos(dft=result['dos'])
    bad = orm.ArrayData()
    bad.set_array('x', np.zeros(2))
    with pytest.raises(ValueError, match='dos.bad: needs arrays frequency_THz and dos_per_THz'):
        compare_dos(dft=result['dos'], bad=bad)


def test_vdos_from_ase_trajectory_file(aiida_profile, tmp_path):
    """A non-XYZ ASE file (ASE .traj with momenta) streams through ase.io.iread."""
    from ase import Atoms, units
    from ase.io.trajectory import Trajectory

    path = tmp_path / 'md.traj'
    with Trajectory(str(path), 'w') as trajectory:
        for time, positions, velocities in oscillator(n_frames=300):
            atoms = Atoms('CuS', positions=positions, cell=[6, 6, 6], pbc=True)
            atoms.set_velocities(velocities / units.fs)
            atoms.info['time_fs'] = time
            trajectory.write(atoms)
    node = orm.SinglefileData(io.BytesIO(path.read_bytes()), filename='md.traj')
    dos = compute_vdos(node, orm.Dict({'max_lag': 150, 'timestep_fs': 2.0, 'frequency_max_THz': 20.0,
                                       'num_frequencies': 2001}))['dos']
    assert dos.base.attributes.get('trajectory_type') == 'SinglefileData (ase)'
    assert dos.base.attributes.get('velocity_source') == 'velocities'
    assert peak(dos, 0) == pytest.approx(6.0, abs=0.05)
