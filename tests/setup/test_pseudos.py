"""Tests for ``aiida_mlcampaign.setup.pseudos``: ld1.x regeneration of pslibrary 1.0.0 US PPs and the AiiDA family.

Tests marked ``pw`` run the real ``ld1.x``. Without it they are skipped, except under ``CI=true`` where a missing
``ld1.x`` fails them (see :func:`require_ld1`). All generated files go to pytest's temporary directories.
"""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from aiida_mlcampaign.setup import pseudo_cache as generation
from aiida_mlcampaign.setup import pseudos

LD1 = 'ld1.x'
SMALL_SET = ('Cu', 'P', 'S')


def require_ld1(executable: str = LD1) -> str:
    """Return the path of ``executable``; skip the test if it is missing, or fail it when ``CI=true``."""
    path = shutil.which(executable)
    if path is not None:
        return path
    message = f'{executable} (Quantum ESPRESSO) is not installed'
    if os.environ.get('CI', '').strip().lower() == 'true':
        pytest.fail(f'{message}, and CI=true requires it')
    pytest.skip(message)


@pytest.fixture(scope='session')
def ld1x():
    return require_ld1()


@pytest.fixture(scope='session')
def pseudo_cache(tmp_path_factory):
    """One cache directory for the session, so every element is generated once."""
    return tmp_path_factory.mktemp('pseudo-cache')


@pytest.fixture(scope='session')
def small_set(ld1x, pseudo_cache):
    return pseudos.build_pseudopotential_set(SMALL_SET, pseudo_cache, ld1_executable=ld1x)


class CountingRun:
    """Stand-in for ``subprocess.run`` that counts the ld1.x processes started."""

    def __init__(self):
        self.calls = []
        self._run = subprocess.run

    def __call__(self, args, *more, **kwargs):
        self.calls.append(args)
        return self._run(args, *more, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# No ld1.x needed


def test_require_ld1_fails_under_ci_and_skips_otherwise(monkeypatch):
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='CI=true'):
        require_ld1('no-such-ld1.x')
    monkeypatch.setenv('CI', 'false')
    with pytest.raises(pytest.skip.Exception):
        require_ld1('no-such-ld1.x')
    monkeypatch.delenv('CI')
    with pytest.raises(pytest.skip.Exception):
        require_ld1('no-such-ld1.x')


def test_available_elements_and_inputs():
    elements = pseudos.available_elements()
    assert elements == sorted(elements)
    assert set(elements) == {
        'Ag', 'Br', 'Cl', 'Cu', 'Ge', 'I', 'Li', 'Na', 'O', 'P', 'Pb', 'S', 'Se', 'Si', 'Sn', 'Te'
    }
    assert set(pseudos.load_cutoffs()) == set(elements)

    assert pseudos.available_variants('P') == ['n', 'nl']
    assert pseudos.ld1_inputs_for('P').variant == 'n'
    assert pseudos.ld1_inputs_for('S').variant == 'n'
    assert pseudos.ld1_inputs_for('Pb').variant == 'dn'  # the only variant shipped: pslibrary's PP_list choice
    assert pseudos.ld1_inputs_for('Te').variant == 'n'
    assert pseudos.ld1_inputs_for('S', 'nl').generation.name == 'S.pbe-nl-rrkjus_psl.1.0.0.in'
    generation, test = pseudos.ld1_inputs_for('Cu')
    assert generation.name == 'Cu.pbe-dn-rrkjus_psl.1.0.0.in'
    assert test.name == 'Cu.pbe-dn-rrkjus_psl.1.0.0.test.in'
    assert generation.is_file() and test.is_file()
    assert 'iswitch=2' in test.read_text()


def test_unsupported_element_lists_supported_ones():
    with pytest.raises(pseudos.UnsupportedElementError) as excinfo:
        pseudos.ld1_inputs_for('Xe')
    assert isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    assert 'Xe' in message
    for element in pseudos.available_elements():
        assert element in message

    with pytest.raises(pseudos.UnsupportedElementError, match='available variants: n, nl'):
        pseudos.ld1_inputs_for('P', 'spn')
    # rejected before anything runs, even without ld1.x
    with pytest.raises(pseudos.UnsupportedElementError, match='Cu, Ge'):
        pseudos.build_pseudopotential_set(['Cu', 'Xe'], ld1_executable='no-such-ld1.x')


def test_missing_ld1_executable(tmp_path):
    with pytest.raises(pseudos.Ld1NotFoundError, match='no-such-ld1.x'):
        pseudos.generate_pseudopotential('P', tmp_path, ld1_executable='no-such-ld1.x')


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert pseudos.default_cache_dir() == tmp_path / 'aiida-mlcampaign' / 'pseudos'
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert pseudos.default_cache_dir() == tmp_path / 'home' / '.cache' / 'aiida-mlcampaign' / 'pseudos'


def test_family_cutoffs_stringencies():
    cutoffs = pseudos.family_cutoffs(pseudos.load_cutoffs())
    assert set(cutoffs) == {'low', 'normal', 'high'}
    assert cutoffs['normal']['Cu'] == {'cutoff_wfc': 45.0, 'cutoff_rho': 360.0}
    assert cutoffs['low']['Cu'] == {'cutoff_wfc': 25.0, 'cutoff_rho': 200.0}  # 0.6 * 45 = 27 -> 25
    assert cutoffs['low']['P'] == {'cutoff_wfc': 20.0, 'cutoff_rho': 160.0}  # 0.6 * 35 = 21 -> 20
    assert cutoffs['low']['Ge'] == {'cutoff_wfc': 20.0, 'cutoff_rho': 160.0}  # floor of 20 Ry
    assert cutoffs['low']['Na'] == {'cutoff_wfc': 40.0, 'cutoff_rho': 320.0}  # 0.6 * 70 = 42 -> 40
    assert cutoffs['high']['S'] == {'cutoff_wfc': 50.0, 'cutoff_rho': 400.0}
    assert cutoffs['normal']['Pb'] == {'cutoff_wfc': 50.0, 'cutoff_rho': 400.0}  # ld1.x suggests 46 Ry
    assert cutoffs['normal']['Te'] == {'cutoff_wfc': 35.0, 'cutoff_rho': 280.0}  # ld1.x suggests 32 Ry
    for stringency in cutoffs.values():
        for values in stringency.values():
            assert values['cutoff_rho'] == 8 * values['cutoff_wfc']


def test_output_checks_and_parsers():
    clean = '     final scf error:  8.1E-15 reached in  38 iterations\n'
    pseudos._check_output(clean, 'X', 'generation', None, 0)
    for bad in ('     Warning: convergence not achieved\n', '     BEWARE! Errors in PS-KS equations\n'):
        with pytest.raises(pseudos.Ld1RunError, match='X'):
            pseudos._check_output(clean + bad, 'X', 'test', None, 0)
    crash = ' %%%%\n     Error in routine read_psconfig (1):\n     rcut or rcutus is wrong\n %%%%\n'
    with pytest.raises(pseudos.Ld1RunError, match=r'read_psconfig \(1\): rcut or rcutus is wrong'):
        pseudos._check_output(crash, 'X', 'generation', None, 1)

    with pytest.raises(ValueError, match='Delta E'):
        pseudos.parse_transferability('no results here')

    upf = 'Generation date: 23Nov2026\n<PP_HEADER date="23Nov2026" z_valence="5.0"/>\n'
    other_day = upf.replace('23Nov2026', '01Jan2027')
    assert pseudos._upf_fingerprint(upf.encode()) == pseudos._upf_fingerprint(other_day.encode())
    assert pseudos._upf_fingerprint(upf.encode()) != pseudos._upf_fingerprint(upf.replace('5.0', '6.0').encode())


# ---------------------------------------------------------------------------------------------------------------
# Real ld1.x


@pytest.mark.pw
def test_small_set_generation_and_transferability(small_set):
    assert small_set.elements == ['Cu', 'P', 'S']
    expected = {
        # element: (variant, z_valence, suggested ecutwfc/ecutrho from the UPF header, README worst |dE| in Ry)
        'Cu': ('dn', 11, 45.0, 236.0, 0.0039),
        'P': ('n', 5, 34.0, 171.0, 0.00048),
        'S': ('n', 6, 39.0, 181.0, 0.00049),
    }
    for element, (variant, z_valence, wfc, rho, worst) in expected.items():
        result = small_set.pseudos[element]
        assert result.element == element
        assert result.variant == variant
        assert result.z_valence == z_valence
        assert (result.suggested_ecutwfc_ry, result.suggested_ecutrho_ry) == (wfc, rho)
        assert len(result.tests) == 4  # nconf=5: four configurations against the first
        assert result.max_delta_e_ry == max(abs(test.delta_e_ry) for test in result.tests)
        assert result.max_delta_e_ry < pseudos.DEFAULT_THRESHOLD_RY
        assert result.max_delta_e_ry == pytest.approx(worst, abs=2e-4)
        for test in result.tests:
            assert test.delta_e_ry == pytest.approx(test.delta_etot_ae_ry - test.delta_etot_ps_ry, abs=2e-6)
        assert result.path.parent == small_set.folder
        assert result.md5 == hashlib.md5(result.path.read_bytes()).hexdigest()
        assert result.ld1_version.startswith('LD1 v.')
    assert small_set.pseudos['Cu'].tests[1].configuration == '4s2 4p0 3d9'
    assert small_set.cutoffs['Cu'] == {'cutoff_wfc': 45.0, 'cutoff_rho': 360.0}


@pytest.mark.pw
def test_pb_te_generation_and_transferability(ld1x, pseudo_cache):
    # same session cache as the family test below, which then reuses these two elements instead of regenerating them
    pb_te = pseudos.build_pseudopotential_set(['Pb', 'Te'], pseudo_cache, ld1_executable=ld1x)
    expected = {
        # element: (variant, z_valence, suggested ecutwfc/ecutrho, README worst |dE| in Ry, its configuration)
        'Pb': ('dn', 14, 46.0, 211.0, 0.00078, '5d10. 6s2 6p0 6d0'),
        'Te': ('n', 6, 32.0, 151.0, 0.00029, '5s2 5p3 5d0'),
    }
    for element, (variant, z_valence, wfc, rho, worst, configuration) in expected.items():
        result = pb_te.pseudos[element]
        assert (result.variant, result.z_valence) == (variant, z_valence)
        assert (result.suggested_ecutwfc_ry, result.suggested_ecutrho_ry) == (wfc, rho)
        assert len(result.tests) == 4
        assert result.max_delta_e_ry == pytest.approx(worst, abs=1e-4)
        assert max(result.tests, key=lambda test: abs(test.delta_e_ry)).configuration == configuration
    assert pb_te.cutoffs == {
        'Pb': {'cutoff_wfc': 50.0, 'cutoff_rho': 400.0}, 'Te': {'cutoff_wfc': 35.0, 'cutoff_rho': 280.0}
    }


@pytest.mark.pw
def test_set_folder_is_flat_and_report_written(small_set):
    files = sorted(path.name for path in small_set.folder.iterdir())
    assert files == sorted(result.filename for result in small_set.pseudos.values())
    assert all((small_set.folder / name).is_file() for name in files)
    assert len({name.split('.')[0] for name in files}) == len(files) == 3

    report = json.loads(small_set.report_path.read_text())
    assert report['ld1_version'] == small_set.ld1_version
    assert report['cache_key'] == small_set.cache_key
    assert set(report['elements']) == set(SMALL_SET)
    assert report['elements']['Cu']['max_delta_e_ry'] == small_set.pseudos['Cu'].max_delta_e_ry
    assert len(report['elements']['P']['tests']) == 4
    assert report['cutoffs_ry']['S'] == {'cutoff_wfc': 40.0, 'cutoff_rho': 320.0}


@pytest.mark.pw
def test_cached_call_does_not_run_ld1(ld1x, small_set, pseudo_cache, monkeypatch):
    counter = CountingRun()
    monkeypatch.setattr(generation.subprocess, 'run', counter)
    mtimes = {path: path.stat().st_mtime_ns for path in small_set.folder.iterdir()}
    pseudos._VERSION_MEMO.clear()  # as in a new process: the version probe must come from the cache directory

    again = pseudos.build_pseudopotential_set(SMALL_SET, pseudo_cache, ld1_executable=ld1x)

    assert counter.calls == []
    assert again.from_cache
    assert again.folder == small_set.folder
    assert again.md5s == small_set.md5s
    assert {path: path.stat().st_mtime_ns for path in again.folder.iterdir()} == mtimes


@pytest.mark.pw
def test_fresh_cache_runs_ld1_once_then_never(ld1x, tmp_path, monkeypatch):
    counter = CountingRun()
    monkeypatch.setattr(generation.subprocess, 'run', counter)
    pseudos._VERSION_MEMO.clear()

    # P-nl: a variant that no other test generates
    first = pseudos.build_pseudopotential_set(['P'], tmp_path / 'cache', variants={'P': 'nl'}, ld1_executable=ld1x)
    assert not first.from_cache
    assert len(counter.calls) == 3  # version probe, generation, test
    assert first.pseudos['P'].filename == 'P.pbe-nl-rrkjus_psl.1.0.0.UPF'
    assert first.pseudos['P'].max_delta_e_ry == pytest.approx(0.00049, abs=2e-4)
    counter.calls.clear()
    pseudos._VERSION_MEMO.clear()  # as in a new process
    mtime = first.pseudos['P'].path.stat().st_mtime_ns

    second = pseudos.build_pseudopotential_set(['P'], tmp_path / 'cache', variants={'P': 'nl'}, ld1_executable=ld1x)
    assert counter.calls == []
    assert second.from_cache and second.md5s == first.md5s
    assert second.pseudos['P'].path.stat().st_mtime_ns == mtime


@pytest.mark.pw
def test_threshold_fails_loudly(ld1x, small_set, pseudo_cache, tmp_path):
    with pytest.raises(pseudos.PseudopotentialTestError) as excinfo:
        pseudos.generate_pseudopotential('P', tmp_path, ld1x, threshold_ry=1e-4)
    error = excinfo.value
    assert error.element == 'P'
    assert error.threshold_ry == 1e-4
    assert error.value_ry == pytest.approx(0.000479, abs=2e-5)
    assert 'P: max |Delta E(AE-PS)| = 0.479 mRy' in str(error) and '0.100 mRy' in str(error)

    # the threshold also applies to cached results (Cu's worst configuration is 3d9 4s2, 3.9 mRy)
    with pytest.raises(pseudos.PseudopotentialTestError, match="Cu: .*'4s2 4p0 3d9'.* 3.000 mRy"):
        pseudos.build_pseudopotential_set(SMALL_SET, pseudo_cache, ld1_executable=ld1x, threshold_ry=0.003)


@pytest.mark.pw
@pytest.mark.parametrize(
    ('bad_radius', 'message'),
    [('9.00', 'rcut or rcutus is wrong'), ('-1.30', 'problem finding q')],
)
def test_corrupted_input_raises_clear_error(ld1x, tmp_path, bad_radius, message):
    good = pseudos.ld1_inputs_for('Cu')
    source = tmp_path / 'inputs'
    source.mkdir()
    text = good.generation.read_text()
    assert '1.30  2.10' in text
    (source / good.generation.name).write_text(text.replace('1.30  2.10', f'{bad_radius}  2.10'))
    shutil.copy(good.test, source / good.test.name)
    inputs = pseudos.Ld1Inputs('Cu', 'dn', source / good.generation.name, source / good.test.name)

    with pytest.raises(pseudos.Ld1RunError) as excinfo:
        pseudos.generate_pseudopotential('Cu', tmp_path / 'run', ld1x, inputs=inputs)
    error = excinfo.value
    assert error.element == 'Cu' and error.stage == 'generation'
    assert message in str(error)
    assert 'ld1.x generation run for Cu failed' in str(error)
    assert error.output_path is not None and error.output_path.is_file()
    assert not (tmp_path / 'run' / 'Cu.pbe-dn-rrkjus_psl.1.0.0.UPF').exists()


@pytest.mark.pw
def test_install_pseudo_family(aiida_profile_clean, ld1x, pseudo_cache):
    from aiida import orm
    from aiida.plugins import DataFactory, GroupFactory

    cutoffs_family_cls = GroupFactory('pseudo.family.cutoffs')
    upf_cls = DataFactory('pseudo.upf')

    family = pseudos.install_pseudo_family(cache_dir=pseudo_cache, ld1_executable=ld1x)
    assert isinstance(family, cutoffs_family_cls)
    assert family.label == pseudos.DEFAULT_FAMILY_LABEL == 'PSL-US-1.0.0-PBE-mlcampaign'
    assert sorted(family.elements) == pseudos.available_elements()
    assert 'pslibrary 1.0.0' in family.description and 'ld1.x' in family.description

    assert family.get_default_stringency() == 'normal'
    assert set(family.get_cutoff_stringencies()) == {'low', 'normal', 'high'}
    assert family.get_recommended_cutoffs(elements=('Cu', 'P', 'S'), unit='Ry') == (45.0, 360.0)
    assert family.get_recommended_cutoffs(elements=('Cu', 'P', 'S'), stringency='low', unit='Ry') == (25.0, 200.0)
    assert family.get_recommended_cutoffs(elements=('Cu', 'P', 'S'), stringency='high', unit='Ry') == (55.0, 440.0)
    assert family.get_recommended_cutoffs(elements=('Pb', 'Te'), unit='Ry') == (50.0, 400.0)
    assert family.get_pseudo('Pb').z_valence == 14

    sulfur = family.get_pseudo('S')
    assert isinstance(sulfur, upf_cls)
    assert sulfur.element == 'S'
    assert sulfur.z_valence == 6
    assert sulfur.filename == 'S.pbe-n-rrkjus_psl.1.0.0.UPF'

    again = pseudos.install_pseudo_family(cache_dir=pseudo_cache, ld1_executable=ld1x)
    assert again.pk == family.pk
    assert orm.QueryBuilder().append(orm.Group, filters={'label': family.label}).count() == 1

    # a subset family under another label reuses the same UpfData nodes
    subset = pseudos.install_pseudo_family('test-CuPS', SMALL_SET, pseudo_cache, ld1_executable=ld1x)
    assert sorted(subset.elements) == ['Cu', 'P', 'S']
    assert subset.get_pseudo('Cu').pk == family.get_pseudo('Cu').pk
    assert subset.get_recommended_cutoffs(elements=('Cu', 'P', 'S'), unit='Ry') == (45.0, 360.0)

    # asked again with no elements (``aiida-mlcampaign setup`` after a campaign made it): reused as it is
    assert pseudos.install_pseudo_family('test-CuPS', None, pseudo_cache, ld1_executable=ld1x).pk == subset.pk

    with pytest.raises(pseudos.PseudoFamilyConflictError, match='choose another label'):
        pseudos.install_pseudo_family('test-CuPS', ['Cu', 'P'], pseudo_cache, ld1_executable=ld1x)
    orm.Group(label='plain-group').store()
    with pytest.raises(pseudos.PseudoFamilyConflictError, match='not a pseudo.family.cutoffs'):
        pseudos.install_pseudo_family('plain-group', SMALL_SET, pseudo_cache, ld1_executable=ld1x)
