"""``GpumdParser`` on recorded GPUMD outputs: every md fixture folder, and the stop / blow-up / error paths.

Fixture folders are ``tests/fixtures/gpumd/md/<folder>`` (provenance in ``md/SOURCES.md``, ``SOURCES-nep.md``). Their
``run.in`` gives the stages; the stdout, which the recordings do not include, is written here in GPUMD's words
(``Speed of this run``, ``Finished running GPUMD.``). Spot values are compared with the numbers in the files.
"""

import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import ParserFactory
from ase.build import bulk

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.gpumd_model import model_xyz
from aiida_mlcampaign.formats.gpumd_run import read_run_in
from tests.calculations.conftest import calcjob_computer, fake_code, generate_calc_job_node  # noqa: F401

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'
MD = FIXTURES / 'md'
NEP = FIXTURES / 'nep' / 'pbte_train_master' / 'nep.txt'
LEGACY = {'si_liquid_diffusion_msd_sdc_legacy_v3.x'}
TEMPORARY = {'restart.xyz', 'dump.xyz'}  # retrieved through the temporary list
FOLDERS = sorted(p.parent.name for p in MD.glob('*/run.in'))

GpumdParser = ParserFactory('mlcampaign.gpumd.md')


def stdout(runs: int, finished: bool = True) -> str:
    lines = ['*  GPUMD  *', 'version 5.6']
    for _ in range(runs):
        lines += ['Time used for this run = 1.5 second.', 'Speed of this run = 2e+06 atom*step/second.']
    if finished:
        lines += ['Finished executing the commands in run.in.', 'Time used = 3.000000 s.', 'Finished running GPUMD.']
    return '\n'.join(lines) + '\n'


def data_row(folder: str, name: str, index: int) -> np.ndarray:
    rows = [line for line in (MD / folder / name).read_text().splitlines() if line.strip() and not line.startswith('#')]
    return np.array([float(v) for v in rows[index].split()])


def pbte():
    return orm.StructureData(ase=bulk('PbTe', 'rocksalt', a=6.46, cubic=True))


@pytest.fixture(scope='module')
def common_inputs(fake_code):
    """Stored once per module: every parse shares the code, potential and structure (each store costs a commit)."""
    return {'code': fake_code('gpumd'), 'structure': pbte().store(), 'potential': NepPotentialData(NEP).store()}


@pytest.fixture(scope='module')
def parse(generate_calc_job_node, common_inputs, tmp_path_factory):
    """``parse(stages, files, temporary=None, legacy=False, exit_status=None, **inputs) -> (results, calcfunction)``."""

    def factory(stages, files, temporary=None, legacy=False, exit_status=None, **extra):
        inputs = {**common_inputs, 'stages': orm.List(stages), 'legacy': orm.Bool(legacy), **extra}
        node = generate_calc_job_node(GpumdCalculation, inputs, files)
        if exit_status is not None:
            node.set_exit_status(exit_status)  # what the scheduler's output parser sets before the parser runs
        folder = tmp_path_factory.mktemp('temporary')
        for name, content in (temporary or {}).items():
            (folder / name).write_bytes(content.read_bytes() if isinstance(content, pathlib.Path) else content.encode())
        return GpumdParser.parse_from_node(node, store_provenance=False, retrieved_temporary_folder=str(folder))

    return factory


@pytest.fixture(scope='module')
def parsed(parse):
    """Each recorded folder parsed once: ``parsed(folder) -> (results, calcfunction)``."""
    cache = {}

    def get(folder):
        if folder not in cache:
            stages, files, temporary = fixture_inputs(folder)
            cache[folder] = parse(stages, files, temporary, legacy=folder in LEGACY)
        return cache[folder]

    return get


def fixture_inputs(folder: str):
    stages = read_run_in((MD / folder / 'run.in').read_text(), legacy=folder in LEGACY)['stages']
    files, temporary = {'gpumd.out': stdout(sum('run' in s for s in stages))}, {}
    for path in (MD / folder).iterdir():
        if path.name in ('run.in', 'model.xyz'):
            continue
        (temporary if path.name in TEMPORARY else files)[path.name] = path
    return stages, files, temporary


#: folder -> (exit status, outputs besides speed/output_parameters)
EXPECTED = {
    'carbon_nep_dos_legacy_v3.x': (0, {'dos', 'mvac'}),
    'carbon_nep_hnemd_legacy_v3.x': (302, {'kappa'}),  # recorded shc.out cut after 200 of 399 correlation rows
    'carbon_nep_nvt_sdc_legacy_v3.x': (0, {'sdc'}),
    'carbon_nve_thermo_v5.6': (0, {'thermo'}),
    'graphene_dos_vac_v4.0': (0, {'thermo', 'dos', 'mvac'}),
    'graphene_emd_hac_v4.8': (0, {'thermo', 'hac'}),
    'graphene_hnemd_shc_legacy_v3.x': (0, {'thermo', 'kappa', 'shc'}),
    'graphene_hnemd_shc_v5.6': (0, {'thermo', 'kappa', 'shc'}),
    'llzo_npt_mttk_msd_all_groups_v4.x': (301, {'msd'}),  # run.in dumps thermo, the recording has no thermo.out
    'msd_groups_SiFCH_v4.2': (0, set()),  # the recording holds only run.in and model.xyz
    'pbte_nvt_lan_thermo_triclinic_v4.0': (0, {'thermo'}),
    'pbte_static_dump_xyz_master': (0, {'trajectory'}),
    'si_liquid_diffusion_msd_sdc_legacy_v3.x': (0, {'thermo', 'msd', 'sdc'}),
    'si_liquid_npt_nve_msd_sdc_rdf_v5.6': (302, {'msd', 'sdc', 'rdf', 'viscosity'}),  # restart.xyz cut short
}


def test_every_fixture_folder_has_expectations():
    assert set(FOLDERS) == set(EXPECTED) and len(FOLDERS) == 14


@pytest.mark.parametrize('folder', FOLDERS)
def test_fixture_folder_parses(parsed, folder):
    stages, _, _ = fixture_inputs(folder)
    results, calcfunction = parsed(folder)
    status, outputs = EXPECTED[folder]
    assert calcfunction.exit_status == status, calcfunction.exit_message
    assert set(results) == outputs | {'speed', 'output_parameters'}
    parameters = results['output_parameters'].get_dict()
    runs = [s['run'] for s in stages if 'run' in s]
    assert parameters['finished'] and parameters['runs_finished'] == len(runs) == parameters['runs_total']
    assert [d for d, s in zip(parameters['steps_done'], stages) if 'run' in s] == runs
    speed = results['speed'].get_dict()
    assert [r['steps'] for r in speed['runs']] == runs and speed['overall_speed_atom_step_per_s'] == 2e6
    for label in outputs - {'trajectory'}:
        node = results[label]
        assert set(node.base.attributes.get('units')) == set(node.get_arraynames())


def test_thermo_v56_steps_time_and_units(parsed):
    folder = 'carbon_nve_thermo_v5.6'
    results, _ = parsed(folder)
    thermo = results['thermo']
    units = thermo.base.attributes.get('units')
    assert units['temperature_K'] == 'K' and units['pressure_GPa'] == 'GPa' and units['cell_A'] == 'Å'
    assert units['time_fs'] == 'fs' and units['step'] == 'index'
    first = data_row(folder, 'thermo.out', 0)
    assert thermo.get_array('temperature_K')[0] == first[0] == 300.7024036
    assert thermo.get_array('potential_energy_eV')[0] == first[2]
    assert np.array_equal(thermo.get_array('step'), np.arange(10, 101, 10))
    assert np.array_equal(thermo.get_array('time_fs'), np.arange(10, 101, 10, dtype=float))
    assert thermo.base.attributes.get('headers')[0]['num_atoms'] == 64000


def test_thermo_legacy_layouts_and_time_step(parsed):
    results, _ = parsed('graphene_hnemd_shc_legacy_v3.x')
    thermo = results['thermo']
    assert thermo.base.attributes.get('num_columns') == 9 and 'shear_pressure_GPa' not in thermo.get_arraynames()
    assert results['output_parameters']['thermo_consistent'] is False  # 200 of the 1000 rows were recorded
    results, _ = parsed('si_liquid_diffusion_msd_sdc_legacy_v3.x')
    thermo = results['thermo']
    assert thermo.get_array('time_fs')[0] == 200.0  # dump_thermo 100 at time_step 2 fs
    assert thermo.get_array('stage')[100] == 1 and thermo.get_array('step')[100] == 10100
    assert results['msd'].get_array('msd_A2').shape == (200, 1, 3)
    triclinic = 'pbte_nvt_lan_thermo_triclinic_v4.0'
    results, _ = parsed(triclinic)
    cell = results['thermo'].get_array('cell_A')[0]
    assert np.array_equal(cell.reshape(9), data_row(triclinic, 'thermo.out', 0)[9:18]) and cell[0, 0] == 0.0


def test_correlation_outputs_spot_values(parsed):
    results, _ = parsed('carbon_nep_dos_legacy_v3.x')
    assert np.array_equal(results['mvac'].get_array('mvac')[0], [1.0, 1.0, 1.0])
    assert results['dos'].get_array('omega_THz')[0] == data_row('carbon_nep_dos_legacy_v3.x', 'dos.out', 0)[0]
    assert results['dos'].base.attributes.get('units')['dos_per_THz'] == '1/THz'

    results, _ = parsed('carbon_nep_nvt_sdc_legacy_v3.x')
    sdc = results['sdc']
    assert sdc.get_array('time_ps')[1] == 0.0005  # compute_sdc every step at time_step 0.5 fs
    assert np.array_equal(sdc.get_array('vac_A2_per_ps2')[0, 0], [20.7657, 20.7636, 20.7711])
    assert sdc.base.attributes.get('units')['sdc_A2_per_ps'] == 'Å²/ps'

    results, _ = parsed('graphene_emd_hac_v4.8')
    hac = results['hac']
    last = data_row('graphene_emd_hac_v4.8', 'hac.out', -1)
    assert hac.get_array('time_ps')[-1] == 9.9 and hac.get_array('kappa_x_in_W_per_mK')[-1] == last[6]
    assert hac.base.attributes.get('units')['kappa_x_in_W_per_mK'] == 'W/(m·K)'

    results, _ = parsed('graphene_hnemd_shc_legacy_v3.x')
    shc, kappa = results['shc'], results['kappa']
    assert shc.get_array('time_ps')[0] == -0.498 and shc.get_array('omega_THz')[-1] == 400.0
    assert kappa.get_array('time_ps')[0] == 1.0  # compute_hnemd every 1000 steps of 1 fs
    assert np.array_equal(kappa.get_array('kappa_block_W_per_mK')[0],
                          data_row('graphene_hnemd_shc_legacy_v3.x', 'kappa.out', 0))

    results, _ = parsed('llzo_npt_mttk_msd_all_groups_v4.x')
    assert results['msd'].get_array('msd_A2').shape == (200, 4, 3)
    assert results['msd'].base.attributes.get('num_groups') == 4


def test_si_liquid_rdf_viscosity_and_truncated_restart(parsed):
    results, calcfunction = parsed('si_liquid_npt_nve_msd_sdc_rdf_v5.6')
    message = calcfunction.exit_message
    assert 'restart.xyz' in message and 'file ends after 200 of 8000 atom lines' in message
    assert 'storage' not in message and 'restart' not in results
    rdf = results['rdf']
    assert rdf.base.attributes.get('pairs') == ['Si-Si'] and rdf.get_array('r_A')[-1] == 4.975
    viscosity = results['viscosity']
    assert viscosity.base.attributes.get('units')['viscosity_mPa_s'] == 'mPa·s'
    assert viscosity.get_array('sacf_eV2').shape == (100, 9)
    assert viscosity.base.attributes.get('components')[3] == 'xy'


def test_trajectory_is_stored_whole_with_frame_count(parsed):
    results, _ = parsed('pbte_static_dump_xyz_master')
    trajectory = results['trajectory']
    assert trajectory.base.attributes.get('num_frames') == 1 and trajectory.filename == 'dump.xyz'
    assert trajectory.get_content(mode='rb') == (MD / 'pbte_static_dump_xyz_master' / 'dump.xyz').read_bytes()


STAGES = [{'velocity': {'temperature': 300.0}, 'ensemble': {'name': 'nve'}, 'dump_thermo': 10, 'dump_restart': 20,
           'run': 100}]
THERMO = MD / 'carbon_nve_thermo_v5.6' / 'thermo.out'


def restart_file(velocities=True) -> str:
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=True)
    return model_xyz(atoms.get_chemical_symbols(), atoms.cell[:], atoms.positions, masses=atoms.get_masses(),
                     velocities=np.zeros((8, 3)) if velocities else None)


def partial_thermo(rows: int) -> str:
    lines = THERMO.read_text().splitlines()
    header = [line for line in lines if line.startswith('#')]
    data = [line for line in lines if not line.startswith('#')]
    return '\n'.join(header + data[:rows]) + '\n'


def test_walltime_attaches_partial_outputs_and_restart(parse):
    files = {'gpumd.out': stdout(0, finished=False), 'thermo.out': partial_thermo(5)}
    results, calcfunction = parse(STAGES, files, {'restart.xyz': restart_file()}, exit_status=120)
    assert calcfunction.exit_status == 120  # aiida-core's ERROR_SCHEDULER_OUT_OF_WALLTIME, passed on, not redefined
    assert results['thermo'].get_array('step').tolist() == [10, 20, 30, 40, 50]
    assert results['restart'].base.attributes.get('num_atoms') == 8
    assert results['restart'].base.attributes.get('species') == ['Pb', 'Te']
    restart = results['output_parameters']['restart']
    assert restart == {'stage': 0, 'step_in_stage': 40, 'step': 40, 'time_fs': 40.0, 'exact': True}


def test_killed_without_finish_line_is_400(parse):
    files = {'gpumd.out': stdout(0, finished=False), 'thermo.out': partial_thermo(3),
             'gpumd.err': 'CUDA Error:\n    File:       force.cu\n    Line:       12\n    Error text: device lost\n'}
    results, calcfunction = parse(STAGES, files, {'restart.xyz': restart_file()})
    assert calcfunction.exit_status == 400 and 'device lost' in calcfunction.exit_message
    assert results['output_parameters']['restart']['step_in_stage'] == 20
    assert results['output_parameters']['steps_done'] == [30]


def test_input_error_on_stderr_is_310(parse):
    files = {'gpumd.out': 'version 5.6\n',
             'gpumd.err': 'Input Error:\n    File:       run.cu\n    Line:       99\n    Error text: bad keyword\n'}
    _, calcfunction = parse(STAGES, files)
    assert calcfunction.exit_status == 310 and 'bad keyword' in calcfunction.exit_message


def test_missing_stdout_is_300(parse):
    _, calcfunction = parse(STAGES, {'thermo.out': THERMO})
    assert calcfunction.exit_status == 300


def test_nan_in_thermo_is_a_blowup(parse):
    lines = THERMO.read_text().splitlines()
    lines[-1] = ' '.join(['nan', 'nan', 'nan', *lines[-1].split()[3:]])
    results, calcfunction = parse(STAGES, {'gpumd.out': stdout(1), 'thermo.out': '\n'.join(lines) + '\n'})
    assert calcfunction.exit_status == 500
    assert 'temperature_K is not finite in thermo.out row 10 (step 100)' in calcfunction.exit_message
    assert 'thermo' in results


def test_hot_row_is_a_blowup_by_factor(parse):
    hot = [dict(STAGES[0], velocity={'temperature': 50.0})]  # recorded rows are at 300 K: 6 x the target
    _, calcfunction = parse(hot, {'gpumd.out': stdout(1), 'thermo.out': THERMO})
    assert calcfunction.exit_status == 500 and 'exceeds 5 x the target 50 K' in calcfunction.exit_message
    _, calcfunction = parse(hot, {'gpumd.out': stdout(1), 'thermo.out': THERMO},
                            blowup_temperature_factor=orm.Float(10.0))
    assert calcfunction.exit_status == 0


def test_thermo_with_rows_from_another_run_is_302(parse):
    short = [dict(STAGES[0], run=50)]
    _, calcfunction = parse(short, {'gpumd.out': stdout(1), 'thermo.out': THERMO})
    assert calcfunction.exit_status == 302 and 'output of another run appended' in calcfunction.exit_message


def test_half_written_last_row_is_dropped_and_garbage_hides_the_restart_step(parse):
    cut = partial_thermo(6)[:-150]  # killed while writing row 6
    results, calcfunction = parse(STAGES, {'gpumd.out': stdout(0, finished=False), 'thermo.out': cut},
                                  {'restart.xyz': restart_file()}, exit_status=120)
    assert calcfunction.exit_status == 120 and results['thermo'].get_array('step')[-1] == 50
    assert results['output_parameters']['restart']['step_in_stage'] == 40
    garbage = partial_thermo(3).replace('e+02', 'e+0x')
    results, _ = parse(STAGES, {'gpumd.out': stdout(0, finished=False), 'thermo.out': garbage},
                       {'restart.xyz': restart_file()})
    parameters = results['output_parameters'].get_dict()
    assert parameters['restart'] is None and 'restart' in results  # kept, but no continuation point is guessed
    assert any('step it holds is unknown' in p for p in parameters['problems'])


def test_several_dump_files_go_to_the_trajectories_namespace(parse):
    dump = MD / 'pbte_static_dump_xyz_master' / 'dump.xyz'
    stages = [{'ensemble': {'name': 'nve'}, 'dump_xyz': [{'interval': 1, 'file': 'all.xyz', 'force': True},
                                                         {'interval': 1, 'file': 'group-1.xyz', 'group': [0, 1]}],
               'run': 1}]
    truncated = ''.join(dump.read_text().splitlines(keepends=True)[:100])
    results, calcfunction = parse(stages, {'gpumd.out': stdout(1)}, {'all.xyz': dump, 'group-1.xyz': truncated},
                                  groups=orm.Dict({'0': [0, 1] * 4}))
    assert set(results['trajectories']) == {'all_xyz', 'group_1_xyz'} and 'trajectory' not in results
    assert results['trajectories']['all_xyz'].base.attributes.get('num_frames') == 1
    cut = results['trajectories']['group_1_xyz']
    assert cut.base.attributes.get('num_frames') == 0 and 'truncated' in cut.base.attributes.get('truncated')
    assert calcfunction.exit_status == 302 and 'group-1.xyz: 0 complete frames' in calcfunction.exit_message
