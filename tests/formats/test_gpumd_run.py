"""Tests of the GPUMD ``run.in`` writer/reader: round trips of recorded run.in files and the keyword grammar checks.

Recorded files are in ``tests/fixtures/gpumd/md/<folder>/run.in`` (provenance in
``tests/fixtures/gpumd/SOURCES-nep.md``); shared fixtures without recorded provenance are read from
the shared fixtures beside the checkout when that folder exists.
"""

import pathlib

import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd_run import read_run_in, run_in

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
SHARED = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'fixtures' / 'gpumd' / 'md'
LOCAL_FOLDERS = sorted(p.parent.name for p in MD.glob('*/run.in'))
SHARED_ONLY = sorted(p.parent.name for p in SHARED.glob('*/run.in') if not (MD / p.parent.name / 'run.in').exists())
LEGACY = {'si_liquid_diffusion_msd_sdc_legacy_v3.x'}  # uses dump_exyz, removed from GPUMD after v5.6


def command_tokens(text: str) -> list[list[str]]:
    """The commands of a run.in as token lists, without comments and blank lines."""
    lines = []
    for line in text.splitlines():
        tokens = []
        for token in line.split():
            if token.startswith('#'):
                break
            tokens.append(token)
        if tokens:
            lines.append(tokens)
    return lines


def same_token(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def assert_equivalent(original: str, generated: str) -> None:
    left, right = command_tokens(original), command_tokens(generated)
    assert [line[0] for line in left] == [line[0] for line in right]
    for a, b in zip(left, right, strict=True):
        assert len(a) == len(b) and all(same_token(x, y) for x, y in zip(a, b)), (a, b)


def check_fixture(path: pathlib.Path) -> None:
    text = path.read_text()
    legacy = path.parent.name in LEGACY
    if legacy:
        with pytest.raises(FormatError, match=r'dump_exyz: removed from GPUMD after v5.6'):
            read_run_in(text)
    parsed = read_run_in(text, legacy=legacy)
    assert parsed['legacy'] is legacy
    generated = run_in(**parsed)
    assert_equivalent(text, generated)
    assert read_run_in(generated, legacy=legacy) == parsed


def test_all_fixture_folders_are_covered():
    assert len(LOCAL_FOLDERS) >= 11


@pytest.mark.parametrize('folder', LOCAL_FOLDERS)
def test_fixture_run_in_round_trip(folder):
    check_fixture(MD / folder / 'run.in')


@pytest.mark.skipif(not SHARED_ONLY, reason='every shared GPUMD md fixture with a run.in is copied into tests/fixtures')
@pytest.mark.parametrize('folder', SHARED_ONLY or ['none'])
def test_shared_uncopied_run_in_round_trip(folder):
    check_fixture(SHARED / folder / 'run.in')


def test_si_liquid_structure():
    parsed = read_run_in((MD / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6' / 'run.in').read_text())
    assert parsed['potential'] == '../../../potentials/nep/Si_2022_NEP4_3body.txt'
    assert parsed['stages'] == [
        {'velocity': {'temperature': 2500.0}, 'time_step': {'dt': 2.0},
         'ensemble': {'name': 'npt_scr', 'T1': 2500.0, 'T2': 2500.0, 'T_coup': 100.0, 'p': [0.0], 'C': [50.0],
                      'p_coup': 1000.0},
         'dump_restart': 1000, 'run': 1000},
        {'ensemble': {'name': 'nve'}, 'compute_sdc': {'sample_interval': 2, 'Nc': 100},
         'compute_msd': {'sample_interval': 2, 'Nc': 100}, 'compute_viscosity': {'sample_interval': 2, 'Nc': 100},
         'compute_rdf': {'r_cut': 5.0, 'num_bins': 100, 'interval': 100},
         'compute_adf': {'interval': 100, 'num_bins': 60, 'rc_min': 0.0, 'rc_max': 2.5}, 'run': 1000},
    ]


def test_other_fixture_structures():
    graphene = read_run_in((MD / 'graphene_hnemd_shc_v5.6' / 'run.in').read_text())['stages'][1]
    assert graphene['compute_hnemd'] == {'output_interval': 1000, 'Fe_x': 0.0, 'Fe_y': 1e-05, 'Fe_z': 0.0}
    assert graphene['compute_shc'] == {'sample_interval': 2, 'Nc': 250, 'direction': 1, 'num_omega': 1000,
                                       'omega_max': 400.0, 'group': [0, 4]}
    emd = read_run_in((MD / 'graphene_emd_hac_v4.8' / 'run.in').read_text())['stages']
    assert emd[0]['ensemble']['p'] == [0.0, 0.0, 0.0] and emd[0]['ensemble']['C'] == [53.4059] * 3
    assert emd[1]['compute_hac'] == {'sample_interval': 20, 'Nc': 500, 'output_interval': 10}
    static = read_run_in((MD / 'pbte_static_dump_xyz_master' / 'run.in').read_text())['stages'][0]
    assert static['dump_xyz'] == {'interval': 1, 'file': 'dump.xyz', 'force': True, 'precision': 'double'}
    assert static['time_step'] == {'dt': 0.0}
    anneal = read_run_in((MD / 'carbon_nep_nvt_sdc_legacy_v3.x' / 'run.in').read_text())['stages']
    assert len(anneal) == 6 and anneal[5]['time_step'] == {'dt': 0.5}
    assert anneal[2]['ensemble'] == {'name': 'nvt_lan', 'T1': 5000.0, 'T2': 1000.0, 'T_coup': 100.0}
    legacy = read_run_in((MD / 'si_liquid_diffusion_msd_sdc_legacy_v3.x' / 'run.in').read_text(), legacy=True)
    assert legacy['stages'][0]['dump_exyz'] == {'interval': 10000, 'has_velocity': 0, 'has_force': 0}


def test_documented_minimal_protocol():
    stages = [
        {'velocity': 300, 'time_step': 1, 'ensemble': {'name': 'nvt_nhc', 'T1': 300, 'T2': 300, 'T_coup': 100},
         'dump_thermo': 100, 'run': 100000},
        {'ensemble': ['nvt_nhc', 300, 300, 100], 'dump_thermo': 100,
         'compute_msd': {'sample_interval': 10, 'Nc': 500}, 'compute_rdf': '6.0 300 100',
         'dump_xyz': {'interval': 10000, 'file': 'dump.xyz', 'velocity': True, 'force': True}, 'run': 500000},
    ]
    text = run_in(stages)
    assert text == (
        'potential    nep.txt\n'
        '\n'
        'velocity     300\n'
        'time_step    1\n'
        'ensemble     nvt_nhc 300 300 100\n'
        'dump_thermo  100\n'
        'run          100000\n'
        '\n'
        'ensemble     nvt_nhc 300 300 100\n'
        'dump_thermo  100\n'
        'compute_msd  10 500\n'
        'compute_rdf  6 300 100\n'
        'dump_xyz     10000 dump.xyz velocity force\n'
        'run          500000\n'
    )
    parsed = read_run_in(text)
    assert parsed['potential'] == 'nep.txt' and parsed['legacy'] is False
    assert run_in(**parsed) == text


def test_more_ensembles_and_options():
    stages = [
        {'velocity': {'temperature': 300, 'seed': 42}, 'time_step': [1, 0.1],
         'ensemble': {'name': 'npt_mttk', 'temp': [300, 300], 'tri': [0, 0], 'tperiod': 100, 'pperiod': 1000},
         'compute_dos': {'sample_interval': 5, 'Nc': 200, 'omega_max': 400.0, 'group': [0, -1],
                         'num_dos_points': 300},
         'run': 10000},
        {'ensemble': 'npt_ber 300 300 100 0 0 0 0 0 0 100 100 100 100 100 100 1000', 'run': 100},
        {'ensemble': {'name': 'heat_lan', 'T': 300, 'T_coup': 100, 'delta_T': 20, 'source_group': 1,
                      'sink_group': 2},
         'compute': {'grouping_method': 0, 'sample_interval': 10, 'output_interval': 100, 'temperature': True},
         'fix': 0, 'dump_xyz': [{'interval': 100, 'file': 'a.xyz', 'group': [0, 1]},
                                {'interval': 100, 'file': 'b.xyz', 'group': [0, 2], 'unwrapped_position': True}],
         'run': 1000},
        {'minimize': ['fire', 1e-5, 1000]},
    ]
    text = run_in(stages, potential='model.txt x')
    assert text.splitlines()[0] == 'potential    model.txt x'
    assert 'velocity     300 seed 42\n' in text and 'time_step    1 0.1\n' in text
    assert 'ensemble     npt_mttk temp 300 300 tri 0 0 tperiod 100 pperiod 1000\n' in text
    assert 'dump_xyz     100 b.xyz group 0 2 unwrapped_position\n' in text and 'minimize     fire 1e-05 1000\n' in text
    parsed = read_run_in(text)
    assert parsed['stages'][2]['dump_xyz'][1]['group'] == [0, 2] and parsed['stages'][2]['fix'] == {'group_id': 0}
    assert parsed['stages'][1]['ensemble']['p'] == [0.0] * 6 and parsed['stages'][3] == {
        'minimize': {'method': 'fire', 'force_tolerance': 1e-05, 'max_steps': 1000}}
    assert run_in(**parsed) == text


@pytest.mark.parametrize(('stages', 'message'), [
    ([{'ensemble': 'nve', 'compute_foo': 1, 'run': 10}], r'^stages\[0\]: compute_foo: unknown run.in keyword'),
    ([{'ensemble': 'nve', 'run': 10}, {'ensemble': ['nvt_nhc', 300, 300], 'run': 10}],
     r'^stages\[1\]: ensemble: nvt_nhc: expected T1 T2 T_coup \(3 arguments\), got 2'),
    ([{'ensemble': ['nvt_ber', -10, 300, 100], 'run': 10}], r'^stages\[0\]: ensemble: T1: negative temperature'),
    ([{'velocity': -300, 'ensemble': 'nve', 'run': 10}], r'^stages\[0\]: velocity: temperature: negative temperature'),
    ([{'ensemble': 'nve', 'run': -5}], r'^stages\[0\]: run: steps: must be a positive number'),
    ([{'ensemble': 'nve', 'run': 0}], r'^stages\[0\]: run: steps: must be a positive number'),
    ([{'ensemble': 'nve', 'dump_thermo': -1, 'run': 10}], r'^stages\[0\]: dump_thermo: interval: must be a positive'),
    ([{'ensemble': 'nve', 'run': 1.5}], r'^stages\[0\]: run: steps: expected an integer'),
    ([{'ensemble': 'npt_foo 300', 'run': 10}], r"^stages\[0\]: ensemble: unknown ensemble 'npt_foo'"),
    ([{'ensemble': 'nve 300', 'run': 10}], r'^stages\[0\]: ensemble: nve takes no arguments'),
    ([{'ensemble': 'npt_scr 300 300 100 0 50', 'run': 10}], r'^stages\[0\]: ensemble: npt_scr: expected T1 T2 T_coup'),
    ([{'ensemble': 'npt_mttk temp 300 300', 'run': 10}], r'^stages\[0\]: ensemble: npt_mttk: needs a pressure'),
    ([{'ensemble': 'npt_mttk temp 300 300 iso 0 0 x 0 0', 'run': 10}], r'cannot be combined'),
    ([{'ensemble': 'heat_lan 300 100 400 1 2', 'run': 10}], r'delta_T: the sink would be at a negative temperature'),
    ([{'ensemble': 'nve', 'compute_msd': [10, 500], 'run': 1000}],
     r'^stages\[0\]: compute_msd: sample_interval\*Nc = 5000 exceeds run 1000'),
    ([{'ensemble': 'nve', 'compute_msd': [10, 50, 'group', 0], 'run': 1000}], r'compute_msd: group: expected 2'),
    ([{'ensemble': 'nve', 'compute_msd': '1 20 group 0 0 all_groups 0', 'run': 100}], r'exclude each other'),
    ([{'ensemble': 'nve', 'compute_shc': [2, 2000, 1, 1000, 400], 'run': 10}], r'compute_shc: Nc: must be 100 to 1000'),
    ([{'ensemble': 'nve', 'compute_shc': [2, 200, 3, 1000, 400], 'run': 10}], r'compute_shc: direction: must be one'),
    ([{'ensemble': 'nve', 'compute_rdf': [6, 10, 100], 'run': 10}], r'compute_rdf: num_bins: must be 21 to 500'),
    ([{'ensemble': 'nve', 'compute_rdf': [6, 100], 'run': 10}], r'compute_rdf: interval: missing'),
    ([{'ensemble': 'nve', 'compute_hnemd': [1000, 1e-5, 1e-5, 0], 'run': 10}], r'exactly one of Fe_x'),
    ([{'ensemble': 'nve', 'compute_hac': [20, 500, 10, 3], 'run': 10}], r'compute_hac: too many arguments'),
    ([{'ensemble': 'nve', 'dump_xyz': {'interval': 10, 'file': 'd.xyz', 'colour': True}, 'run': 10}],
     r"dump_xyz: unknown argument 'colour'"),
    ([{'ensemble': 'nve', 'dump_xyz': [0, 0, 10, 'd.xyz'], 'run': 10}], r'dump_xyz: the positional form'),
    ([{'ensemble': 'nve', 'dump_exyz': 1000, 'run': 10}], r'dump_exyz: removed from GPUMD after v5.6'),
    ([{'ensemble': 'nve', 'compute_rdf': '6 100 100 atom 0 0', 'run': 10}], r'"atom i j" pairs were removed in v4.9'),
    ([{'ensemble': 'nve'}], r'^stages\[0\]: a run block needs exactly one ensemble and a run'),
    ([{'run': 10}], r'^stages\[0\]: run: no ensemble in this stage'),
    ([{'dump_thermo': 10}], r'^stages\[0\]: dump_thermo: only allowed in a run block'),
    ([{'potential': 'x.txt'}], r'^stages\[0\]: potential: give the potential as run_in'),
    ([{'raw': ['run 10']}], r'^stages\[0\]: raw: run: not allowed in raw lines'),
    ([], r'^stages: expected a non-empty list'),
    (['nve'], r'^stages\[0\]: expected a dict'),
])
def test_grammar_errors_name_stage_and_keyword(stages, message):
    with pytest.raises(FormatError, match=message):
        run_in(stages)


def test_legacy_writing_and_potential_checks():
    stages = [{'ensemble': 'nve', 'dump_exyz': [1000, 1, 1], 'dump_xyz': '-1 0 100 movie.xyz velocity',
               'compute_rdf': {'r_cut': 6, 'num_bins': 100, 'interval': 10, 'atom': [[0, 0], [0, 1]]}, 'run': 100}]
    text = run_in(stages, legacy=True)
    assert 'dump_exyz    1000 1 1\n' in text and 'dump_xyz     -1 0 100 movie.xyz velocity\n' in text
    assert 'compute_rdf  6 100 10 atom 0 0 atom 0 1\n' in text
    parsed = read_run_in(text, legacy=True)
    assert parsed['legacy'] is True and parsed['stages'][0]['compute_rdf']['atom'] == [[0, 0], [0, 1]]
    assert run_in(**parsed) == text
    with pytest.raises(FormatError, match=r'^potential: the split direction must be x, y or z'):
        run_in([{'ensemble': 'nve', 'run': 1}], potential='nep.txt w')


def test_read_run_in_errors_name_the_line():
    with pytest.raises(FormatError, match=r'^run.in line 2: frobnicate: unknown run.in keyword'):
        read_run_in('potential nep.txt\nfrobnicate 1\n')
    with pytest.raises(FormatError, match=r'^run.in: potential: missing'):
        read_run_in('velocity 300\nensemble nve\nrun 10\n')
    with pytest.raises(FormatError, match=r'^run.in line 4: dump_thermo: given twice in one run block'):
        read_run_in('potential nep.txt\nensemble nve\ndump_thermo 10\ndump_thermo 20\nrun 10\n')
    with pytest.raises(FormatError, match=r'^run.in line 3: potential: given twice'):
        read_run_in('potential nep.txt\nvelocity 300\npotential nep.txt\n')
    with pytest.raises(FormatError, match=r'^run.in line 3: run: no ensemble in this stage'):
        read_run_in('potential nep.txt\nvelocity 300\nrun 10\n')
    with pytest.raises(FormatError, match=r'^run.in \(after the last run\): a run block needs exactly one ensemble'):
        read_run_in('potential nep.txt\nensemble nve\nrun 10\nensemble nve\n')
    with pytest.raises(FormatError, match=r'^run.in line 4: potential: must come before the first run block'):
        read_run_in('velocity 300\nensemble nve\nrun 10\npotential nep.txt\n')
    with pytest.raises(FormatError, match=r'^run.in line 3: ensemble: T_coup: must be > 0'):
        read_run_in('potential nep.txt\n# comment\nensemble nvt_nhc 300 300 0 # bad coupling\nrun 10\n')


def test_raw_escape_hatches():
    text = 'potential nep.txt\nvelocity 300\nensemble nve\ncompute_phonon 5 0.005\nrun 10\n'
    with pytest.raises(FormatError, match=r'compute_phonon: unknown run.in keyword'):
        read_run_in(text)
    parsed = read_run_in(text, allow_raw=True)
    assert parsed['stages'][0]['raw'] == ['compute_phonon 5 0.005']
    assert_equivalent(text, run_in(**parsed))
    assert run_in(None, raw=text) == text
    assert run_in([], raw=text.rstrip('\n')) == text
    with pytest.raises(FormatError, match=r'^raw: a run.in needs a potential line'):
        run_in(None, raw='velocity 300\n')
    with pytest.raises(FormatError, match=r'^raw: give either stages or a raw run.in'):
        run_in([{'velocity': 300}], raw=text)
