"""mlip-2 / LAMMPS-mlip CalcJobs and parsers without running anything (mlip-2 may not be installed or shipped).

Inputs: ``prepare_for_submission`` on a folder, every written file checked against the documented formats.
Parsers: ``Parser.parse_from_node`` on a CalcJobNode whose ``retrieved`` holds the hand-written samples of
``tests/fixtures/mlip2`` (see SOURCES.md there).
"""

import dataclasses
import functools
import io
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import CalculationFactory, ParserFactory
from aiida_mlcampaign.calculations.base import EXIT_STATUS_FILE, EXIT_STATUS_LINE
from aiida_mlcampaign.calculations.mlip2 import (
    LammpsMlipExploreCalculation,
    MlpCalcEfsCalculation,
    MlpCalcErrorsCalculation,
    MlpCalcGradeCalculation,
    MlpSelectAddCalculation,
    MlpTrainCalculation,
)
from aiida_mlcampaign.parsers.mlip2 import (
    LammpsMlipExploreParser,
    MlpCalcEfsParser,
    MlpCalcErrorsParser,
    MlpCalcGradeParser,
    MlpSelectAddParser,
    MlpTrainParser,
)

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.mlip2 import check_mlip_ini, read_lammps_log
from aiida_mlcampaign.formats.mlip_cfg import read_cfg, write_cfg
from aiida_mlcampaign.formats.mtp import format_mtp, initial_potential

SAMPLES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mlip2'
ORDER = ['Al', 'Cu']        # type order of the samples
SERIAL = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
ENTRY_POINTS = {
    'mlcampaign.mlp.train': (MlpTrainCalculation, MlpTrainParser),
    'mlcampaign.mlp.calc_efs': (MlpCalcEfsCalculation, MlpCalcEfsParser),
    'mlcampaign.mlp.calc_errors': (MlpCalcErrorsCalculation, MlpCalcErrorsParser),
    'mlcampaign.mlp.calc_grade': (MlpCalcGradeCalculation, MlpCalcGradeParser),
    'mlcampaign.mlp.select_add': (MlpSelectAddCalculation, MlpSelectAddParser),
    'mlcampaign.lammps.mlip_explore': (LammpsMlipExploreCalculation, LammpsMlipExploreParser),
}


@functools.cache
def trained_text(species_count: int, level: int = 6, seed: int = 5) -> str:
    """A 'trained' .mtp in mlip-2's layout: a shipped MIT template with random coefficients."""
    rng = np.random.default_rng(seed)
    mtp = initial_potential(level, species_count, min_dist=1.9, max_dist=5.0)
    shape = (mtp.radial_funcs_count, mtp.radial_basis_size)
    radial = {(i, j): rng.normal(0, 0.1, shape) for i in range(species_count) for j in range(species_count)}
    mtp = dataclasses.replace(mtp, radial_coeffs=radial, species_coeffs=rng.normal(-3, 0.1, species_count),
                              moment_coeffs=rng.normal(0, 0.1, len(mtp.alpha_moment_mapping)), scaling=0.42)
    return format_mtp(mtp)


def sample_frames(name: str, order=ORDER):
    return list(read_cfg(SAMPLES / name, order))


@pytest.fixture(scope='module')
def potential(aiida_profile):
    """Trained, species deliberately not in alphabetical order (Cu is type 0)."""
    return MtpPotentialData(trained_text(2), species=['Cu', 'Al'], filename='curr.mtp').store()


@pytest.fixture(scope='module')
def frames(aiida_profile):
    return TrainingSetData.from_frames(sample_frames('graded.cfg'), species=ORDER).store()


@pytest.fixture(scope='module')
def code(fake_code):
    return fake_code('mlp')


def metadata(**options):
    return {'options': {'resources': dict(SERIAL), **options}}


def raw_types(path: pathlib.Path) -> list[int]:
    """The ``type`` column of every AtomData row of a cfg file, as written."""
    types, in_atoms, left = [], False, 0
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        tokens = line.split()
        if tokens[:1] == ['Size']:
            left = int(lines[index + 1])
        elif tokens[:1] == ['AtomData:']:
            in_atoms = True
        elif in_atoms and left:
            types.append(int(tokens[1]))
            left -= 1
            in_atoms = left > 0
    return types


def test_entry_points_are_registered():
    for name, (calculation, parser) in ENTRY_POINTS.items():
        assert CalculationFactory(name) is calculation
        assert ParserFactory(name) is parser
        assert calculation.spec().inputs['metadata']['options']['parser_name'].default == name


def test_every_port_has_help():
    for calculation, _ in ENTRY_POINTS.values():
        spec = calculation.spec()
        for name, port in spec.inputs.items():
            if name not in ('metadata', 'code', 'monitors', 'remote_folder'):
                assert port.help, f'{calculation.__name__}.inputs.{name}'
        for name, port in spec.outputs.items():
            assert port.help, f'{calculation.__name__}.outputs.{name}'


# ----------------------------------------------------------------------------------------- prepare_for_submission


def check_common(calcinfo, folder, potential, stdout='mlp.out'):
    codeinfo = calcinfo.codes_info[0]
    assert codeinfo.stdout_name == stdout
    assert calcinfo.append_text == EXIT_STATUS_LINE == 'echo $? > exit_status.txt'
    assert EXIT_STATUS_FILE in calcinfo.retrieve_list and stdout in calcinfo.retrieve_list
    assert (folder / 'potential.mtp').read_text() == potential.get_content()
    return codeinfo.cmdline_params


def test_train_writes_command_potential_and_cfgs_in_potential_order(generate_calc_job, code, potential, frames):
    inputs = {
        'code': code, 'potential': potential, 'training_set': frames,
        'validation_set': TrainingSetData.from_frames(sample_frames('graded.cfg')[:2], species=ORDER),
        'options': orm.Dict({'max_iter': 300, 'update_mindist': True, 'init_params': 'same'}), 'metadata': metadata(),
    }
    calcinfo, folder, _ = generate_calc_job(MlpTrainCalculation, inputs)
    arguments = check_common(calcinfo, folder, potential)
    assert arguments == [
        'train', 'potential.mtp', 'training.cfg', '--energy-weight=1', '--force-weight=0.01',
        '--stress-weight=0.001', '--max-iter=300', '--init-params=same', '--update-mindist',
        '--valid-cfgs=validation.cfg', '--trained-pot-name=trained.mtp',
    ]
    assert 'trained.mtp' in calcinfo.retrieve_list
    written = list(read_cfg(folder / 'training.cfg', potential.species))
    original = list(frames.iter_frames())
    assert [f.symbols for f in written] == [f.symbols for f in original]
    np.testing.assert_allclose([f.energy for f in written], [f.energy for f in original])
    # the potential's order: Cu is type 0, Al type 1 (the training set itself is sorted Al, Cu)
    symbols = [s for f in original for s in f.symbols]
    assert raw_types(folder / 'training.cfg') == [{'Cu': 0, 'Al': 1}[s] for s in symbols]
    assert len(list(read_cfg(folder / 'validation.cfg', potential.species))) == 2


def test_train_defaults_without_options(generate_calc_job, code, potential, frames):
    inputs = {'code': code, 'potential': potential, 'training_set': frames, 'metadata': metadata()}
    calcinfo, _, _ = generate_calc_job(MlpTrainCalculation, inputs)
    assert calcinfo.codes_info[0].cmdline_params[3:] == [
        '--energy-weight=1', '--force-weight=0.01', '--stress-weight=0.001', '--max-iter=1000',
        '--init-params=random', '--trained-pot-name=trained.mtp']


def test_calc_efs_and_calc_errors(generate_calc_job, code, potential, frames):
    inputs = {'code': code, 'potential': potential, 'frames': frames, 'metadata': metadata()}
    calcinfo, folder, _ = generate_calc_job(MlpCalcEfsCalculation, inputs)
    assert check_common(calcinfo, folder, potential) == ['calc-efs', 'potential.mtp', 'frames.cfg', 'predictions.cfg']
    assert 'predictions.cfg' in calcinfo.retrieve_list
    assert len(list(read_cfg(folder / 'frames.cfg', potential.species))) == frames.num_frames

    calcinfo, folder, _ = generate_calc_job(MlpCalcErrorsCalculation, inputs)
    assert check_common(calcinfo, folder, potential) == ['calc-errors', 'potential.mtp', 'frames.cfg']


def test_calc_grade_grades_the_training_set_by_default(generate_calc_job, code, potential, frames):
    inputs = {'code': code, 'potential': potential, 'training_set': frames, 'metadata': metadata(),
              'options': orm.Dict({'select_threshold': 1.05})}
    calcinfo, folder, _ = generate_calc_job(MlpCalcGradeCalculation, inputs)
    assert check_common(calcinfo, folder, potential) == [
        'calc-grade', 'potential.mtp', 'training.cfg', 'training.cfg', 'graded.cfg', '--als-filename=state.als',
        '--select-threshold=1.05']
    assert {'graded.cfg', 'state.als'} <= set(calcinfo.retrieve_list)
    assert not (folder / 'frames.cfg').exists()

    inputs['frames'] = TrainingSetData.from_frames(sample_frames('preselected.cfg'), species=ORDER)
    calcinfo, folder, _ = generate_calc_job(MlpCalcGradeCalculation, inputs)
    assert calcinfo.codes_info[0].cmdline_params[2:4] == ['training.cfg', 'frames.cfg']
    assert len(list(read_cfg(folder / 'frames.cfg', potential.species))) == 4


def test_select_add(generate_calc_job, code, potential, frames):
    candidates = TrainingSetData.from_frames(sample_frames('preselected.cfg'), species=ORDER)
    inputs = {'code': code, 'potential': potential, 'training_set': frames, 'candidates': candidates,
              'options': orm.Dict({'selection_limit': 5}), 'metadata': metadata()}
    calcinfo, folder, _ = generate_calc_job(MlpSelectAddCalculation, inputs)
    assert check_common(calcinfo, folder, potential) == [
        'select-add', 'potential.mtp', 'training.cfg', 'candidates.cfg', 'diff.cfg', '--als-filename=state.als',
        '--selected-filename=selected.cfg', '--selection-limit=5']
    assert {'diff.cfg', 'state.als'} <= set(calcinfo.retrieve_list)
    assert len(list(read_cfg(folder / 'candidates.cfg', potential.species))) == 4


@pytest.fixture
def lammps_inputs(aiida_profile, fake_code, potential):
    structure = orm.StructureData(ase=sample_frames('graded.cfg')[0].to_ase())
    state = orm.SinglefileData(io.BytesIO(b'MTP\nversion = 1.1.0\n^binary part\x00\x01'), filename='curr.als')
    return {
        'code': fake_code('lmp'), 'potential': potential, 'structure': structure, 'state': state,
        'parameters': orm.Dict({'temperature': 900.0, 'steps': 5000, 'seed': 7, 'threshold': 2.0}),
        'metadata': metadata(),
    }


def test_lammps_explore_writes_mlip_ini_input_and_data(generate_calc_job, lammps_inputs):
    calcinfo, folder, _ = generate_calc_job(LammpsMlipExploreCalculation, lammps_inputs)
    potential = lammps_inputs['potential']
    assert check_common(calcinfo, folder, potential, stdout='lammps.out') == ['-in', 'in.lammps', '-log', 'log.lammps']
    assert {'log.lammps', 'preselected.cfg*', 'lammps.err'} <= set(calcinfo.retrieve_list)
    state = lammps_inputs['state']
    assert calcinfo.local_copy_list == [(state.uuid, 'curr.als', 'state.als')]

    settings = check_mlip_ini((folder / 'mlip.ini').read_text())
    assert settings == {
        'mtp-filename': 'potential.mtp', 'calculate-efs': True, 'select': True, 'select:threshold': 2.0,
        'select:threshold-break': 10.0, 'select:save-selected': 'preselected.cfg', 'select:load-state': 'state.als',
    }
    script = (folder / 'in.lammps').read_text()
    commands = [line.split('#')[0].split() for line in script.splitlines() if line.split('#')[0].strip()]
    assert ['pair_style', 'mlip', 'mlip.ini'] in commands
    assert [c for c in commands if c[0] == 'pair_coeff'] == [['pair_coeff', '*', '*']]
    assert [c[:2] for c in commands if c[0] == 'mass'] == [['mass', '1'], ['mass', '2']]  # Cu, Al
    assert ['read_data', 'structure.data'] in commands and ['run', '5000'] in commands
    assert ['velocity', 'all', 'create', '900', '7', 'dist', 'gaussian', 'mom', 'yes'] in commands

    from ase.io import read

    data = read(folder / 'structure.data', format='lammps-data', atom_style='atomic', units='metal',
                Z_of_type={1: 29, 2: 13})  # LAMMPS type i = potential.species[i - 1]
    structure = lammps_inputs['structure'].get_ase()
    assert data.get_chemical_symbols() == structure.get_chemical_symbols()
    assert data.get_volume() == pytest.approx(structure.get_volume())


def test_lammps_production_run_without_selection_may_use_many_ranks(generate_calc_job, lammps_inputs):
    lammps_inputs.pop('state')
    lammps_inputs['parameters'] = orm.Dict({'temperature': 300, 'steps': 100, 'select': False})
    lammps_inputs['metadata'] = {'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 4},
                                             'withmpi': True}}
    calcinfo, folder, _ = generate_calc_job(LammpsMlipExploreCalculation, lammps_inputs)
    assert check_mlip_ini((folder / 'mlip.ini').read_text()) == {
        'mtp-filename': 'potential.mtp', 'calculate-efs': True, 'select': False}
    assert not calcinfo.local_copy_list


# ----------------------------------------------------------------------------------------- refused inputs


@pytest.mark.parametrize('calculation, change, message', [
    (MlpTrainCalculation, {'options': {'max_itr': 5}}, r"options: unknown mlp train option\(s\) \['max_itr'\]"),
    (MlpTrainCalculation, {'options': {'force_weight': -0.1}}, r'options.force_weight: must be a number >= 0'),
    (MlpCalcGradeCalculation, {'options': {'select_threshold': 0.9}}, r'options.select_threshold: must be a number'),
    (MlpSelectAddCalculation, {'options': {'selection_limit': -2}}, r'options.selection_limit'),
    (MlpCalcGradeCalculation, {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}},
     r'metadata.options.resources: mlp calc-grade \(active-set selection\) needs exactly one MPI rank'),
    (MlpCalcEfsCalculation, {'untrained': True}, r'potential: is an untrained template'),
    (MlpTrainCalculation, {'unlabelled': True}, r'training_set: every frame needs an energy and forces'),
    (MlpCalcErrorsCalculation, {'unlabelled': True}, r'frames: every frame needs an energy and forces'),
    (MlpTrainCalculation, {'species': ['Cu']}, r"training_set: species \['Al'\] are not in the potential's species"),
])
def test_bad_mlp_inputs_are_refused_naming_the_field(generate_calc_job, code, potential, frames, calculation, change,
                                                     message):
    if change.get('untrained'):
        potential = MtpPotentialData.from_template(6, ['Cu', 'Al'], min_dist=2.0, max_dist=5.0)
    if change.get('species'):
        potential = MtpPotentialData(trained_text(1), species=change['species'])
    if change.get('unlabelled'):
        frames = TrainingSetData.from_frames([dataclasses.replace(f, energy=None, forces=None, stress=None)
                                              for f in frames.iter_frames()], species=ORDER)
    inputs = {'code': code, 'potential': potential, 'metadata': metadata()}
    port = {MlpTrainCalculation: 'training_set', MlpCalcGradeCalculation: 'training_set',
            MlpSelectAddCalculation: 'training_set'}.get(calculation, 'frames')
    inputs[port] = frames
    if calculation is MlpSelectAddCalculation:
        inputs['candidates'] = frames
    if 'options' in change:
        inputs['options'] = orm.Dict(change['options'])
    if 'resources' in change:
        inputs['metadata'] = {'options': {'resources': change['resources'], 'withmpi': True}}
    with pytest.raises(ValueError, match=message):
        generate_calc_job(calculation, inputs)


@pytest.mark.parametrize('change, message', [
    ({'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}},
     r'metadata.options.resources: LAMMPS with mlip selection \(select TRUE\) needs exactly one MPI rank'),
    ({'resources': {'num_machines': 2, 'num_mpiprocs_per_machine': 1}}, r'metadata.options.resources'),
    ({'resources': {'tot_num_mpiprocs': 2, 'num_machines': 1}}, r'metadata.options.resources'),
    ({'parameters': {'temperature': 900, 'steps': 10, 'threshold': 3.0, 'threshold_break': 3.0}},
     r'parameters.threshold_break: must be larger than parameters.threshold'),
    ({'parameters': {'temperature': 900, 'steps': 10, 'thermostat': 'nose'}}, r"parameters: unknown key"),
    ({'no_state': True}, r'state: the .als active-learning state'),
    ({'append_text': 'rm -f *.tmp'}, r'metadata.options.append_text: must be empty'),
    ({'structure_species': 'Ag'}, r"structure: elements \['Ag'\] are not in the potential's species"),
])
def test_bad_lammps_inputs_are_refused_naming_the_field(generate_calc_job, lammps_inputs, change, message):
    if 'resources' in change:
        lammps_inputs['metadata'] = {'options': {'resources': change['resources'], 'withmpi': True}}
    if 'parameters' in change:
        lammps_inputs['parameters'] = orm.Dict(change['parameters'])
    if change.get('no_state'):
        lammps_inputs.pop('state')
    if 'append_text' in change:
        lammps_inputs['metadata']['options']['append_text'] = change['append_text']
    if 'structure_species' in change:
        atoms = lammps_inputs['structure'].get_ase()
        atoms.symbols[0] = change['structure_species']
        lammps_inputs['structure'] = orm.StructureData(ase=atoms)
    with pytest.raises(ValueError, match=message):
        generate_calc_job(LammpsMlipExploreCalculation, lammps_inputs)


# ----------------------------------------------------------------------------------------- parsers


@pytest.fixture(scope='module')
def sample_potential(aiida_profile):
    """Trained, in the samples' type order (Al = 0, Cu = 1)."""
    return MtpPotentialData(trained_text(2), species=ORDER, filename='curr.mtp').store()


def parse(parser, node):
    results, calcfunction = parser.parse_from_node(node, store_provenance=False)
    return results, calcfunction.exit_status


def test_train_parser_converged(generate_calc_job_node, sample_potential, frames):
    trained = trained_text(2, seed=11)
    node = generate_calc_job_node(
        MlpTrainCalculation, {'potential': sample_potential, 'training_set': frames},
        {'mlp.out': SAMPLES / 'train_converged.log', 'trained.mtp': trained, EXIT_STATUS_FILE: '0\n'})
    results, status = parse(MlpTrainParser, node)
    assert status == 0
    potential = results['potential']
    assert potential.species == ORDER and potential.is_trained and potential.get_content() == trained
    assert potential.training_errors['forces_rmse'] == pytest.approx(0.0921)
    assert results['training_errors']['energy_per_atom_rmse'] == pytest.approx(0.00742)
    assert results['summary'].get_dict() == {
        'bfgs_iterations': 213, 'final_loss': pytest.approx(0.0524733), 'max_iter': 500, 'reached_max_iter': False,
        'pretraining': True, 'mindist': None}
    assert results['exit_status'].value == 0 and 'validation_errors' not in results


def test_train_parser_step_limit_keeps_the_potential(generate_calc_job_node, sample_potential, frames):
    node = generate_calc_job_node(
        MlpTrainCalculation, {'potential': sample_potential, 'training_set': frames,
                              'options': orm.Dict({'max_iter': 40, 'update_mindist': True})},
        {'mlp.out': SAMPLES / 'train_step_limit.log', 'trained.mtp': trained_text(2), EXIT_STATUS_FILE: '0'})
    results, status = parse(MlpTrainParser, node)
    assert status == MlpTrainCalculation.exit_codes.ERROR_NOT_CONVERGED.status == 410
    assert results['potential'].is_trained
    assert results['validation_errors']['forces_rmse'] == pytest.approx(0.1857)
    assert results['summary']['mindist'] == pytest.approx(2.043117)


@pytest.mark.parametrize('files, expected', [
    ({}, 'ERROR_MISSING_STDOUT'),
    ({'mlp.out': 'MTPR from potential.mtp, Database: training.cfg\nBFGS iter 0: f=3.2\n'}, 'ERROR_UNREADABLE_STDOUT'),
    ({'mlp.out': 'MTPR from potential.mtp, Database: training.cfg\n', 'mlp.err': 'ERROR: cannot open training.cfg\n',
      EXIT_STATUS_FILE: '1'}, 'ERROR_NONZERO_EXIT_STATUS'),
    ({'mlp.out': SAMPLES / 'train_converged.log', EXIT_STATUS_FILE: '0'}, 'ERROR_MISSING_OUTPUT_FILE'),
    ({'mlp.out': SAMPLES / 'train_converged.log', 'trained.mtp': 'MTP\nversion = 1.1.0\nnonsense\n'},
     'ERROR_BAD_POTENTIAL_FILE'),
])
def test_train_parser_failures(generate_calc_job_node, sample_potential, frames, files, expected):
    node = generate_calc_job_node(MlpTrainCalculation, {'potential': sample_potential, 'training_set': frames}, files)
    _, status = parse(MlpTrainParser, node)
    assert status == getattr(MlpTrainCalculation.exit_codes, expected).status


def mlp_echo(frames, energy_shift=0.0) -> str:
    """A cfg as mlp writes it back: 6-decimal positions, other labels."""
    echoed = [dataclasses.replace(f, positions=np.round(f.positions, 6), energy=f.energy + energy_shift)
              for f in frames]
    buffer = io.StringIO()
    write_cfg(echoed, buffer, ORDER)
    return buffer.getvalue()


def test_calc_efs_parser_keeps_exact_input_geometry(generate_calc_job_node, sample_potential, aiida_profile):
    original = [dataclasses.replace(f, positions=f.positions + 3e-7, info={'origin': 'aimd', 'EFS_by': 'QE'})
                for f in sample_frames('graded.cfg')]
    frames = TrainingSetData.from_frames(original, species=ORDER)
    node = generate_calc_job_node(MlpCalcEfsCalculation, {'potential': sample_potential, 'frames': frames},
                                  {'predictions.cfg': mlp_echo(original, 0.25), EXIT_STATUS_FILE: '0'})
    results, status = parse(MlpCalcEfsParser, node)
    assert status == 0
    predictions = results['predictions']
    np.testing.assert_array_equal(predictions.get_array('positions'), frames.get_array('positions'))
    np.testing.assert_allclose(predictions.get_array('energies'), frames.get_array('energies') + 0.25)
    assert list(predictions.get_array('origins')) == ['aimd'] * 4

    short = generate_calc_job_node(MlpCalcEfsCalculation, {'potential': sample_potential, 'frames': frames},
                                   {'predictions.cfg': mlp_echo(original[:3])})
    assert parse(MlpCalcEfsParser, short)[1] == MlpCalcEfsCalculation.exit_codes.ERROR_OUTPUT_MISMATCH.status


def test_calc_errors_parser(generate_calc_job_node, sample_potential, frames):
    node = generate_calc_job_node(MlpCalcErrorsCalculation, {'potential': sample_potential, 'frames': frames},
                                  {'mlp.out': SAMPLES / 'calc_errors.log', EXIT_STATUS_FILE: '0'})
    results, status = parse(MlpCalcErrorsParser, node)
    assert status == 0
    assert results['errors']['stress_rmse'] == pytest.approx(2.806) and results['errors']['forces_count'] == 32


def test_calc_grade_parser_reads_mv_grade_and_keeps_input_references(generate_calc_job_node, sample_potential):
    graded = sample_frames('graded.cfg')
    training_set = TrainingSetData.from_frames(graded, species=ORDER)  # no mv_grade stored on the input
    state = b'MTP\nversion = 1.1.0\n^\x00\x00\x00\x00\x00\x00\xf0?#\x01\x02'
    node = generate_calc_job_node(MlpCalcGradeCalculation,
                                  {'potential': sample_potential, 'training_set': training_set},
                                  {'graded.cfg': SAMPLES / 'graded.cfg', 'state.als': state, EXIT_STATUS_FILE: '0'})
    results, status = parse(MlpCalcGradeParser, node)
    assert status == 0
    np.testing.assert_allclose(results['grades'].get_array('mv_grade'), [0.734512, 1.0, 2.417733, 15.80412])
    graded_frames = results['graded_frames']
    np.testing.assert_array_equal(graded_frames.get_array('energies'), training_set.get_array('energies'))
    np.testing.assert_array_equal(graded_frames.get_array('forces'), training_set.get_array('forces'))
    assert results['state'].get_content(mode='rb') == state and results['state'].filename == 'state.als'


def test_calc_grade_parser_failures(generate_calc_job_node, sample_potential):
    training_set = TrainingSetData.from_frames(sample_frames('graded.cfg')[:3], species=ORDER)
    inputs = {'potential': sample_potential, 'training_set': training_set}
    node = generate_calc_job_node(MlpCalcGradeCalculation, inputs,
                                  {'graded.cfg': SAMPLES / 'graded.cfg', 'state.als': b'x'})
    assert parse(MlpCalcGradeParser, node)[1] == MlpCalcGradeCalculation.exit_codes.ERROR_OUTPUT_MISMATCH.status
    node = generate_calc_job_node(MlpCalcGradeCalculation, inputs, {'graded.cfg': SAMPLES / 'graded.cfg',
                                                                    EXIT_STATUS_FILE: '134'})
    assert parse(MlpCalcGradeParser, node)[1] == MlpCalcGradeCalculation.exit_codes.ERROR_NONZERO_EXIT_STATUS.status
    no_grade = (SAMPLES / 'graded.cfg').read_text().replace(' Feature   MV_grade\t0.734512\n', '')
    full = TrainingSetData.from_frames(sample_frames('graded.cfg'), species=ORDER)
    node = generate_calc_job_node(MlpCalcGradeCalculation, {'potential': sample_potential, 'training_set': full},
                                  {'graded.cfg': no_grade, 'state.als': b'x'})
    assert parse(MlpCalcGradeParser, node)[1] == MlpCalcGradeCalculation.exit_codes.ERROR_UNREADABLE_OUTPUT.status


def test_select_add_parser_returns_unlabelled_candidates(generate_calc_job_node, sample_potential, frames):
    candidates = TrainingSetData.from_frames(
        [dataclasses.replace(f, info={'origin': 'mlip-preselected', 'temperature': 900.0})
         for f in sample_frames('preselected.cfg')], species=ORDER)
    node = generate_calc_job_node(
        MlpSelectAddCalculation, {'potential': sample_potential, 'training_set': frames, 'candidates': candidates},
        {'mlp.out': SAMPLES / 'select_add.log', 'diff.cfg': SAMPLES / 'diff.cfg', 'state.als': b'als',
         EXIT_STATUS_FILE: '0'})
    results, status = parse(MlpSelectAddParser, node)
    assert status == 0
    assert results['summary'].get_dict() == {'num_training': 12, 'active_set_size': 14, 'num_candidates': 4,
                                             'num_selected': 2, 'candidate_indices': [1, 3]}
    selected = results['selected']
    assert selected.num_frames == 2 and selected.base.attributes.get('num_labelled') == 0
    assert np.isnan(selected.get_array('forces')).all()
    np.testing.assert_array_equal(selected.get_array('positions'), candidates.subset([1, 3]).get_array('positions'))
    assert list(selected.get_array('temperatures')) == [900.0, 900.0]
    assert results['state'].get_content(mode='rb') == b'als'


def test_select_add_parser_nothing_selected_and_foreign_frames(generate_calc_job_node, sample_potential, frames):
    candidates = TrainingSetData.from_frames(sample_frames('preselected.cfg'), species=ORDER)
    inputs = {'potential': sample_potential, 'training_set': frames, 'candidates': candidates}
    log = (SAMPLES / 'select_add.log').read_text().replace('TS increased by 2', 'TS increased by 0')
    node = generate_calc_job_node(MlpSelectAddCalculation, inputs, {'mlp.out': log, 'diff.cfg': '', 'state.als': b'a'})
    results, status = parse(MlpSelectAddParser, node)
    assert status == 0 and 'selected' not in results and results['summary']['num_selected'] == 0
    node = generate_calc_job_node(MlpSelectAddCalculation, inputs, {
        'mlp.out': SAMPLES / 'select_add.log', 'diff.cfg': SAMPLES / 'graded.cfg', 'state.als': b'a'})
    assert parse(MlpSelectAddParser, node)[1] == MlpSelectAddCalculation.exit_codes.ERROR_OUTPUT_MISMATCH.status


@pytest.fixture
def lammps_node(generate_calc_job_node, sample_potential):
    def factory(files):
        structure = orm.StructureData(ase=sample_frames('preselected.cfg')[0].to_ase())
        inputs = {'potential': sample_potential, 'structure': structure,
                  'parameters': orm.Dict({'temperature': 900, 'steps': 2000}),
                  'state': orm.SinglefileData(io.BytesIO(b'als'), filename='state.als')}
        return generate_calc_job_node(LammpsMlipExploreCalculation, inputs, files)
    return factory


def test_lammps_exit_8_is_a_successful_extrapolation_stop(lammps_node):
    node = lammps_node({'log.lammps': SAMPLES / 'lammps_break.log', 'lammps.out': SAMPLES / 'lammps_break.out',
                        'lammps.err': '', 'preselected.cfg': SAMPLES / 'preselected.cfg', EXIT_STATUS_FILE: '8\n'})
    results, status = parse(LammpsMlipExploreParser, node)
    assert status == 0
    summary = results['summary'].get_dict()
    assert summary['stopped_on_extrapolation'] is True and summary['exit_status'] == 8
    assert summary['num_preselected'] == 4 and summary['max_grade'] == pytest.approx(11.47206)
    assert summary['break_grade'] == pytest.approx(11.47206) and summary['last_step'] == 50
    assert summary['completed'] is False and summary['preselected_files'] == ['preselected.cfg']
    np.testing.assert_allclose(results['grades'].get_array('mv_grade'), [2.318841, 3.902257, 6.155370, 11.47206])
    preselected = results['preselected']
    assert preselected.num_frames == 4 and preselected.base.attributes.get('num_labelled') == 0
    assert set(preselected.get_array('origins')) == {'mlip-preselected'}
    assert set(preselected.get_array('source_uuids')) == {node.uuid}
    assert list(preselected.get_array('temperatures')) == [900.0] * 4


def test_lammps_stop_detected_from_the_message_when_no_status_was_recorded(lammps_node):
    node = lammps_node({'log.lammps': SAMPLES / 'lammps_break.log', 'lammps.err': SAMPLES / 'lammps_break.out',
                        'preselected.cfg_0': SAMPLES / 'preselected.cfg'})
    results, status = parse(LammpsMlipExploreParser, node)
    assert status == 0 and results['summary']['stopped_on_extrapolation'] is True
    assert results['summary']['exit_status'] is None and results['summary']['num_preselected'] == 4


def test_lammps_completed_run_without_extrapolation(lammps_node):
    node = lammps_node({'log.lammps': SAMPLES / 'lammps_complete.log', 'lammps.out': '', EXIT_STATUS_FILE: '0'})
    results, status = parse(LammpsMlipExploreParser, node)
    assert status == 0 and 'preselected' not in results and 'grades' not in results
    summary = results['summary'].get_dict()
    assert summary['stopped_on_extrapolation'] is False and summary['num_preselected'] == 0
    assert summary['completed'] and summary['last_step'] == read_lammps_log(
        (SAMPLES / 'lammps_complete.log').read_text())['last_step'] == 40


@pytest.mark.parametrize('files, expected', [
    ({'lammps.err': 'MLIP: cannot open state.als\n', EXIT_STATUS_FILE: '7'}, 'ERROR_MLIP_INIT_FAILED'),
    ({'log.lammps': SAMPLES / 'lammps_break.log', EXIT_STATUS_FILE: '1'}, 'ERROR_NONZERO_EXIT_STATUS'),
    ({'log.lammps': SAMPLES / 'lammps_break.log', EXIT_STATUS_FILE: '0'}, 'ERROR_NOT_FINISHED'),
    ({EXIT_STATUS_FILE: '0'}, 'ERROR_MISSING_OUTPUT_FILE'),
])
def test_lammps_failures(lammps_node, files, expected):
    _, status = parse(LammpsMlipExploreParser, lammps_node(files))
    assert status == getattr(LammpsMlipExploreCalculation.exit_codes, expected).status


def test_submit_script_records_the_exit_status_right_after_the_run_line(lammps_inputs, tmp_path, monkeypatch):
    from aiida.engine import run_get_node

    monkeypatch.chdir(tmp_path)  # a dry run writes submit_test/ into the working directory
    lammps_inputs['metadata'] = {'options': {'resources': dict(SERIAL)}, 'dry_run': True, 'store_provenance': False}
    _, node = run_get_node(LammpsMlipExploreCalculation, **lammps_inputs)
    script = (pathlib.Path(node.dry_run_info['folder']) / '_aiidasubmit.sh').read_text()
    lines = [line for line in script.splitlines() if line.strip()]
    run_line = next(i for i, line in enumerate(lines) if "'-in' 'in.lammps'" in line)
    assert "> 'lammps.out' 2> 'lammps.err'" in lines[run_line]
    assert lines[run_line + 1] == 'echo $? > exit_status.txt'
    assert sorted(p.name for p in pathlib.Path(node.dry_run_info['folder']).iterdir()) == [
        '.aiida', '_aiidasubmit.sh', 'in.lammps', 'mlip.ini', 'potential.mtp', 'state.als', 'structure.data']
