"""mlip-2 command lines, mlip.ini, LAMMPS input and the readers of mlp/LAMMPS output, on hand-written samples.

The samples in ``tests/fixtures/mlip2`` were written for this project in the layouts documented in
``shared/docs/mtp-formats.md`` (see SOURCES.md there); no mlip-2 file is used.
"""

import pathlib

import numpy as np
import pytest
from ase.build import bulk

from aiida_mlcampaign.formats import mlip2
from aiida_mlcampaign.formats.mlip_cfg import read_cfg

SAMPLES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mlip2'


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


# ----------------------------------------------------------------------------------------- commands


def test_train_command_is_explicit_and_uses_mlp_option_names():
    command = mlip2.train_command({'max_iter': 250, 'force_weight': 0.05, 'init_params': 'same',
                                   'update_mindist': True}, 'init.mtp', 'train.cfg', 'curr.mtp')
    assert command[:4] == ['mlp', 'train', 'init.mtp', 'train.cfg']
    assert command[4:] == [
        '--energy-weight=1', '--force-weight=0.05', '--stress-weight=0.001', '--max-iter=250',
        '--init-params=same', '--update-mindist', '--trained-pot-name=curr.mtp',
    ]
    assert all('=' in arg or arg == '--update-mindist' for arg in command[4:])  # mlp needs --opt=value


def test_train_command_optional_options_and_validation_set():
    command = mlip2.train_command({'scale_by_force': 0.5, 'bfgs_conv_tol': 1e-4, 'weighting': 'structures',
                                   'skip_preinit': True, 'update_mindist': False}, valid_cfgs='valid.cfg')
    assert '--scale-by-force=0.5' in command and '--bfgs-conv-tol=0.0001' in command
    assert '--weighting=structures' in command and '--skip-preinit' in command
    assert '--update-mindist' not in command
    assert command[-2:] == ['--valid-cfgs=valid.cfg', '--trained-pot-name=trained.mtp']


@pytest.mark.parametrize('options, message', [
    ({'maxiter': 10}, r"options: unknown mlp train option\(s\) \['maxiter'\]"),
    ({'curr_pot_name': 'x.mtp'}, r'options: unknown mlp train option'),
    ({'energy_weight': -1.0}, r'options.energy_weight: must be a number >= 0'),
    ({'force_weight': 'big'}, r'options.force_weight: must be a number'),
    ({'max_iter': 0}, r'options.max_iter: must be an integer >= 1'),
    ({'max_iter': 10.5}, r'options.max_iter: must be an integer'),
    ({'max_iter': True}, r'options.max_iter: must be an integer'),
    ({'init_params': 'zeros'}, r"options.init_params: 'zeros' is not one of \['random', 'same'\]"),
    ({'update_mindist': 1}, r'options.update_mindist: must be true or false'),
    ({'weighting': 'atoms'}, r'options.weighting'),
    ({'bfgs_conv_tol': 0.0}, r'options.bfgs_conv_tol: must be a number > 0'),
    ({'energy_weight': 0, 'force_weight': 0, 'stress_weight': 0}, r'all three are 0'),
])
def test_bad_train_options_are_refused_naming_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        mlip2.check_train_options(options)


def test_calc_efs_errors_grade_select_add_commands():
    assert mlip2.calc_efs_command('p.mtp', 'in.cfg', 'out.cfg') == ['mlp', 'calc-efs', 'p.mtp', 'in.cfg', 'out.cfg']
    assert mlip2.calc_errors_command('p.mtp', 'db.cfg') == ['mlp', 'calc-errors', 'p.mtp', 'db.cfg']
    assert mlip2.calc_grade_command({'select_threshold': 1.2}, 'p.mtp', 't.cfg', 't.cfg', 'g.cfg', 's.als') == [
        'mlp', 'calc-grade', 'p.mtp', 't.cfg', 't.cfg', 'g.cfg', '--als-filename=s.als', '--select-threshold=1.2']
    command = mlip2.select_add_command({'selection_limit': 20, 'swap_threshold': 1.0000001}, 'p.mtp', 't.cfg',
                                       'new.cfg', 'diff.cfg', 'state.als', 'selected.cfg')
    assert command == ['mlp', 'select-add', 'p.mtp', 't.cfg', 'new.cfg', 'diff.cfg', '--als-filename=state.als',
                       '--selected-filename=selected.cfg', '--selection-limit=20', '--swap-threshold=1.0000001']


@pytest.mark.parametrize('check, options, message', [
    (mlip2.check_grade_options, {'selection_limit': 3}, r'unknown mlp calc-grade option'),
    (mlip2.check_grade_options, {'select_threshold': 0.5}, r'options.select_threshold: must be a number >= 1'),
    (mlip2.check_grade_options, {'init_threshold': 0}, r'options.init_threshold: must be a number > 0'),
    (mlip2.check_select_add_options, {'selection_limit': -1}, r'options.selection_limit: must be an integer >= 0'),
    (mlip2.check_select_add_options, {'als_filename': 'x'}, r'unknown mlp select-add option'),
])
def test_bad_selection_options_are_refused(check, options, message):
    with pytest.raises(ValueError, match=message):
        check(options)


# ----------------------------------------------------------------------------------------- readers


def test_read_errors_report_calc_errors_sample():
    errors = mlip2.read_errors_report(sample('calc_errors.log'))
    assert errors['energy_count'] == 8 and errors['forces_count'] == 32
    assert errors['energy_per_atom_rmse'] == pytest.approx(0.01333)
    assert errors['forces_mae'] == pytest.approx(0.1187)
    assert errors['forces_max_rel'] == pytest.approx(0.2871) and errors['forces_rms_rel'] == pytest.approx(0.2163)
    assert errors['virial_rmse'] == pytest.approx(1.117)   # "Stresses (in eV)"
    assert errors['stress_rmse'] == pytest.approx(2.806)   # "Virial stresses (in GPa)"
    assert len(errors) == 5 * 4 + 3 * 2


def test_read_errors_report_nan_becomes_none_and_cut_report_is_refused():
    text = sample('calc_errors.log').replace('RMS(StresDiff) / RMS(Stres) = 0.2455',
                                             'RMS(StresDiff) / RMS(Stres) = nan')
    assert mlip2.read_errors_report(text)['virial_rms_rel'] is None
    cut = sample('calc_errors.log').rsplit('Virial stresses', 1)[0]
    with pytest.raises(ValueError, match='cut off'):
        mlip2.read_errors_report(cut)
    with pytest.raises(ValueError, match='no "Errors report" block'):
        mlip2.read_errors_report('MTPR from potential.mtp, Database: frames.cfg\n')


def test_read_train_log_pretraining_then_early_convergence():
    log = mlip2.read_train_log(sample('train_converged.log'))
    assert [(s['stage'], s['iterations']) for s in log['stages']] == [('pretraining', 75), ('training', 213)]
    assert log['max_iter'] == 500 and log['bfgs_iterations'] == 213 and not log['reached_max_iter']
    assert log['final_loss'] == log['stages'][1]['losses'][-1] < log['stages'][1]['losses'][0]
    assert log['potential'] == 'initial.mtp' and log['database'] == 'training.cfg'
    assert log['finished'] and log['validation_errors'] is None and log['mindist'] is None
    assert log['train_errors']['forces_rmse'] == pytest.approx(0.0921)


def test_read_train_log_step_limit_mindist_and_validation():
    log = mlip2.read_train_log(sample('train_step_limit.log'))
    assert [s['stage'] for s in log['stages']] == ['training']
    assert log['bfgs_iterations'] == 40 == log['max_iter'] and log['reached_max_iter']
    assert log['mindist'] == pytest.approx(2.043117)
    assert log['validation_errors']['energy_per_atom_rmse'] == pytest.approx(0.03005)
    assert log['train_errors']['energy_per_atom_rmse'] == pytest.approx(0.01315)


def test_read_train_log_unfinished_run():
    text = sample('train_converged.log').split('BFGS iterations count set to')[0]
    log = mlip2.read_train_log(text, max_iter=500)
    assert not log['finished'] and log['bfgs_iterations'] is None and not log['reached_max_iter']
    assert log['stages'][0]['stage'] == 'pretraining'
    # without the "count set to" line the limit given by the caller is used
    text = sample('train_step_limit.log').replace('BFGS iterations count set to 40\n', '')
    assert mlip2.read_train_log(text, max_iter=40)['reached_max_iter']
    assert not mlip2.read_train_log(text, max_iter=1000)['reached_max_iter']


def test_read_select_add_log():
    log = mlip2.read_select_add_log(sample('select_add.log'))
    assert log == {'state_saved': True, 'num_training': 12, 'active_set_size': 14, 'num_candidates': 4,
                   'num_selected': 2}
    with pytest.raises(ValueError, match='TS increased by'):
        mlip2.read_select_add_log(sample('select_add.log').split('TS increased')[0])


def test_graded_and_selection_cfg_samples_parse():
    graded = list(read_cfg(SAMPLES / 'graded.cfg', ['Al', 'Cu']))
    assert [f.info['mv_grade'] for f in graded] == pytest.approx([0.734512, 1.0, 2.417733, 15.80412])
    assert all(f.info['EFS_by'] == 'QE' and f.energy is not None for f in graded)  # references kept
    preselected = list(read_cfg(SAMPLES / 'preselected.cfg', ['Al', 'Cu']))
    diff = list(read_cfg(SAMPLES / 'diff.cfg', ['Al', 'Cu']))
    assert len(preselected) == 4 and len(diff) == 2
    assert all(f.info['mv_grade'] > 2.1 for f in preselected)
    np.testing.assert_array_equal(diff[1].positions, preselected[3].positions)


def test_read_lammps_log_broken_and_completed_runs():
    broken = mlip2.read_lammps_log(sample('lammps_break.log'))
    assert broken['columns'][:3] == ['Step', 'Temp', 'PotEng'] and broken['last_step'] == 50
    assert not broken['completed'] and broken['break_grade'] is None
    assert mlip2.find_break_grade(sample('lammps_break.out')) == pytest.approx(11.47206)
    complete = mlip2.read_lammps_log(sample('lammps_complete.log'))
    assert complete['completed'] and complete['last_step'] == 40 and len(complete['rows']) == 5  # WARNING skipped


def test_exit_codes_of_the_mlip_interface():
    assert mlip2.EXIT_EXTRAPOLATION_STOP == 9992 % 256 == 8
    assert mlip2.EXIT_MLIP_INIT_FAILED == 9991 % 256 == 7


# ----------------------------------------------------------------------------------------- mlip.ini


def test_mlip_ini_round_trip_and_defaults():
    text = mlip2.mlip_ini('curr.mtp')
    settings = mlip2.check_mlip_ini(text)
    assert settings == {
        'mtp-filename': 'curr.mtp', 'calculate-efs': True, 'select': True, 'select:threshold': 2.1,
        'select:threshold-break': 10.0, 'select:save-selected': 'preselected.cfg', 'select:load-state': 'state.als',
    }
    production = mlip2.check_mlip_ini(mlip2.mlip_ini('curr.mtp', select=False))
    assert production == {'mtp-filename': 'curr.mtp', 'calculate-efs': True, 'select': False}


def test_check_mlip_ini_accepts_comments_and_indentation():
    text = ('mtp-filename   pot.mtp   # the potential\nselect TRUE\n  select:threshold 3.0  # save\n'
            '  select:threshold-break 10.0\n  select:load-state state.als\n\n# done\n')
    assert mlip2.check_mlip_ini(text)['select:threshold'] == 3.0


@pytest.mark.parametrize('text, message', [
    ('mtp-filename p.mtp\nselect TRUE\nselect:treshold 2\n', r"select:treshold: unknown key"),
    ('mtp-filename p.mtp\nselect yes\n', r'select: expected TRUE or FALSE'),
    ('mtp-filename p.mtp\nselect TRUE\nselect:threshold 2.1\nselect:threshold-break 2.1\nselect:load-state s.als\n',
     r'threshold-break \(2.1\) must be larger than select:threshold \(2.1\)'),
    ('mtp-filename p.mtp\nselect TRUE\nselect:threshold 5\nselect:threshold-break 3\nselect:load-state s.als\n',
     r'threshold-break \(3.0\) must be larger'),
    ('mtp-filename p.mtp\nselect TRUE\nselect:threshold 2\nselect:threshold-break 10\n',
     r'select:load-state is needed'),
    ('select FALSE\n', r'mtp-filename is missing'),
    ('mtp-filename p.mtp\nmtp-filename q.mtp\n', r'given twice'),
    ('mtp-filename p.mtp\nselect TRUE\nselect:threshold 0.5\n', r'select:threshold must be >= 1'),
])
def test_check_mlip_ini_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        mlip2.check_mlip_ini(text)


def test_mlip_ini_break_not_above_select_is_refused():
    with pytest.raises(ValueError, match='threshold-break'):
        mlip2.mlip_ini('p.mtp', threshold=10.0, threshold_break=10.0)


# ----------------------------------------------------------------------------------------- LAMMPS


def lammps_commands(text: str) -> list[list[str]]:
    return [line.split('#')[0].split() for line in text.splitlines() if line.split('#')[0].strip()]


def test_lammps_input_has_every_required_command():
    text = mlip2.lammps_mlip_input(['Al', 'Cu'], temperature=900, steps=2000, seed=4242, thermo=20)
    commands = lammps_commands(text)
    heads = [c[0] for c in commands]
    assert ['units', 'metal'] in commands and ['atom_style', 'atomic'] in commands
    assert ['read_data', 'structure.data'] in commands
    assert ['pair_style', 'mlip', 'mlip.ini'] in commands
    assert heads.count('pair_coeff') == 1 and ['pair_coeff', '*', '*'] in commands
    assert [c for c in commands if c[0] == 'mass'] == [['mass', '1', '26.981538'], ['mass', '2', '63.546000']]
    assert ['velocity', 'all', 'create', '900', '4242', 'dist', 'gaussian', 'mom', 'yes'] in commands
    assert ['fix', 'nvt', 'all', 'nvt', 'temp', '900', '900', '0.1'] in commands  # tdamp = 100 timesteps
    assert ['thermo', '20'] in commands and commands[-1] == ['run', '2000']
    # order LAMMPS needs: box before masses and pair style, pair style before velocity and run
    assert heads.index('units') < heads.index('read_data') < heads.index('mass') < heads.index('pair_style')
    assert heads.index('pair_style') < heads.index('pair_coeff') < heads.index('velocity') < heads.index('run')


@pytest.mark.parametrize('parameters, message', [
    ({'temperature': 300}, r"parameters: \['steps'\] required"),
    ({'temperature': -5, 'steps': 10}, r'parameters.temperature: must be a number > 0'),
    ({'temperature': 300, 'steps': 10, 'seed': 0}, r'parameters.seed: must be an integer >= 1'),
    ({'temperature': 300, 'steps': 10, 'nsteps': 5}, r"parameters: unknown key\(s\) \['nsteps'\]"),
    ({'temperature': 300, 'steps': 10, 'threshold': 3.0, 'threshold_break': 2.0},
     r'parameters.threshold_break: must be larger than parameters.threshold'),
    ({'temperature': 300, 'steps': 10, 'threshold_break': 2.1}, r'parameters.threshold_break'),
])
def test_bad_lammps_parameters_are_refused(parameters, message):
    with pytest.raises(ValueError, match=message):
        mlip2.check_lammps_parameters(parameters)


def test_lammps_data_types_follow_the_potential_species():
    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True)
    atoms.symbols[0] = 'Al'
    text = mlip2.lammps_data(atoms, ['Al', 'Cu', 'S'])
    assert '4 atoms' in text and '3 atom types' in text
    masses = [line.split() for line in text.split('Masses')[1].split('Atoms')[0].strip().splitlines()]
    assert [(row[0], row[3]) for row in masses] == [('1', 'Al'), ('2', 'Cu'), ('3', 'S')]
    assert float(masses[2][1]) == pytest.approx(32.06, abs=0.01)
    rows = [line.split() for line in text.split('Atoms # atomic')[1].strip().splitlines()]
    assert [row[1] for row in rows] == ['1', '2', '2', '2']
    with pytest.raises(ValueError, match=r"structure: elements \['Cu'\] are not in the potential species"):
        mlip2.lammps_data(atoms, ['Al'])
    atoms.pbc = (True, True, False)
    with pytest.raises(ValueError, match='structure: must be periodic'):
        mlip2.lammps_data(atoms, ['Al', 'Cu'])


def test_lammps_data_is_readable_by_ase(tmp_path):
    from ase.io import read

    atoms = bulk('Cu', 'fcc', a=3.61) * (2, 2, 2)  # triclinic primitive cell
    (tmp_path / 'structure.data').write_text(mlip2.lammps_data(atoms, ['Cu']))
    back = read(tmp_path / 'structure.data', format='lammps-data', atom_style='atomic', units='metal')
    assert len(back) == 8 and back.get_volume() == pytest.approx(atoms.get_volume())


def test_the_format_module_does_not_import_aiida():
    import subprocess
    import sys

    code = 'import sys, aiida_mlcampaign.formats.mlip2; sys.exit("aiida" in sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], check=False).returncode == 0
