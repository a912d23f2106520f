"""MdCpuCalculation with the real ``mlcampaign-md`` driver, its outputs fed to the analyses that take GPUMD's.

Potentials as in tests/test_md_production.py: the level-08 Cu MTP (32-atom fcc cell) and the PbTe NEP (8 atoms).
The parser's early-stop and blow-up paths are checked on files the driver wrote in-process.
"""

import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_mlcampaign import md_production as md
from aiida_mlcampaign.calculations.analysis_models import compare_speed
from aiida_mlcampaign.calculations.analysis_structure import compute_msd, compute_rdf
from aiida_mlcampaign.calculations.analysis_vibrations import compute_vdos
from aiida_mlcampaign.calculations.md_cpu import MdCpuCalculation
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.parsers.md_cpu import MdCpuParser
from tests.helpers import local_codes

MTP = 'mtp/cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
NEP = 'gpumd/nep/pbte_train_master/nep.txt'
PARAMETERS = {'temperature': 600.0, 'steps': 200, 'time_step': 2.0, 'thermo_every': 10, 'dump_every': 10,
              'restart_every': 100, 'seed': 3}
#: The array names of GpumdCalculation's thermo output for a GPUMD >= 4.0 thermo.out (18 columns).
GPUMD_THERMO_ARRAYS = {'temperature_K', 'kinetic_energy_eV', 'potential_energy_eV', 'pressure_GPa',
                       'shear_pressure_GPa', 'cell_A', 'block_starts', 'stage', 'step_in_stage', 'step', 'time_fs'}


@pytest.fixture(scope='module')
def md_code(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'mlcampaign-md')['mlcampaign-md']


@pytest.fixture(scope='module')
def copper(aiida_profile, fixtures_dir):
    potential = MtpPotentialData(fixtures_dir / MTP, species=['Cu']).store()
    structure = orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)).store()
    return potential, structure


def _builder(code, potential, structure, parameters=None, restart=None):
    builder = MdCpuCalculation.get_builder()
    builder.code = code
    builder.potential = potential
    builder.structure = structure
    builder.parameters = orm.Dict(parameters or PARAMETERS)
    if restart is not None:
        builder.restart = restart
    return builder


@pytest.fixture(scope='module')
def copper_run(md_code, copper):
    return run_get_node(_builder(md_code, *copper))


def test_mtp_md_mirrors_gpumd_outputs(copper_run):
    results, node = copper_run
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    thermo = results['thermo']
    assert set(thermo.get_arraynames()) == GPUMD_THERMO_ARRAYS
    units = thermo.base.attributes.get('units')
    assert units['temperature_K'] == 'K' and units['pressure_GPa'] == 'GPa' and units['step'] == 'index'
    assert thermo.base.attributes.get('num_columns') == 18
    assert list(thermo.get_array('step')[:2]) == [10, 20] and thermo.get_array('time_fs')[-1] == 400.0
    assert len(thermo.get_array('temperature_K')) == 20

    assert results['trajectory'].filename == 'dump.xyz'
    assert results['trajectory'].base.attributes.get('num_frames') == 20
    assert results['restart'].base.attributes.get('step') == 200
    assert results['restart'].base.attributes.get('time_fs') == 400.0

    speed = results['speed'].get_dict()
    assert speed['atom_steps_per_second'] > 0 and speed['natoms'] == 32 and speed['steps'] == 200
    assert speed['family'] == 'mtp' and speed['hardware'] and speed['seconds'] > 0
    parameters = results['output_parameters'].get_dict()
    assert parameters['finished'] and parameters['step_offset'] == 0 and parameters['problems'] == []
    assert {'settings.json', 'model.xyz'} <= set(node.base.repository.list_object_names())
    settings = json.loads(node.base.repository.get_object_content('settings.json'))
    assert (settings['family'], settings['species'], settings['potential']) == ('mtp', ['Cu'], 'potential.mtp')


def test_outputs_feed_the_analyses(copper_run):
    results, _ = copper_run
    trajectory = results['trajectory']
    rdf = compute_rdf(trajectory=trajectory, r_max=orm.Float(3.5), bins=orm.Int(35))['rdf']
    assert rdf.base.attributes.get('num_frames') == 20 and rdf.base.attributes.get('pairs') == ['Cu-Cu']
    g = rdf.get_array('g_total')
    assert g[np.argmin(abs(rdf.get_array('r_A') - 2.55))] > 2  # the fcc first shell
    msd = compute_msd(trajectory=trajectory, time_step_fs=orm.Float(20.0), blocks=orm.Int(0))['msd']
    assert msd.base.attributes.get('num_frames') == 20 and msd.base.attributes.get('species') == ['Cu']
    assert np.isfinite(msd.get_array('msd_A2')).all()
    dos = compute_vdos(trajectory=trajectory, parameters=orm.Dict({'max_lag': 8}))['dos']
    assert dos.base.attributes.get('velocity_source') == 'velocities'  # the dump's vel column, Å/fs
    assert np.isfinite(dos.get_array('dos_per_THz')).all()
    table = compare_speed(mtp=results['speed'])['table'].get_dict()
    assert table['models'] == ['mtp'] and table['atom_steps_per_s']['mtp'] > 0


def test_restart_continues(md_code, copper, copper_run):
    results, _ = copper_run
    more, node = run_get_node(_builder(md_code, *copper, {**PARAMETERS, 'steps': 300}, restart=results['restart']))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    parameters = more['output_parameters'].get_dict()
    assert (parameters['step_offset'], parameters['time_offset_fs'], parameters['steps_done']) == (200, 400.0, 300)
    assert len(more['thermo'].get_array('step')) == 10
    assert more['restart'].base.attributes.get('step') == 300
    with more['trajectory'].open(mode='r') as handle:
        assert 'Time=420.0 step=210 ' in handle.read()

    builder = _builder(md_code, *copper, {**PARAMETERS, 'steps': 300}, restart=more['restart'])
    with pytest.raises(ValueError, match=r'parameters.steps: the restart is at step 300, nothing is left'):
        run_get_node(builder)


def test_nep_md(md_code, aiida_profile, fixtures_dir):
    potential = NepPotentialData(fixtures_dir / NEP).store()
    structure = orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))
    parameters = {'temperature': 300.0, 'steps': 100, 'time_step': 2.0, 'thermo_every': 10, 'dump_every': 10}
    results, node = run_get_node(_builder(md_code, potential, structure, parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert set(results['thermo'].get_arraynames()) == GPUMD_THERMO_ARRAYS
    assert results['speed']['family'] == 'nep' and results['trajectory'].base.attributes.get('num_frames') == 10
    settings = json.loads(node.base.repository.get_object_content('settings.json'))
    assert (settings['family'], settings['species'], settings['potential']) == ('nep', ['Te', 'Pb'], 'nep.txt')
    assert 'engine' not in settings
    with pytest.raises(ValueError, match=r"parameters.engine: only used with family 'mtp'"):
        run_get_node(_builder(md_code, potential, structure, {**parameters, 'engine': 'cext'}))


def test_bad_inputs_are_refused(md_code, copper):
    potential, structure = copper
    builder = MdCpuCalculation.get_builder()
    with pytest.raises(ValueError, match=r'parameters.time_step: must be > 0'):
        builder.parameters = orm.Dict({**PARAMETERS, 'time_step': -1.0})
    with pytest.raises(ValueError, match=r'parameters.nsteps: unknown key'):
        builder.parameters = orm.Dict({**PARAMETERS, 'nsteps': 10})
    with pytest.raises(ValueError, match=r'parameters.temperature: required'):
        builder.parameters = orm.Dict({'steps': 10, 'time_step': 1.0})
    with pytest.raises(ValueError, match='potential: the potential has no coefficients'):
        builder.potential = MtpPotentialData.from_template(8, ['Cu'], min_dist=2.0, max_dist=5.0)
    slab = bulk('Cu', 'fcc', a=3.6, cubic=True)
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match=r'structure: must be periodic in all three directions'):
        builder.structure = orm.StructureData(ase=slab)

    silver = structure.get_ase()
    silver[0].symbol = 'Ag'
    with pytest.raises(ValueError, match=r"structure: elements \['Ag'\] are not in the potential's species"):
        run_get_node(_builder(md_code, potential, orm.StructureData(ase=silver)))
    start = orm.SinglefileData.from_string('2\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3\n'
                                           'Cu 0 0 0\nCu 1.5 1.5 0\n', filename='model.xyz')
    with pytest.raises(ValueError, match=r'restart: the comment line has no step='):
        run_get_node(_builder(md_code, potential, structure, restart=start))


# ----------------------------------------------------------------------------------- parser paths


def _parse(generate_calc_job_node, copper, folder, drop=(), cut_thermo=False, exit_status=None,
           stdout='mlcampaign-md: family mtp\n'):
    potential, structure = copper
    files = {name: folder / name for name in (md.THERMO_FILENAME, md.DUMP_FILENAME, md.RESTART_FILENAME,
                                              md.SUMMARY_FILENAME)
             if (folder / name).exists() and name not in drop}
    if cut_thermo:
        files[md.THERMO_FILENAME] = (folder / md.THERMO_FILENAME).read_text()[:-40]
    if stdout is not None:
        files['md.out'] = stdout
    files['exit_status.txt'] = '0\n' if exit_status is None else f'{exit_status}\n'
    inputs = {'potential': potential, 'structure': structure, 'parameters': orm.Dict(PARAMETERS)}
    node = generate_calc_job_node(MdCpuCalculation, inputs, files)
    results, calcfunction = MdCpuParser.parse_from_node(node, store_provenance=False)
    return results, calcfunction.exit_status, calcfunction.exit_message


@pytest.fixture(scope='module')
def killed_run(tmp_path_factory, fixtures_dir):
    """A run stopped by SIGTERM (a walltime) after step 155, with its restart.xyz of that step."""
    from aiida_mlcampaign.formats.gpumd_model import write_model_xyz

    folder = tmp_path_factory.mktemp('killed')
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)
    write_model_xyz(folder / 'model.xyz', atoms.get_chemical_symbols(), atoms.cell, atoms.positions)
    calls = []
    md.run_md(PARAMETERS, fixtures_dir / MTP, 'mtp', ['Cu'], folder / 'model.xyz', folder,
              should_stop=lambda: calls.append(1) or len(calls) >= 155)
    return folder


def test_a_run_stopped_early_gives_400_and_its_restart(generate_calc_job_node, copper, killed_run):
    results, status, message = _parse(generate_calc_job_node, copper, killed_run, exit_status=143)
    assert status == MdCpuCalculation.exit_codes.ERROR_NOT_FINISHED.status, message
    assert 'restart.xyz at step 155' in message and results['restart'].base.attributes.get('step') == 155

    killed = _parse(generate_calc_job_node, copper, killed_run, drop=(md.SUMMARY_FILENAME,), cut_thermo=True,
                    exit_status='')
    results, status, message = killed
    assert status == MdCpuCalculation.exit_codes.ERROR_NOT_FINISHED.status, message
    assert len(results['thermo'].get_array('temperature_K')) == 14  # the cut row is dropped
    assert 'last line incomplete' in ' '.join(results['output_parameters']['problems'])
    assert results['restart'].base.attributes.get('step') == 155


def test_parser_exit_codes(generate_calc_job_node, copper, copper_run, killed_run, tmp_path):
    _, status, _ = _parse(generate_calc_job_node, copper, killed_run, stdout=None)
    assert status == MdCpuCalculation.exit_codes.ERROR_MISSING_STDOUT.status
    _, status, message = _parse(generate_calc_job_node, copper, killed_run,
                                stdout=f'{md.ERROR_MARKER}: ValueError: start: bad\n')
    assert status == MdCpuCalculation.exit_codes.ERROR_INPUT_REFUSED.status and 'start: bad' in message
    _, status, message = _parse(generate_calc_job_node, copper, killed_run, drop=(md.SUMMARY_FILENAME,),
                                exit_status=139)
    assert status == MdCpuCalculation.exit_codes.ERROR_NONZERO_EXIT_STATUS.status and '139' in message

    # a hot row in thermo.out is a blow-up even without the driver's verdict
    hot = tmp_path / 'hot'
    hot.mkdir()
    text = (killed_run / md.THERMO_FILENAME).read_text().splitlines()
    row = text[-2].split()
    row[0] = '4000.0'
    (hot / md.THERMO_FILENAME).write_text('\n'.join(text[:-2] + [' '.join(row)]) + '\n')
    _, status, message = _parse(generate_calc_job_node, copper, hot)
    assert status == MdCpuCalculation.exit_codes.ERROR_BLOWUP.status
    assert 'exceeds 5 x the target 600 K' in message
