"""``aiida-mlcampaign campaign validate``: schema only (no profile) and the preflight against a real profile."""

import io
import pathlib
import sys
import time

import pytest
from click.testing import CliRunner

from aiida_mlcampaign.campaign import load_config
from aiida_mlcampaign.cli import cli

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / 'examples'
QUICKSTART = EXAMPLES / 'quickstart.yaml'

#: The quickstart example's codes on localhost: (label, default plugin).
CODES = (('pw', 'quantumespresso.pw'), ('motep', 'mlcampaign.motep.train'), ('neppo', 'mlcampaign.nep.train'),
         ('mlcampaign-explore', 'mlcampaign.mtp.explore'), ('mlcampaign-md', None))


def invoke(*args):
    return CliRunner().invoke(cli, ['campaign', 'validate', *map(str, args)], catch_exceptions=False)


def line_of(text: str, fragment: str) -> int:
    (line,) = [number for number, content in enumerate(text.splitlines(), 1) if fragment in content]
    return line


# ----------------------------------------------------------------------------------------------- no profile
@pytest.mark.parametrize('name', ['quickstart', 'cu7ps6-laptop', 'cu7ps6-paper'])
def test_examples_validate_and_print_the_plan(name):
    result = invoke(EXAMPLES / f'{name}.yaml')
    assert result.exit_code == 0, result.output
    assert 'config OK' in result.output
    for word in ('stage', 'DFT calls', 'core-h', 'GPU-h', 'seed', 'total'):
        assert word in result.output


def test_a_broken_file_exits_1_naming_path_and_line(tmp_path):
    text = QUICKSTART.read_text().replace('      level: 6', '      level: 7')
    file = tmp_path / 'campaign.yaml'
    file.write_text(text)
    result = invoke(file)
    assert result.exit_code == 1
    expected = (f'{file}:{line_of(text, "level: 7")}: stages.active_learning.mtp.level: must be an even number '
                'from 2 to 20')
    assert expected in result.output
    assert 'config OK' not in result.output


def test_campaign_group_is_registered():
    result = CliRunner().invoke(cli, ['campaign', '--help'])
    assert result.exit_code == 0 and 'validate' in result.output


def test_thermostats_are_those_of_dft_aimd():
    from aiida_mlcampaign.campaign.config import THERMOSTATS
    from aiida_mlcampaign.workchains.dft_aimd import THERMOSTATS as ACCEPTED

    assert THERMOSTATS == ACCEPTED


def test_dft_override_keys_are_those_of_pw_base():
    from aiida.plugins import WorkflowFactory

    from aiida_mlcampaign.campaign.config import DFT_OVERRIDE_KEYS

    keys = set(WorkflowFactory('quantumespresso.pw.base').get_protocol_inputs('balanced'))
    assert set(DFT_OVERRIDE_KEYS) == keys - {'pseudo_family'}


# ------------------------------------------------------------------------------------------------ preflight
UPF = '<UPF version="2.0.1">\n<PP_HEADER element="{element}" z_valence="{z}.0" />\n</UPF>\n'


def make_family(label: str, elements: dict, stringency: str = 'low'):
    """A ``pseudo.family.cutoffs`` family of stand-in UPF files (the header is all aiida-pseudo reads)."""
    from aiida import orm
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    nodes = [UpfData(io.BytesIO(UPF.format(element=element, z=z).encode()), filename=f'{element}.upf').store()
             for element, z in elements.items()]
    family = CutoffsPseudoPotentialFamily(label=label).store()
    family.add_nodes(nodes)
    family.set_cutoffs({element: {'cutoff_wfc': 30.0, 'cutoff_rho': 240.0} for element in elements}, stringency,
                       unit='Ry')
    assert isinstance(orm.load_group(label), CutoffsPseudoPotentialFamily)
    return family


@pytest.fixture
def localhost_codes(aiida_profile_clean, aiida_localhost, aiida_code_installed):
    """The quickstart's codes on ``localhost``, each running this Python (a file that exists); deleted afterwards,
    because later tests in the same worker make the real ``pw@localhost`` and refuse a code of that label that runs
    another program."""
    from aiida.tools import delete_nodes

    codes = {label: aiida_code_installed(label=label, default_calc_job_plugin=plugin, computer=aiida_localhost,
                                         filepath_executable=sys.executable)
             for label, plugin in CODES}
    yield codes
    delete_nodes([code.pk for code in codes.values()], dry_run=False)


@pytest.fixture
def complete_family(localhost_codes):
    return make_family('PSL-US-1.0.0-PBE-mlcampaign', {'Cu': 11, 'P': 5, 'S': 6})


def quickstart_with(tmp_path, *replacements):
    text = QUICKSTART.read_text()
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    file = tmp_path / 'campaign.yaml'
    file.write_text(text)
    return file, text


def test_preflight_passes_on_a_ready_profile(complete_family, aiida_profile_clean):
    from aiida_mlcampaign.setup.campaign_preflight import preflight

    problems = preflight(load_config(QUICKSTART), aiida_profile_clean)
    assert [p for p in problems if p.severity == 'error'] == [], problems
    result = invoke(QUICKSTART, '-p', aiida_profile_clean.name)
    assert result.exit_code == 0, result.output
    assert 'config OK' in result.output and 'preflight' in result.output and 'total' in result.output


def test_missing_code(complete_family, aiida_profile_clean, tmp_path):
    file, text = quickstart_with(tmp_path, ('code: pw@localhost', 'code: pw@nowhere'))
    result = invoke(file, '-p', aiida_profile_clean.name)
    assert result.exit_code == 1
    assert f"{file}:{line_of(text, 'pw@nowhere')}: computers.dft.code: code 'pw@nowhere' not found" in result.output


def test_missing_pseudo_family_element(localhost_codes, aiida_profile_clean, tmp_path):
    make_family('cu-s-only', {'Cu': 11, 'S': 6})
    file, text = quickstart_with(tmp_path, ('dft:\n  protocol: fast', 'dft:\n  pseudo_family: cu-s-only\n'
                                                                       '  protocol: fast'))
    result = invoke(file, '-p', aiida_profile_clean.name)
    assert result.exit_code == 1
    assert (f"{file}:{line_of(text, 'cu-s-only')}: dft.pseudo_family: family 'cu-s-only' has no pseudopotential "
            'for P (it has Cu, S)') in result.output


def test_missing_family_and_missing_cutoffs(localhost_codes, aiida_profile_clean):
    from aiida_mlcampaign.setup.campaign_preflight import preflight

    def errors():
        return [p for p in preflight(config, aiida_profile_clean) if p.severity == 'error']

    config = load_config(QUICKSTART)
    (problem,) = errors()
    assert problem.path == 'dft.pseudo_family' and 'no pseudopotential family' in problem.message
    make_family('PSL-US-1.0.0-PBE-mlcampaign', {'Cu': 11, 'P': 5, 'S': 6}, stringency='high')
    (problem,) = errors()
    assert problem.path == 'dft.pseudo_family' and "stringency 'low'" in problem.message


def test_wrong_plugin_missing_executable_and_resources(complete_family, aiida_profile_clean, aiida_localhost,
                                                       aiida_code_installed, tmp_path):
    from aiida_mlcampaign.setup.campaign_preflight import preflight

    aiida_code_installed(label='adder', default_calc_job_plugin='core.arithmetic.add', computer=aiida_localhost)
    aiida_code_installed(label='gone', default_calc_job_plugin='mlcampaign.motep.train', computer=aiida_localhost,
                         filepath_executable='/nonexistent/motep')
    file, _ = quickstart_with(tmp_path, ('code: pw@localhost', 'code: adder@localhost'),
                              ('code: motep@localhost', 'code: gone@localhost\n    num_machines: 2'))
    problems = {p.path: p for p in preflight(load_config(file), aiida_profile_clean)}
    assert "runs the plugin 'core.arithmetic.add'" in problems['computers.dft.code'].message
    assert '/nonexistent/motep, which does not exist on localhost' in problems['computers.mtp_train.code'].message
    assert problems['computers.mtp_train.num_machines'].line is not None
    assert 'on one machine' in problems['computers.mtp_train.num_machines'].message


def test_dft_overrides_go_through_the_label_builder(complete_family, aiida_profile_clean, tmp_path):
    from aiida_mlcampaign.setup.campaign_preflight import preflight

    file, text = quickstart_with(tmp_path, ('    kpoints_distance: 1.5 ', '    max_iterations: many\n'
                                                                      '    kpoints_distance: 1.5 '))
    problems = [p for p in preflight(load_config(file), aiida_profile_clean) if p.severity == 'error']
    assert [(p.path, p.line) for p in problems] == [('dft.overrides', line_of(text, 'overrides:'))], problems
    assert 'mlcampaign.dft.label refuses them' in problems[0].message


def test_transport_that_hangs_is_reported_within_the_timeout():
    from aiida_mlcampaign.setup.campaign_preflight import _open_transport

    class Hanging:
        def __enter__(self):
            time.sleep(5)

        def __exit__(self, *exc):
            return False

    start = time.monotonic()
    error, missing = _open_transport(Hanging(), {}, timeout=0.2)
    assert error == 'no answer within 0.2 s' and missing == {}
    assert time.monotonic() - start < 2
