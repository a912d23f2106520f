"""One exit-code table for every CalcJob of the plugin, option defaults, and exit codes filled by label."""

import pytest
from aiida.engine import CalcJob
from aiida.plugins import CalculationFactory
from aiida.plugins.entry_point import get_entry_point_names

from aiida_mlcampaign.calculations.base import EXIT_CODES, PluginCalcJob

CALCJOBS = sorted(name for name in get_entry_point_names('aiida.calculations') if name.startswith('mlcampaign.')
                  and isinstance(CalculationFactory(name), type) and issubclass(CalculationFactory(name), CalcJob))
CORE = CalcJob.spec().exit_codes


def test_there_are_calcjobs_to_check():
    assert len(CALCJOBS) >= 12, CALCJOBS


@pytest.mark.parametrize('name', CALCJOBS)
def test_every_calcjob_shares_the_table(name):
    process = CalculationFactory(name)
    assert issubclass(process, PluginCalcJob)
    codes = process.spec().exit_codes
    for status, label, _, invalidates_cache in EXIT_CODES:
        assert codes[label].status == status and codes[label].invalidates_cache == invalidates_cache
    for label, code in codes.items():
        if label in CORE:  # aiida-core's own labels keep aiida-core's numbers: never shadowed
            assert code.status == CORE[label].status, label
        elif label not in {entry[1] for entry in EXIT_CODES}:  # a CalcJob's own: 310s input or 500s science
            assert 312 <= code.status < 320 or 500 <= code.status < 600, (label, code.status)
    by_status = {}
    for label, code in codes.items():
        by_status.setdefault(code.status, []).append(label)
    assert all(len(labels) == 1 for labels in by_status.values()), by_status


@pytest.mark.parametrize('name', CALCJOBS)
def test_option_defaults_are_set_on_aiida_core_ports(name):
    options = CalculationFactory(name).spec().inputs['metadata']['options']
    assert options['resources'].default['num_machines'] == 1 and not options['resources'].required
    assert options['withmpi'].default is False
    assert options['parser_name'].default.startswith('mlcampaign.')


def test_exit_fills_the_placeholders_a_parser_leaves_out():
    from aiida_mlcampaign.parsers.base import PluginParser

    class Stub(PluginParser):
        def __init__(self):  # no node: only the exit code table is used
            pass

        def parse(self, **kwargs):
            return None

        exit_codes = CalculationFactory('mlcampaign.motep.train').exit_codes

    parser = Stub()
    assert parser.exit('ERROR_MISSING_OUTPUT_FILE', filename='final.mtp').message == 'The run did not write final.mtp.'
    assert parser.exit('ERROR_NONZERO_EXIT_STATUS', status=2, detail='; boom').message == \
        'The executable exited with status 2; boom.'
    assert parser.exit('ERROR_NOT_CONVERGED', max_iter=5).status == 410
    assert parser.exit('ERROR_SCHEDULER_OUT_OF_WALLTIME').status == 120
