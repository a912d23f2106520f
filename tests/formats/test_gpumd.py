"""Tests of the GPUMD output readers on recorded files (provenance in tests/fixtures/gpumd/md/SOURCES.md).

Expected numbers are literals read from the fixture files by eye, not values produced by the reader.
Three fixture folders of the shared collection have no provenance entry in the shared SOURCES.md
and are therefore not copied into the repository; their tests read them from the shared folder and
are skipped where it is absent.
"""

import inspect
import io
import pathlib
import re

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError, Frame
from aiida_mlcampaign.formats.gpumd import (
    frame_from_dump,
    iter_dump_xyz,
    read_dos,
    read_gpumd_stdout,
    read_hac,
    read_kappa,
    read_msd,
    read_mvac,
    read_rdf,
    read_restart_xyz,
    read_sdc,
    read_shc,
    read_thermo,
)

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
SHARED_MD = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'fixtures' / 'gpumd' / 'md'

CARBON_NVE = MD / 'carbon_nve_thermo_v5.6'
CARBON_DOS = MD / 'carbon_nep_dos_legacy_v3.x'
CARBON_SDC = MD / 'carbon_nep_nvt_sdc_legacy_v3.x'
GRAPHENE_DOS = MD / 'graphene_dos_vac_v4.0'
GRAPHENE_HAC = MD / 'graphene_emd_hac_v4.8'
GRAPHENE_SHC_LEGACY = MD / 'graphene_hnemd_shc_legacy_v3.x'
GRAPHENE_SHC = MD / 'graphene_hnemd_shc_v5.6'
SIFCH = MD / 'msd_groups_SiFCH_v4.2'
PBTE_DUMP = MD / 'pbte_static_dump_xyz_master'
SI_LEGACY = MD / 'si_liquid_diffusion_msd_sdc_legacy_v3.x'
SI_V56 = MD / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6'


def shared(folder: str, name: str) -> pathlib.Path:
    """A fixture whose folder has no row in the shared SOURCES.md: the copy in tests/fixtures, else the shared one."""
    for path in (MD / folder / name, SHARED_MD / folder / name):
        if path.exists():
            return path
    pytest.skip(f'{folder}/{name} not available (neither copied nor in the shared fixtures)')


def concatenated(tmp_path, *paths, name='appended.out') -> pathlib.Path:
    """What GPUMD's append mode makes of several runs (or a resubmitted job) in one directory."""
    target = tmp_path / name
    target.write_text(''.join(pathlib.Path(p).read_text() for p in paths))
    return target


# ---------------------------------------------------------------------------------------- thermo


def test_thermo_v56_header_18_columns_units():
    data = read_thermo(CARBON_NVE / 'thermo.out')
    assert data['num_columns'] == 18
    assert data['temperature_K'].shape == (10,)
    assert data['temperature_K'][0] == pytest.approx(3.0070240360e+02)
    assert data['kinetic_energy_eV'][0] == pytest.approx(2.4876055226e+03)
    assert data['potential_energy_eV'][0] == pytest.approx(-1.6374740716e+05)
    np.testing.assert_allclose(
        data['pressure_GPa'][0], [-4.9612130821e-01, -1.6908572092e-01, 3.6100943460e-03]
    )
    np.testing.assert_allclose(
        data['shear_pressure_GPa'][0], [2.7864679406e-03, -2.6559876103e-01, 9.9660954876e-02]
    )
    np.testing.assert_allclose(data['cell_A'][0], np.diag([75.2, 75.2, 75.2]))
    assert data['temperature_K'][-1] == pytest.approx(3.0053798195e+02)
    header = data['headers'][0]
    assert header['command'] == 'dump_thermo 10'
    assert header['num_atoms'] == 64000
    assert header['format_version'] == 1
    assert header['dt_output'] == (10.0, 'fs')
    assert header['columns'][:3] == ['T', 'KE', 'PE']
    np.testing.assert_array_equal(data['block_starts'], [0])
    np.testing.assert_allclose(data['time_in_block_fs'], np.arange(10, 101, 10))


def test_thermo_v56_graphene_slab_cell():
    data = read_thermo(GRAPHENE_HAC / 'thermo.out')
    assert len(data['temperature_K']) == 100
    assert data['temperature_K'][-1] == pytest.approx(3.0085054613e+02)
    np.testing.assert_allclose(data['cell_A'][-1], np.diag([1.4759989617e+02, 1.5342703668e+02, 3.35]))
    assert data['headers'][0]['num_atoms'] == 8640

    shc_run = read_thermo(GRAPHENE_SHC / 'thermo.out')
    assert shc_run['temperature_K'][0] == pytest.approx(1.6963070053e+02)
    np.testing.assert_allclose(shc_run['cell_A'][0], np.diag([245.951, 430.26, 3.35]))


def test_thermo_legacy_9_columns_no_shear():
    data = read_thermo(GRAPHENE_SHC_LEGACY / 'thermo.out')
    assert data['num_columns'] == 9
    assert len(data['temperature_K']) == 200
    assert data['temperature_K'][0] == pytest.approx(1.9502921838e+02)
    assert data['potential_energy_eV'][0] == pytest.approx(-1.9084048086e+05)
    np.testing.assert_allclose(
        data['pressure_GPa'][0], [1.2650219231e-01, 2.9652129948e-01, 1.5602593403e-01]
    )
    assert 'shear_pressure_GPa' not in data
    np.testing.assert_allclose(data['cell_A'][0], np.diag([245.951, 255.6, 3.35]))
    assert data['temperature_K'][-1] == pytest.approx(2.9924203166e+02)
    assert 'time_in_block_fs' not in data  # no header, no time column
    assert data['headers'] == [{}]


def test_thermo_legacy_12_columns_orthogonal_with_shear():
    data = read_thermo(SI_LEGACY / 'thermo.out')
    assert data['num_columns'] == 12
    assert data['temperature_K'][0] == pytest.approx(1.5629848524e+03)
    np.testing.assert_allclose(
        data['shear_pressure_GPa'][0], [-8.6295265265e-02, -2.3580795651e-02, -5.5761212937e-04]
    )
    np.testing.assert_allclose(data['cell_A'][0], np.eye(3) * 5.4391468158e+01)


def test_thermo_v4_triclinic_18_columns_headerless():
    data = read_thermo(shared('pbte_nvt_lan_thermo_triclinic_v4.0', 'thermo.out'))
    assert data['num_columns'] == 18
    assert len(data['temperature_K']) == 200
    a = 1.6425982650e+01
    np.testing.assert_allclose(data['cell_A'][0], [[0, a, a], [a, 0, a], [a, a, 0]])
    assert data['temperature_K'][0] == pytest.approx(3.2901675025e+02)
    assert data['temperature_K'][-1] == pytest.approx(2.7740962832e+02)
    np.testing.assert_allclose(
        data['shear_pressure_GPa'][0], [-3.4999634436e-02, -1.0998127630e-02, 2.4265131671e-02]
    )


def test_thermo_15_columns_triclinic_without_shear(tmp_path):
    # <= v3.3 triclinic layout: T K U Pxx Pyy Pzz ax ay az bx by bz cx cy cz
    row = '300 10 -900 1.5 1.6 1.7 0 8 8 8 0 8 8 8 0\n'
    path = tmp_path / 'thermo.out'
    path.write_text(row * 3)
    data = read_thermo(path)
    assert data['num_columns'] == 15
    assert 'shear_pressure_GPa' not in data
    np.testing.assert_allclose(data['pressure_GPa'][1], [1.5, 1.6, 1.7])
    np.testing.assert_allclose(data['cell_A'][2], [[0, 8, 8], [8, 0, 8], [8, 8, 0]])


def test_thermo_appended_runs_give_block_boundaries(tmp_path):
    runs = [CARBON_NVE / 'thermo.out', GRAPHENE_SHC / 'thermo.out', CARBON_NVE / 'thermo.out']
    path = concatenated(tmp_path, *runs)
    data = read_thermo(path)
    assert len(data['temperature_K']) == 30
    np.testing.assert_array_equal(data['block_starts'], [0, 10, 20])
    assert [h['num_atoms'] for h in data['headers']] == [64000, 40400, 64000]
    assert data['temperature_K'][10] == pytest.approx(1.6963070053e+02)  # first row of run 2
    assert data['temperature_K'][20] == pytest.approx(3.0070240360e+02)  # first row of run 3
    # time restarts in every block and follows that block's dt_output (10 fs, then 100 fs)
    assert data['time_in_block_fs'][[0, 9, 10, 19, 20]].tolist() == [10.0, 100.0, 100.0, 1000.0, 10.0]


def test_thermo_header_of_an_empty_run_is_its_own_block(tmp_path):
    text = (CARBON_NVE / 'thermo.out').read_text()
    header = ''.join(line for line in text.splitlines(keepends=True) if line.startswith('#'))
    path = tmp_path / 'thermo.out'
    path.write_text(header + text)  # a run that died after writing its header, then a full run
    data = read_thermo(path)
    np.testing.assert_array_equal(data['block_starts'], [0, 0])
    assert len(data['temperature_K']) == 10


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('300 10 -900 1 2 3 10 10 10\n300 10 -900 1 2 3 10 10\n', r'line 2: .*expected 9 columns .*got 8'),
        ('300 10 -900 1 2 3 10 10 10\n300 10 -900 1 2 abc 10 10 10\n', r"line 2: .*non-numeric value 'abc'"),
        ('300 10 -900 1 2 3 10 10 10 11\n', r'line 1: .*expected 9, 12, 15 or 18 columns, got 10'),
        ('# columns T KE PE\n300 10 -900 1 2 3 10 10 10\n', r'line 2: .*names 3 columns, data rows have 9'),
        ('# num_atoms many\n', r'line 1: header num_atoms'),
        ('', r'thermo\.out row: no data rows'),
    ],
)
def test_thermo_malformed(tmp_path, text, message):
    path = tmp_path / 'thermo.out'
    path.write_text(text)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ': ' + message):
        read_thermo(path)


def test_thermo_reads_an_open_handle_and_names_it():
    with pytest.raises(FormatError, match=r'^<stream>: line 1'):
        read_thermo(io.StringIO('1 2 3\n'))


# ------------------------------------------------------------------------------------ msd / sdc


def test_msd_v56_header_units():
    data = read_msd(SI_V56 / 'msd.out')
    assert data['num_groups'] == 1
    assert data['msd_A2'].shape == (100, 1, 3)
    assert data['time_ps'][1] == pytest.approx(0.004)
    assert data['time_ps'][-1] == pytest.approx(0.396)
    np.testing.assert_allclose(data['msd_A2'][1, 0], [0.00106434, 0.00106511, 0.0010663])
    np.testing.assert_allclose(data['msd_A2'][-1, 0], [2.35289, 2.34422, 2.34664])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][-1, 0], [3.70457, 3.70168, 3.70765])
    header = data['headers'][0]
    assert header['command'] == 'compute_msd 2 100'
    assert header['num_atoms_per_group'] == [8000]
    assert header['dt_output'] == (0.004, 'ps')
    np.testing.assert_allclose(header['cell_A'], np.eye(3) * 5.4655008458e+01)


def test_msd_legacy_headerless():
    data = read_msd(SI_LEGACY / 'msd.out')
    assert data['msd_A2'].shape == (200, 1, 3)
    assert data['time_ps'][-1] == pytest.approx(0.398)
    np.testing.assert_allclose(data['msd_A2'][-1, 0], [1.74349, 1.74209, 1.74243])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][1, 0], [0.0533032, 0.0533479, 0.0533097])
    assert data['headers'] == [{}]


def test_msd_all_groups_per_group_columns():
    data = read_msd(shared('llzo_npt_mttk_msd_all_groups_v4.x', 'msd.out'))
    assert data['num_groups'] == 4
    assert data['msd_A2'].shape == (200, 4, 3)
    assert data['time_ps'][1] == pytest.approx(0.1)  # sample_interval 100 x 1 fs
    np.testing.assert_allclose(data['msd_A2'][1, 0], [0.129999, 0.130014, 0.130041])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][1, 0], [0.649996, 0.650069, 0.650204])
    np.testing.assert_allclose(data['msd_A2'][1, 1], [0.0385959, 0.0386158, 0.0385994])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][1, 1], [0.19298, 0.193079, 0.192997])
    assert data['time_ps'][-1] == pytest.approx(19.9)
    np.testing.assert_allclose(data['msd_A2'][-1, 3], [0.0637872, 0.0642161, 0.0639721])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][-1, 3], [0.000489581, 0.000390747, 0.000490498])


def test_msd_appended_headerless_runs_split_at_time_reset(tmp_path):
    data = read_msd(concatenated(tmp_path, SI_LEGACY / 'msd.out', SI_LEGACY / 'msd.out'))
    np.testing.assert_array_equal(data['block_starts'], [0, 200])
    assert data['time_ps'][200] == 0.0


def test_msd_appended_header_runs(tmp_path):
    data = read_msd(concatenated(tmp_path, SI_V56 / 'msd.out', SI_V56 / 'msd.out'))
    np.testing.assert_array_equal(data['block_starts'], [0, 100])
    assert len(data['headers']) == 2


def test_msd_malformed(tmp_path):
    path = tmp_path / 'msd.out'
    path.write_text('0 0 0 0 0 0 0 0\n')
    with pytest.raises(FormatError, match=r'msd\.out: line 1: .*1 \+ 6\*n_groups columns .*got 8'):
        read_msd(path)
    path.write_text('# num_groups 2\n0 0 0 0 0 0 0\n')
    with pytest.raises(FormatError, match=r'line 1: header num_groups 2 but rows have 7 columns'):
        read_msd(path)
    path.write_text('0 0 0 0 0 0 0\n0.1 1 1 1 x 1 1\n')
    with pytest.raises(FormatError, match=r"line 2: .*non-numeric value 'x'"):
        read_msd(path)


def test_sdc_v56_and_legacy():
    data = read_sdc(SI_V56 / 'sdc.out')
    assert data['vac_A2_per_ps2'].shape == (100, 1, 3)
    np.testing.assert_allclose(data['vac_A2_per_ps2'][0, 0], [66.5235, 66.5681, 66.6455])
    np.testing.assert_allclose(data['vac_A2_per_ps2'][-1, 0], [1.18348, 1.25092, 1.32634])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][-1, 0], [3.71797, 3.67241, 3.70158])
    assert data['headers'][0]['command'] == 'compute_sdc 2 100'

    legacy = read_sdc(SI_LEGACY / 'sdc.out')
    assert legacy['time_ps'][-1] == pytest.approx(0.398)
    np.testing.assert_allclose(legacy['vac_A2_per_ps2'][-1, 0], [0.722026, 0.748184, 0.754432])
    np.testing.assert_allclose(legacy['sdc_A2_per_ps'][-1, 0], [2.68585, 2.68359, 2.68906])


def test_sdc_carbon_half_fs_time_step():
    data = read_sdc(CARBON_SDC / 'sdc.out')
    assert len(data['time_ps']) == 200
    assert data['time_ps'][1] == pytest.approx(0.0005)  # time_step 0.5 fs, sample_interval 1
    np.testing.assert_allclose(data['vac_A2_per_ps2'][0, 0], [20.7657, 20.7636, 20.7711])
    np.testing.assert_allclose(data['sdc_A2_per_ps'][-1, 0], [0.000218706, -4.10076e-05, 0.000271113])
    np.testing.assert_array_equal(data['block_starts'], [0])


# ------------------------------------------------------------------------------------------- rdf


def test_rdf_v5_labels():
    data = read_rdf(SI_V56 / 'rdf.out')
    assert data['pairs'] == ['Si-Si']
    assert data['r_A'].shape == (100,)
    assert data['r_A'][0] == pytest.approx(0.025)
    assert data['r_A'][-1] == pytest.approx(4.975)
    assert data['g_total'][48] == pytest.approx(2.01392)  # file line 50
    assert data['g_partial'][48, 0] == pytest.approx(2.01392)
    assert data['g_total'][-1] == pytest.approx(0.94341)
    assert data['headers'][0]['radius'] == ['total', 'Si-Si']


def test_rdf_appended_and_older_labels(tmp_path):
    data = read_rdf(concatenated(tmp_path, SI_V56 / 'rdf.out', SI_V56 / 'rdf.out'))
    np.testing.assert_array_equal(data['block_starts'], [0, 100])

    path = tmp_path / 'rdf_v49.out'
    path.write_text('#radius total type_0_0 type_0_1 type_1_1\n0.05 0 0 0 0\n0.15 1.5 1 2 3\n')
    data = read_rdf(path)
    assert data['pairs'] == ['type_0_0', 'type_0_1', 'type_1_1']
    np.testing.assert_allclose(data['g_partial'][1], [1, 2, 3])

    path.write_text('#radius total\n0.05 0\n0.15 1.5\n')
    assert read_rdf(path)['g_partial'].shape == (2, 0)

    path.write_text('#radius total Si-Si\n0.05 0\n')
    with pytest.raises(FormatError, match=r'line 1: rdf\.out label line names 3 columns, data rows have 2'):
        read_rdf(path)


# ------------------------------------------------------------------------------------ dos / mvac


def test_dos_legacy_and_v4():
    carbon = read_dos(CARBON_DOS / 'dos.out')
    assert carbon['omega_THz'][0] == pytest.approx(2.0)  # omega_max/num_points = 400/200, not 0
    assert carbon['omega_THz'][-1] == pytest.approx(400.0)
    np.testing.assert_allclose(carbon['dos_per_THz'][0], [0.905635, 0.892951, 0.889448])
    np.testing.assert_allclose(carbon['dos_per_THz'][-1], [4.35896, 4.33935, 4.37422])

    graphene = read_dos(GRAPHENE_DOS / 'dos.out')
    np.testing.assert_allclose(graphene['dos_per_THz'][0], [0.315546, 0.576297, 147.473])
    np.testing.assert_allclose(graphene['dos_per_THz'][-1], [0.986563, 0.978231, 0.0295337])


def test_dos_group_blocks_split_where_omega_restarts(tmp_path):
    data = read_dos(concatenated(tmp_path, CARBON_DOS / 'dos.out', GRAPHENE_DOS / 'dos.out'))
    np.testing.assert_array_equal(data['block_starts'], [0, 200])
    np.testing.assert_allclose(data['dos_per_THz'][200], [0.315546, 0.576297, 147.473])


def test_mvac_normalised():
    carbon = read_mvac(CARBON_DOS / 'mvac.out')
    np.testing.assert_allclose(carbon['mvac'][0], [1, 1, 1])
    assert carbon['time_ps'][0] == 0.0
    assert carbon['time_ps'][-1] == pytest.approx(0.995)
    np.testing.assert_allclose(carbon['mvac'][-1], [-0.000955717, -0.000544103, -0.000357782])

    graphene = read_mvac(GRAPHENE_DOS / 'mvac.out')
    np.testing.assert_allclose(graphene['mvac'][1], [0.373231, 0.369303, 0.754873])
    np.testing.assert_allclose(graphene['mvac'][-1], [-0.0107996, -0.0150995, 0.00357829])


def test_dos_wrong_column_count(tmp_path):
    path = tmp_path / 'dos.out'
    path.write_text('2 1 1 1\n4 1 1\n')
    with pytest.raises(FormatError, match=r'dos\.out: line 2: .*expected 4 columns'):
        read_dos(path)


# ---------------------------------------------------------------------------------- hac / kappa


def test_hac_green_kubo():
    data = read_hac(GRAPHENE_HAC / 'hac.out')
    assert data['time_ps'].shape == (50,)
    assert data['time_ps'][:2].tolist() == pytest.approx([0.1, 0.3])  # window centres
    assert data['time_ps'][-1] == pytest.approx(9.9)
    assert data['hac_x_in_eV3_per_amu'][0] == pytest.approx(2.708641283361666e+00)
    assert data['kappa_x_in_W_per_mK'][-1] == pytest.approx(1.408427023167455e+02)
    assert data['kappa_x_out_W_per_mK'][-1] == pytest.approx(1.180488727439425e+02)
    assert data['kappa_y_in_W_per_mK'][-1] == pytest.approx(5.990626008110964e+02)
    assert data['kappa_y_out_W_per_mK'][-1] == pytest.approx(-3.025091958144266e+02)
    assert data['kappa_z_W_per_mK'][-1] == pytest.approx(-1.055223194227867e-01)
    assert data['kappa_x_total_W_per_mK'][-1] == pytest.approx(258.8915750606880)  # in + out by hand


def test_kappa_running_average_legacy():
    data = read_kappa(GRAPHENE_SHC_LEGACY / 'kappa.out')
    assert data['components'] == ['x_in', 'x_out', 'y_in', 'y_out', 'z']
    assert data['kappa_block_W_per_mK'].shape == (200, 5)
    np.testing.assert_allclose(
        data['kappa_block_W_per_mK'][0],
        [484.130600996424164, 228.393106899698779, 686.145386602453641, -86.983178399613863,
         -20.334730945221416],
    )
    assert data['kappa_x_in_W_per_mK'][0] == pytest.approx(484.130600996424164)
    # cumulative mean of the first two rows (484.1306... + 902.0379...) / 2, worked out by hand
    assert data['kappa_x_in_W_per_mK'][1] == pytest.approx(693.0842519279626)
    assert data['kappa_y_total_W_per_mK'][0] == pytest.approx(686.145386602453641 - 86.983178399613863)
    assert data['window_index'][-1] == 200
    assert 'time_ps' not in data

    moving = read_kappa(GRAPHENE_SHC_LEGACY / 'kappa.out', window=2, time_per_row_ps=1.0)
    assert moving['kappa_x_in_W_per_mK'][0] == pytest.approx(484.130600996424164)
    # rows 2 and 3: (902.037902859500946 + 948.436479932539100) / 2
    assert moving['kappa_x_in_W_per_mK'][2] == pytest.approx(925.237191396020023)
    assert moving['time_ps'][:3].tolist() == [1.0, 2.0, 3.0]  # 1000 steps x 1 fs per row


def test_kappa_single_row_v56_and_carbon():
    data = read_kappa(GRAPHENE_SHC / 'kappa.out')
    assert data['kappa_block_W_per_mK'].shape == (1, 5)
    assert data['kappa_y_in_W_per_mK'][0] == pytest.approx(170.679371898120962)
    assert data['kappa_y_out_W_per_mK'][0] == pytest.approx(-99.452644930500455)
    assert data['kappa_y_total_W_per_mK'][0] == pytest.approx(71.226727)

    carbon = read_kappa(shared('carbon_nep_hnemd_legacy_v3.x', 'kappa.out'))
    assert carbon['kappa_block_W_per_mK'].shape == (200, 5)
    assert carbon['kappa_x_in_W_per_mK'][0] == pytest.approx(10.698493548133332)
    assert carbon['kappa_z_W_per_mK'][0] == pytest.approx(2.825722433228943)


def test_kappa_window_and_malformed(tmp_path):
    with pytest.raises(ValueError, match='window'):
        read_kappa(GRAPHENE_SHC / 'kappa.out', window=0)
    path = tmp_path / 'kappa.out'
    path.write_text('1 2 3 4 5\n1 2 3 4\n')
    with pytest.raises(FormatError, match=r'kappa\.out: line 2: .*expected 5 columns'):
        read_kappa(path)


# ------------------------------------------------------------------------------------------ shc


def test_shc_v56_header_counts():
    data = read_shc(GRAPHENE_SHC / 'shc.out')
    assert data['time_ps'].shape == (499,)
    assert data['omega_THz'].shape == (1000,)
    assert data['time_ps'][0] == pytest.approx(-0.498)
    assert data['time_ps'][249] == 0.0
    assert data['time_ps'][-1] == pytest.approx(0.498)
    assert data['K_in_A_eV_per_ps'][0] == pytest.approx(-0.00486623)
    assert data['K_in_A_eV_per_ps'][249] == pytest.approx(130.448)
    assert data['omega_THz'][0] == pytest.approx(0.4)
    assert data['shc_in_A_eV_per_ps_per_THz'][0] == pytest.approx(3.30428)
    assert data['shc_out_A_eV_per_ps_per_THz'][-1] == pytest.approx(-0.00445179)
    header = data['headers'][0]
    assert header['num_correlation_rows'] == 499
    assert header['num_frequency_rows'] == 1000
    assert header['dt_output'] == (0.002, 'ps')
    assert header['columns_shc'] == ['omega_THz', 'shc_i', 'shc_o']


def test_shc_legacy_counts_inferred_from_content(tmp_path):
    data = read_shc(GRAPHENE_SHC_LEGACY / 'shc.out')
    assert data['time_ps'].shape == (499,)  # compute_shc Nc = 250 -> 2*250 - 1
    assert data['omega_THz'].shape == (1000,)
    assert data['K_in_A_eV_per_ps'][0] == pytest.approx(1.50403)
    assert data['K_out_A_eV_per_ps'][249] == pytest.approx(136.325)
    assert data['shc_out_A_eV_per_ps_per_THz'][0] == pytest.approx(10.5967)
    assert data['omega_THz'][-1] == pytest.approx(400.0)

    appended = read_shc(concatenated(tmp_path, GRAPHENE_SHC_LEGACY / 'shc.out', GRAPHENE_SHC / 'shc.out'))
    np.testing.assert_array_equal(appended['correlation_block_starts'], [0, 499])
    np.testing.assert_array_equal(appended['frequency_block_starts'], [0, 1000])
    assert appended['headers'][0] == {}
    assert appended['headers'][1]['num_frequency_rows'] == 1000


def test_shc_truncated():
    path = shared('carbon_nep_hnemd_legacy_v3.x', 'shc.out')  # first 200 of 399 + 500 rows
    message = r'shc\.out: line 1: shc\.out truncated: block needs 399 correlation rows'
    with pytest.raises(FormatError, match=message):
        read_shc(path)


def test_shc_header_counts_beyond_file(tmp_path):
    lines = (GRAPHENE_SHC / 'shc.out').read_text().splitlines(keepends=True)
    path = tmp_path / 'shc.out'
    path.write_text(''.join(lines[:600]))
    with pytest.raises(FormatError, match=r'shc\.out truncated: .*not followed by 1000 frequency rows'):
        read_shc(path)


# --------------------------------------------------------------------------------------- dump.xyz


def test_dump_xyz_master_frame():
    frames = iter_dump_xyz(PBTE_DUMP / 'dump.xyz')
    assert inspect.isgenerator(frames)
    frames = list(frames)
    assert len(frames) == 1
    frame = frames[0]
    assert len(frame['species']) == 250
    assert frame['species'][0] == 'Te' and frame['species'][-1] == 'Pb'
    np.testing.assert_allclose(
        frame['positions'][0], [3.2716189999999998, 3.0938160000000003, 3.3547220000000002]
    )
    np.testing.assert_allclose(
        frame['forces'][-1], [0.34705270137510524, 0.31427185556799486, 0.013792266310929335]
    )
    a = 16.425979999999999
    np.testing.assert_allclose(frame['cell'], [[0, a, a], [a, 0, a], [a, a, 0]])
    assert frame['pbc'] == (True, True, True)
    assert frame['time'] == 0.0
    assert frame['energy'] == pytest.approx(-930.86304712295532)
    assert frame['virial'][0, 0] == pytest.approx(272.01058072768575)
    assert frame['virial'][0, 1] == pytest.approx(1.094106528958986)
    assert frame['stress'][0, 0] == pytest.approx(0.030690031908806096)
    assert frame['velocities'] is None and frame['masses'] is None and frame['groups'] is None


def test_frame_from_dump_flips_to_ase_sign():
    frame = frame_from_dump(next(iter_dump_xyz(PBTE_DUMP / 'dump.xyz')))
    assert isinstance(frame, Frame)
    assert frame.natoms == 250
    assert frame.energy == pytest.approx(-930.86304712295532)
    # -virial/V agrees with GPUMD's own stress (positive = compressed) up to the 1 K kinetic part
    assert frame.stress[0, 0] == pytest.approx(-0.030690031908806096, rel=1e-3)
    assert frame.info['time_fs'] == 0.0


class _FirstFrameOnly:
    """A text handle that fails if anything past the first ``limit`` lines is requested."""

    def __init__(self, text: str, limit: int):
        self._lines = text.splitlines(keepends=True)
        self._limit = limit
        self.consumed = 0

    def __iter__(self):
        for line in self._lines:
            if self.consumed >= self._limit:
                raise AssertionError('read past the first frame')
            self.consumed += 1
            yield line


def test_dump_xyz_streams_one_frame_at_a_time():
    text = (PBTE_DUMP / 'dump.xyz').read_text()
    handle = _FirstFrameOnly(text * 2, limit=252)  # frame = 1 count line + 1 comment + 250 atoms
    frames = iter_dump_xyz(handle)
    first = next(frames)
    assert handle.consumed == 252
    assert first['energy'] == pytest.approx(-930.86304712295532)
    with pytest.raises(AssertionError, match='read past the first frame'):
        next(frames)


def test_dump_xyz_several_frames_and_optional_columns(tmp_path):
    path = concatenated(tmp_path, PBTE_DUMP / 'dump.xyz', PBTE_DUMP / 'dump.xyz', name='dump.xyz')
    assert len(list(iter_dump_xyz(path))) == 2

    path.write_text(
        '2\n'
        'Time=10.0 pbc="T T F" Lattice="5 0 0 0 5 0 0 0 20" energy=-1.5 '
        'Properties=species:S:1:pos:R:3:mass:R:1:vel:R:3:forces:R:3:energy_atom:R:1:virial:R:9:group:I:2\n'
        'C 0 0 0 12.011 0.01 0.02 0.03 1 2 3 -0.7 1 0 0 0 1 0 0 0 1 0 1\n'
        'H 1 1 1 1.008 -0.01 -0.02 -0.03 -1 -2 -3 -0.8 2 0 0 0 2 0 0 0 2 1 0\n'
    )
    (frame,) = iter_dump_xyz(path)
    assert frame['time'] == 10.0
    assert frame['pbc'] == (True, True, False)
    np.testing.assert_allclose(frame['velocities'][1], [-0.01, -0.02, -0.03])
    np.testing.assert_allclose(frame['masses'], [12.011, 1.008])
    np.testing.assert_array_equal(frame['groups'], [[0, 1], [1, 0]])
    assert frame['groups'].dtype.kind == 'i'
    np.testing.assert_allclose(frame['arrays']['energy_atom'], [-0.7, -0.8])
    assert frame['arrays']['virial'].shape == (2, 9)
    assert 'virial' not in frame  # no total virial on the comment line


def test_dump_xyz_truncated_frame(tmp_path):
    lines = (PBTE_DUMP / 'dump.xyz').read_text().splitlines(keepends=True)
    path = tmp_path / 'dump.xyz'
    path.write_text(''.join(lines + lines[:100]))  # second frame cut after 98 atom lines
    frames = iter_dump_xyz(path)
    assert len(next(frames)['species']) == 250  # the complete first frame comes out first
    message = r'dump\.xyz: line 352: frame 1: truncated: file ends after 98 of 250'
    with pytest.raises(FormatError, match=message):
        next(frames)


CUBE = 'Lattice="1 0 0 0 1 0 0 0 1"'
XYZ = 'Properties=species:S:1:pos:R:3'


@pytest.mark.parametrize(
    ('comment', 'atom', 'message'),
    [
        (f'{CUBE} {XYZ}', 'H 0 0', r'line 3: .*atom line has 3 columns'),
        (f'{CUBE} {XYZ}', 'H 0 0 zero', r"line 3: .*pos: non-numeric value 'zero'"),
        (XYZ, 'H 0 0 0', r'line 2: .*Lattice: missing'),
        (f'Lattice="1 0 0 0 1 0 0 0" {XYZ}', 'H 0 0 0', r'line 2: .*Lattice: expected 9'),
        (CUBE, 'H 0 0 0', r'line 2: .*Properties: missing'),
    ],
)
def test_dump_xyz_malformed(tmp_path, comment, atom, message):
    path = tmp_path / 'dump.xyz'
    path.write_text(f'1\n{comment}\n{atom}\n')
    with pytest.raises(FormatError, match=r'dump\.xyz: ' + message):
        list(iter_dump_xyz(path))


# ---------------------------------------------------------------------------------- restart.xyz


def test_restart_xyz_truncated_fixture_is_refused():
    message = r'restart\.xyz: line 202: frame 0: truncated: file ends after 200 of 8000'
    with pytest.raises(FormatError, match=message):
        read_restart_xyz(SI_V56 / 'restart.xyz')


def test_restart_xyz_velocities_masses_groups(tmp_path):
    lines = (SI_V56 / 'restart.xyz').read_text().splitlines(keepends=True)
    path = tmp_path / 'restart.xyz'
    path.write_text('200\n' + ''.join(lines[1:]))  # the kept 200 atoms as a complete structure
    data = read_restart_xyz(path)
    assert len(data['species']) == 200 and set(data['species']) == {'Si'}
    np.testing.assert_allclose(data['cell'], np.eye(3) * 54.655)
    np.testing.assert_allclose(data['positions'][0], [52.0441, 52.7767, 51.7808])
    np.testing.assert_allclose(data['velocities'][0], [-0.00828821, 0.00398025, 0.00937198])  # Å/fs
    np.testing.assert_allclose(data['masses'][:2], [28.085, 28.085])
    assert data['groups'].shape == (200, 1)
    assert not data['groups'].any()

    path.write_text('200\n' + ''.join(lines[1:]) + '1\n')
    with pytest.raises(FormatError, match=r'line 203: more than one frame'):
        read_restart_xyz(path)


def test_model_xyz_groups_without_velocities():
    data = read_restart_xyz(SIFCH / 'model.xyz')  # CRLF line ends, trailing blanks, extra keys
    assert len(data['species']) == 27
    assert data['species'][:3] == ['F', 'Si', 'C']
    np.testing.assert_allclose(data['positions'][1], [-2.198768, -0.164030, 0.044047])
    np.testing.assert_allclose(data['cell'], np.eye(3) * 100.0)
    assert data['pbc'] == (True, True, True)  # no pbc key: GPUMD default
    assert data['velocities'] is None
    assert np.bincount(data['groups'][:, 0]).tolist() == [7, 9, 11]
    assert data['info']['potential'] == '-815.09598027'


def test_model_xyz_triclinic_with_force_column():
    data = read_restart_xyz(shared('pbte_nvt_lan_thermo_triclinic_v4.0', 'model.xyz'))
    assert len(data['species']) == 250
    a = 16.42598265
    np.testing.assert_allclose(data['cell'], [[0, a, a], [a, 0, a], [a, a, 0]])
    np.testing.assert_allclose(data['forces'][0], [-0.8301973, 0.5218599, -0.4196267])


# ------------------------------------------------------------------------------------------ stdout

# Lines as printed by GPUMD (formats from src/main_gpumd/main.cu, run.cu, utilities/error.cuh).
STDOUT = """
***************************************************************
*                 Welcome to use GPUMD                        *
*     (Graphics Processing Units Molecular Dynamics)          *
*                    version 5.6                              *
*              This is the gpumd executable                   *
***************************************************************

---------------------------------------------------------------
Compiling options:
---------------------------------------------------------------
DEBUG is off: Use different PRNG seeds for different runs.
This version can only be used with an NEP potential.

---------------------------------------------------------------
Time used for this run = 12.5 second.
Speed of this run = 5.12e+07 atom*step/second.
---------------------------------------------------------------

---------------------------------------------------------------
Time used for this run = 250.25 second.
Speed of this run = 2.5575e+07 atom*step/second.
---------------------------------------------------------------

---------------------------------------------------------------
Finished executing the commands in run.in.
---------------------------------------------------------------

---------------------------------------------------------------
Time used = 263.100000 s.
---------------------------------------------------------------

---------------------------------------------------------------
Finished running GPUMD.
---------------------------------------------------------------
"""


def test_gpumd_stdout_finished():
    data = read_gpumd_stdout(STDOUT)
    assert data['version'] == '5.6'
    assert len(data['runs']) == 2
    assert data['speed_atom_step_per_s'].tolist() == [5.12e7, 2.5575e7]
    assert data['time_per_run_s'].tolist() == [12.5, 250.25]
    assert data['total_time_s'] == 263.1
    assert data['finished'] and data['finished_commands']
    assert data['errors'] == []


def test_gpumd_stdout_old_banner_and_input_error():
    text = (
        '*                    Version 3.9.1                            *\n'
        'INFO:  Time used for this run = 3.5 s.\n'
        'INFO:  Speed of this run = 1e+06 atom*step/second.\n'
        'Input Error:\n'
        '    File:       /opt/GPUMD/src/main_gpumd/run.cu\n'
        '    Line:       345\n'
        "    Error text: 'dump_exyz' is an invalid keyword.\n"
    )
    data = read_gpumd_stdout(text)
    assert data['version'] == '3.9.1'
    assert data['runs'] == [{'time_s': 3.5, 'speed_atom_step_per_s': 1e6}]
    assert not data['finished']
    assert data['errors'] == [{
        'kind': 'Input Error',
        'file': '/opt/GPUMD/src/main_gpumd/run.cu',
        'line': 345,
        'text': "'dump_exyz' is an invalid keyword.",
    }]
    empty = read_gpumd_stdout('')
    assert empty['version'] is None and empty['runs'] == [] and empty['speed_atom_step_per_s'].shape == (0,)
