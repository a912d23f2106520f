"""Tests of the ``.mtp`` reader, writer, mlip-2 layout check, motep layout fix and level templates.

Fixtures (``tests/fixtures/mtp/``, see SOURCES.md there): level-08 Cu potentials made with motep 0.2.0
on EMT labels (the ``AS-WRITTEN`` file is exactly what ``motep train`` wrote, the ``mlip2-layout``
files are the same kind of potentials rewritten into mlip-2's layout) and one potential trained with
mlip-2 by the motep authors (MIT, from motep's tests). Broken variants are derived in the tests.
"""

import hashlib
import io
import pathlib
import re

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.mtp import (
    LEVELS,
    TEMPLATE_DIR,
    MtpFile,
    available_levels,
    check_mlip2_layout,
    fix_motep_layout,
    format_mtp,
    initial_potential,
    level_of,
    parameter_count,
    read_mtp,
    write_mtp,
)

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mtp'
AS_WRITTEN = FIXTURES / 'cu_emt_L08_made-here_motep020_AS-WRITTEN_not-mlip2-readable.mtp'
LBFGSB = FIXTURES / 'cu_emt_L08_made-here_motep020_mlip2-layout.mtp'  # same coefficients as AS_WRITTEN
BFGS = FIXTURES / 'cu_emt_L08_made-here_motep020_BFGS_mlip2-layout.mtp'
MLIP2_TRAINED = FIXTURES / 'cu_emt_L08_mlip2-trained_from-motep-tests.mtp'
TRAINED = (LBFGSB, BFGS, MLIP2_TRAINED)
TEMPLATES = sorted(TEMPLATE_DIR.glob('*.mtp'))

# docs/mtp-formats.md §2: level -> radial_funcs, alpha_moments, index_basic, index_times, scalar moments,
# params for 1 species, params for 2 species (radial_basis_size 8).
DOC_TABLE = {
    2: (1, 1, 1, 0, 1, 10, 35),
    4: (1, 2, 1, 1, 2, 11, 36),
    6: (2, 8, 5, 5, 5, 22, 71),
    8: (2, 18, 11, 14, 9, 26, 75),
    10: (3, 41, 25, 42, 16, 41, 114),
    12: (3, 84, 46, 117, 29, 54, 127),
    14: (4, 174, 81, 348, 52, 85, 182),
    16: (4, 350, 130, 969, 92, 125, 222),
    18: (5, 718, 201, 2634, 163, 204, 325),
    20: (5, 1352, 295, 6349, 288, 329, 450),
    22: (6, 2621, 421, 15431, 500, 549, 694),
    24: (6, 4991, 581, 36170, 864, 913, 1058),
    26: (6, 9396, 706, 82520, 1464, 1513, 1658),
    28: (6, 17366, 866, 180069, 2445, 2494, 2639),
}


def assert_same_mtp(a: MtpFile, b: MtpFile):
    """Every field that reaches the file is identical (floats compared exactly)."""
    for name in ('species_count', 'min_dist', 'max_dist', 'radial_basis_size', 'radial_funcs_count',
                 'alpha_moments_count', 'scaling', 'version', 'potential_name', 'potential_tag', 'radial_basis_type'):
        assert getattr(a, name) == getattr(b, name), name
    for name in ('alpha_index_basic', 'alpha_index_times', 'alpha_moment_mapping', 'species_coeffs', 'moment_coeffs'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape and np.array_equal(x, y), name
    assert (a.radial_coeffs is None) == (b.radial_coeffs is None)
    if a.radial_coeffs is not None:
        assert list(a.radial_coeffs) == list(b.radial_coeffs)
        for key in a.radial_coeffs:
            assert np.array_equal(a.radial_coeffs[key], b.radial_coeffs[key]), key


def numbers_in(text: str) -> list[float]:
    """Every floating-point literal of a text, in order (for 'coefficients unchanged' checks)."""
    return [float(x) for x in re.findall(r'-?\d+\.\d+(?:e[+-]\d+)?', text)]


# ----------------------------------------------------------------------------------------- templates


def test_level_table_matches_the_doc():
    assert LEVELS == {level: row[:5] for level, row in DOC_TABLE.items()}


def test_the_mit_templates_02_to_20_are_shipped_with_attribution():
    assert available_levels() == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert [p.name for p in TEMPLATES] == [f'{n:02d}.mtp' for n in available_levels()]
    readme = (TEMPLATE_DIR / 'README.md').read_text()
    assert 'imw-md/motep' in readme and 'MIT' in readme


@pytest.mark.parametrize('path', TEMPLATES, ids=lambda p: p.name)
def test_every_shipped_template_parses_and_passes_the_layout_check(path):
    text = path.read_text()
    assert check_mlip2_layout(text) == []
    mtp = read_mtp(path)
    level = int(path.stem)
    assert level_of(mtp) == level == mtp.level
    assert not mtp.is_trained and mtp.radial_coeffs is None and mtp.species_coeffs is None
    assert (mtp.species_count, mtp.radial_basis_size) == (1, 8)
    rfc, moments, basic, times, scalar, params1, _ = DOC_TABLE[level]
    assert (mtp.radial_funcs_count, mtp.alpha_moments_count, mtp.alpha_index_basic_count,
            mtp.alpha_index_times_count, mtp.alpha_scalar_moments) == (rfc, moments, basic, times, scalar)
    assert parameter_count(mtp) == params1
    assert check_mlip2_layout(format_mtp(mtp)) == []


@pytest.mark.parametrize('level', sorted(DOC_TABLE))
def test_level_of_and_parameter_count_follow_the_doc_table(level):
    rfc, moments, basic, times, scalar, params1, params2 = DOC_TABLE[level]
    if level in available_levels():
        one = initial_potential(level, 1, 2.0, 5.0)
        two = initial_potential(level, 2, 2.0, 5.0)
    else:  # levels 22-28 are not shipped: a synthetic basis with the table's counts
        index_basic = np.zeros((basic, 4), dtype=int)
        index_basic[-1, 0] = rfc - 1
        one = MtpFile(species_count=1, min_dist=2.0, max_dist=5.0, radial_basis_size=8, radial_funcs_count=rfc,
                      alpha_moments_count=moments, alpha_index_basic=index_basic,
                      alpha_index_times=np.zeros((times, 4), dtype=int), alpha_moment_mapping=np.zeros(scalar, int))
        two = one.copy()
        two.species_count = 2
    assert level_of(one) == level_of(two) == level
    assert parameter_count(one) == params1
    assert parameter_count(two) == params2


def test_level_of_a_non_standard_basis_is_none():
    mtp = read_mtp(TEMPLATE_DIR / '08.mtp')
    mtp.alpha_moment_mapping = mtp.alpha_moment_mapping[:-1]
    assert level_of(mtp) is None


# ----------------------------------------------------------------------------------------- trained files


@pytest.mark.parametrize('path', TRAINED, ids=lambda p: p.name)
def test_trained_fixtures_pass_the_check_and_parse(path):
    assert check_mlip2_layout(path.read_text()) == []
    mtp = read_mtp(path)
    assert mtp.is_trained and not mtp.motep_layout and mtp.layout_fixes == []
    assert level_of(mtp) == 8 and parameter_count(mtp) == 26
    assert mtp.radial_coeffs_array().shape == (1, 1, 2, 8)
    assert mtp.species_coeffs.shape == (1,) and mtp.moment_coeffs.shape == (9,)
    assert ('species_count', '1') in mtp.header


def test_scaling_and_min_dist_of_the_mlip2_trained_potential():
    mtp = read_mtp(MLIP2_TRAINED)
    assert mtp.scaling == 1.247515558262017e-02
    assert (mtp.min_dist, mtp.max_dist) == (0.5, 5.0)
    assert mtp.radial_coeffs[(0, 0)][1, 7] == 1.164029435446253e-02
    assert mtp.moment_coeffs[-1] == 5.886791779774155e+03


# ----------------------------------------------------------------------------------------- motep layout


def test_motep_as_written_file_fails_the_check_naming_min_dist():
    problems = check_mlip2_layout(AS_WRITTEN.read_text())
    assert problems
    assert 'min_dist' in problems[0] and "'min'" in problems[0]


def test_read_mtp_accepts_the_motep_layout_and_records_it():
    mtp = read_mtp(AS_WRITTEN)
    assert mtp.motep_layout
    assert mtp.layout_fixes == ['min -> min_dist', 'max -> max_dist', 'size -> radial_basis_size',
                                'radial_funcs_count moved above radial_coeffs']
    assert ('min', '2.000000000000000e+00') in mtp.header
    assert (mtp.min_dist, mtp.max_dist, mtp.radial_basis_size, mtp.radial_funcs_count) == (2.0, 5.0, 8, 2)


def test_fix_motep_layout_passes_and_keeps_every_coefficient():
    original = AS_WRITTEN.read_text()
    fixed = fix_motep_layout(original)
    assert check_mlip2_layout(fixed) == []
    assert fixed == format_mtp(read_mtp(original))  # equivalent to read + write
    assert numbers_in(fixed) == numbers_in(original)
    assert_same_mtp(read_mtp(fixed), read_mtp(original))
    # the file written by motep's legacy writer from the same run holds the same potential
    assert_same_mtp(read_mtp(fixed), read_mtp(LBFGSB))
    # the mlip-2 order of the keys
    keys = [re.match(r'\s*(\w+)', line).group(1) for line in fixed.splitlines() if '=' in line]
    assert keys[:10] == ['version', 'potential_name', 'scaling', 'species_count', 'potential_tag', 'radial_basis_type',
                         'min_dist', 'max_dist', 'radial_basis_size', 'radial_funcs_count']
    assert fixed.index('radial_funcs_count') < fixed.index('radial_coeffs')


def test_fix_motep_layout_of_an_mlip2_file_keeps_its_values():
    text = MLIP2_TRAINED.read_text()
    assert_same_mtp(read_mtp(fix_motep_layout(text)), read_mtp(text))
    assert fix_motep_layout(fix_motep_layout(text)) == fix_motep_layout(text)


# ----------------------------------------------------------------------------------------- writer


@pytest.mark.parametrize('path', TRAINED + (AS_WRITTEN, *TEMPLATES[:6]), ids=lambda p: p.name)
def test_write_read_round_trip_is_exact(path, tmp_path):
    mtp = read_mtp(path)
    out = tmp_path / 'out.mtp'
    write_mtp(mtp, out)
    data = out.read_bytes()
    assert b'\r' not in data and data.endswith(b'\n')
    again = read_mtp(out)
    assert_same_mtp(again, mtp)
    assert format_mtp(again) == data.decode()
    # handles, text and binary
    text_handle, binary_handle = io.StringIO(), io.BytesIO()
    write_mtp(mtp, text_handle)
    write_mtp(mtp, binary_handle)
    assert text_handle.getvalue().encode() == binary_handle.getvalue() == data


def test_writer_uses_full_precision_and_mlip2_tokens():
    text = format_mtp(read_mtp(BFGS))
    lines = text.splitlines()
    assert lines[:2] == ['MTP', 'version = 1.1.0']
    assert '\tmin_dist = 2.0' in lines and '\tradial_funcs_count = 2' in lines and '\tradial_coeffs' in lines
    assert lines[lines.index('\tradial_coeffs') + 1] == '\t\t0-0'
    assert lines[lines.index('\t\t0-0') + 1].startswith('\t\t\t{-0.008942534086434743, ')
    assert 'potential_tag = ' in lines
    assert lines[-1].startswith('moment_coeffs = {-7.24950619325977, ')


def test_untrained_potential_is_written_without_coefficients():
    text = format_mtp(initial_potential(4, 2, 1.8, 5.5, radial_basis_size=6))
    assert 'radial_coeffs' not in text and 'species_coeffs' not in text and 'scaling' not in text
    assert 'alpha_index_times = {{0, 0, 1, 1}}' in text
    assert check_mlip2_layout(text) == []


def test_writer_refuses_inconsistent_data():
    mtp = read_mtp(BFGS)
    mtp.species_coeffs = np.array([1.0, 2.0])
    with pytest.raises(FormatError, match='species_coeffs'):
        format_mtp(mtp)


# ----------------------------------------------------------------------------------------- liberal reader


def test_crlf_tabs_spaces_and_wrapped_lists_are_read():
    text = BFGS.read_text()
    variant = text.replace('\t', '   ').replace(', ', ',\n      ', 5).replace('\n', '\r\n')
    variant = variant.replace('alpha_index_times = {{', 'alpha_index_times = {\r\n  {')
    assert_same_mtp(read_mtp(variant), read_mtp(text))
    assert_same_mtp(read_mtp(text.replace('\n', '\r\n')), read_mtp(text))
    assert check_mlip2_layout(text.replace('\n', '\r\n')) == []  # mlip-2 strips the CR itself
    assert_same_mtp(read_mtp(text.encode()), read_mtp(text))
    assert_same_mtp(read_mtp(io.StringIO(text)), read_mtp(text))
    assert_same_mtp(read_mtp(str(BFGS)), read_mtp(text))


@pytest.mark.parametrize('edit, field', [
    (('MTP\n', 'MPT\n'), 'MTP'),
    (('alpha_index_basic_count = 11', 'alpha_index_basic_count = 12'), 'alpha_index_basic_count'),
    (('alpha_scalar_moments = 9', 'alpha_scalar_moments = 8'), 'alpha_scalar_moments'),
    (('species_count = 1', 'species_count = one'), 'species_count'),
    (('\tmin_dist = 2.000000000000000e+00\n', ''), 'min_dist'),
    (('{0, 0, 1, 11}', '{0, 0, 11}'), 'alpha_index_times'),
    (('species_coeffs = {', 'species_coefs = {'), 'species_coefs'),
    (('\t\t\t{-8.942534086434743e-03, ', '\t\t\t{nan, '), 'radial_coeffs'),
])
def test_read_mtp_refuses_broken_content_naming_the_field(edit, field):
    text = BFGS.read_text().replace(*edit, 1)
    with pytest.raises(FormatError, match=field):
        read_mtp(text)


# ----------------------------------------------------------------------------------------- layout check


@pytest.mark.parametrize('edit, field', [
    (('version = 1.1.0', 'version = 1.0.0'), 'version'),
    (('alpha_index_basic_count = 11', 'alpha_index_basic_count = 10'), 'alpha_index_basic_count'),
    (('alpha_index_times_count = 14', 'alpha_index_times_count = 15'), 'alpha_index_times_count'),
    (('alpha_scalar_moments = 9', 'alpha_scalar_moments = 10'), 'alpha_scalar_moments'),
    (('alpha_moments_count = 18', 'alpha_moments_count = 17'), 'alpha_moments_count = 17'),
    (('species_count = 1', 'species_count = 2'), 'radial_coeffs'),
    (('species_coeffs = {-3.922767299686902e+00}', 'species_coeffs = {-3.9, 1.0}'), 'species_coeffs'),
    (('moment_coeffs = {', 'moment_coeffs = {1.0, '), 'moment_coeffs'),
    (('\tmin_dist = 2.000000000000000e+00', '\tmin_dist = 5.000000000000000e+00'), 'min_dist'),
    (('radial_basis_size = 8', 'radial_basis_size = 7'), 'radial_basis_size'),
    (('radial_funcs_count = 2', 'radial_funcs_count = 3'), 'radial_funcs_count'),
    (('species_count = 1', 'species_count=1'), 'species_count'),
    (('alpha_index_basic = {{', 'alpha_index_basic ={{'), 'alpha_index_basic'),
    (('potential_name = MTP1m', 'potential_name = my MTP'), 'potential_name'),
    (('radial_basis_type = RBChebyshev', 'radial_basis_type = RBFourier'), 'radial_basis_type'),
    (('scaling = 1.000000000000000e+00\nspecies_count = 1', 'species_count = 1\nscaling = 1.000000000000000e+00'),
     'scaling must come before species_count'),
])
def test_layout_check_names_the_problem(edit, field):
    text = BFGS.read_text()
    assert text.count(edit[0]) >= 1
    problems = check_mlip2_layout(text.replace(*edit, 1))
    assert problems, edit
    assert any(field in problem for problem in problems), problems


def test_layout_check_of_a_missing_radial_row_and_a_missing_block():
    text = BFGS.read_text()
    lines = text.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith('\t\t\t{'))
    problems = check_mlip2_layout(''.join(lines[:row] + lines[row + 1:]))
    assert any('radial_coeffs' in p and 'radial_funcs_count=2 rows' in p for p in problems), problems
    problems = check_mlip2_layout(text.replace('\t\t0-0', '\t\t0-1'))
    assert any('radial_coeffs' in p and '0-0' in p for p in problems), problems


def test_layout_check_of_a_key_out_of_order():
    text = BFGS.read_text()
    lines = text.splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if line.startswith('alpha_index_times_count'))
    j = next(k for k, line in enumerate(lines) if line.startswith('alpha_index_basic ='))
    lines[i], lines[j] = lines[j], lines[i]
    problems = check_mlip2_layout(''.join(lines))
    assert problems[0].startswith('alpha_index_basic: expected at line'), problems


def test_layout_check_of_a_truncated_file():
    text = BFGS.read_text()
    problems = check_mlip2_layout(text[:text.index('alpha_scalar_moments')])
    assert problems and 'alpha_scalar_moments' in problems[0]


def test_layout_check_accepts_a_path_and_a_handle():
    assert check_mlip2_layout(BFGS) == [] == check_mlip2_layout(io.StringIO(BFGS.read_text()))


# ----------------------------------------------------------------------------------------- initial potential


def test_initial_potential_three_species_level_08():
    mtp = initial_potential(8, 3, 1.9, 5.2)
    assert (mtp.species_count, mtp.min_dist, mtp.max_dist, mtp.radial_basis_size) == (3, 1.9, 5.2, 8)
    assert parameter_count(mtp) == 9 + 3 + 9 * 2 * 8 == 156
    assert level_of(mtp) == 8 and not mtp.is_trained
    text = format_mtp(mtp)
    assert check_mlip2_layout(text) == []
    assert '\tmin_dist = 1.9' in text and 'species_count = 3' in text
    assert parameter_count(initial_potential('08', 3, 1.9, 5.2, radial_basis_size=10)) == 9 + 3 + 9 * 2 * 10


def test_initial_potential_does_not_change_the_template():
    before = hashlib.sha256((TEMPLATE_DIR / '08.mtp').read_bytes()).hexdigest()
    initial_potential(8, 2, 1.0, 4.0)
    assert hashlib.sha256((TEMPLATE_DIR / '08.mtp').read_bytes()).hexdigest() == before


@pytest.mark.parametrize('args, field', [
    ((22, 1, 2.0, 5.0), 'level'),
    ((7, 1, 2.0, 5.0), 'level'),
    (('x', 1, 2.0, 5.0), 'level'),
    ((8, 0, 2.0, 5.0), 'species_count'),
    ((8, 1.5, 2.0, 5.0), 'species_count'),
    ((8, 1, 5.0, 5.0), 'min_dist'),
    ((8, 1, 6.0, 5.0), 'min_dist'),
    ((8, 1, 0.0, 5.0), 'min_dist'),
    ((8, 1, -1.0, 5.0), 'min_dist'),
    ((8, 1, 2.0, -5.0), 'max_dist'),
    ((8, 1, 2.0, float('inf')), 'max_dist'),
    ((8, 1, 2.0, 5.0, 0), 'radial_basis_size'),
])
def test_initial_potential_refuses_bad_arguments_naming_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        initial_potential(*args)


def test_unknown_level_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        initial_potential(24, 1, 2.0, 5.0)
    assert '02, 04, 06, 08, 10, 12, 14, 16, 18, 20' in str(info.value)


# ----------------------------------------------------------------------------------------- motep


@pytest.fixture(scope='module')
def motep_mtp():
    pytest.importorskip('motep')
    from motep.calculator import MTP
    from motep.io.mlip.mtp import read_mtp as motep_read_mtp

    def load(path, species):
        data = motep_read_mtp(path)
        data.species = species  # motep maps atomic numbers to types through this; it also sets species_count
        return data, MTP

    return load


def cu_cell():
    from ase.build import bulk

    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True) * (2, 2, 1)
    atoms.rattle(0.05, seed=3)
    return atoms


def test_fixed_file_loads_in_motep_and_gives_the_same_efs(motep_mtp, tmp_path):
    fixed = tmp_path / 'fixed.mtp'
    fixed.write_text(fix_motep_layout(AS_WRITTEN.read_text()))
    results = {}
    for name, path in (('fixed', fixed), ('lbfgsb', LBFGSB), ('bfgs', BFGS)):
        data, calculator = motep_mtp(path, [29])
        atoms = cu_cell()
        atoms.calc = calculator(data, engine='cext')
        results[name] = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
    for a, b in zip(results['fixed'], results['lbfgsb'], strict=True):
        assert np.array_equal(a, b)
    # the better-converged BFGS fit of the same data agrees to about a meV per atom
    assert abs(results['fixed'][0] - results['bfgs'][0]) / len(cu_cell()) < 2e-3


def test_fixed_file_energy_is_close_to_the_emt_reference(motep_mtp, tmp_path):
    from ase.calculators.emt import EMT

    fixed = tmp_path / 'fixed.mtp'
    fixed.write_text(fix_motep_layout(AS_WRITTEN.read_text()))
    atoms = cu_cell()
    atoms.calc = EMT()
    reference = atoms.get_potential_energy()
    for path in (fixed, BFGS):
        data, calculator = motep_mtp(path, [29])
        atoms = cu_cell()
        atoms.calc = calculator(data, engine='cext')
        assert abs(atoms.get_potential_energy() - reference) / len(atoms) < 2e-3


def test_initial_potential_loads_in_motep(motep_mtp, tmp_path):
    path = tmp_path / 'init.mtp'
    write_mtp(initial_potential(8, 3, 1.5, 5.0), path)
    data, calculator = motep_mtp(path, [29, 13, 8])
    assert data.species_count == 3 and data.radial_basis.size == 8
    assert (data.radial_basis.min, data.radial_basis.max) == (1.5, 5.0)
    data.initialize(np.random.default_rng(0))
    assert data.number_of_parameters_optimized == 156
    atoms = cu_cell()
    atoms.numbers[:2] = [13, 8]
    atoms.calc = calculator(data, engine='cext')
    assert np.isfinite(atoms.get_potential_energy())
