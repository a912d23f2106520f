"""Is a fitted MSD slope a diffusion coefficient? Ballistic, caged and diffusive MSDs; short runs end to end.

The science checks run on synthetic curves without a profile; the last tests run compute_msd,
fit_diffusion and fit_arrhenius on a short TrainingSetData trajectory (the users' case: a few fs of
MD, once refused by the default blocks and then reported as D and σ).
"""

import numpy as np
import pytest

from aiida_mlcampaign.analysis.transport import (
    auto_blocks,
    diffusion_from_msd,
    diffusive_regime,
    fit_window,
    non_diffusive_conductors,
)

FS = 0.001  # ps


# ------------------------------------------------------------------------------------------ science


def test_ballistic_msd_of_a_short_run_is_flagged():
    """20 frames 1 fs apart: MSD = (v t)² over 19 fs, as in the bug report."""
    time = np.arange(20) * FS
    msd = (4.8 * time) ** 2  # Cu at ~600 K flies ~4.8 Å/ps between collisions
    window = fit_window(time)['window_ps']
    regime = diffusive_regime(time, msd, window, label='Cu')
    assert regime['msd_exponent'] == pytest.approx(2.0, abs=1e-9)
    assert regime['diffusive'] is False
    assert regime['window_ps'] == pytest.approx([0.25 * 19 * FS, 0.75 * 19 * FS])
    assert regime['msd_window_end_A2'] == pytest.approx(msd[14])
    assert len(regime['reasons']) == 3  # exponent, too little motion, ballistic times
    warning = regime['warning']
    assert warning.startswith('Cu: MSD exponent 2.00 over 0.00475-0.0142 ps: ballistic')
    assert 'before 0.1 ps' in warning and 'not above 1 Å²' in warning
    assert warning.endswith('D not trustworthy')


def test_t_squared_is_ballistic_even_with_large_msd_and_late_window():
    time = np.linspace(0, 10, 201)
    regime = diffusive_regime(time, np.stack([time ** 2 / 3] * 3, axis=1), [2.5, 7.5])  # (T, 3) per direction
    assert regime['msd_exponent'] == pytest.approx(2.0, abs=1e-9)
    assert regime['reasons'] == [regime['reasons'][0]] and regime['reasons'][0].startswith('ballistic')
    assert regime['warning'].startswith('MSD exponent 2.00 over 2.5-7.5 ps')  # no label, no prefix
    super_diffusive = diffusive_regime(time, time ** 1.3, [2.5, 7.5])
    assert super_diffusive['reasons'][0].startswith('super-diffusive')


def test_caged_plateau_is_flagged():
    """A crystal: atoms rattle in place, MSD saturates at a vibration amplitude (< 1 Å²)."""
    time = np.linspace(0, 10, 1001)
    plateau = 0.4 * (1 - np.exp(-time / 0.05))
    regime = diffusive_regime(time, plateau, [2.5, 7.5], label='S')
    assert abs(regime['msd_exponent']) < 0.05
    assert regime['diffusive'] is False
    assert regime['reasons'][0].startswith('sub-diffusive or caged')
    assert 'MSD only 0.4 Å²' in regime['reasons'][1]
    # a large cage (e.g. a rotating molecule) is still not diffusion: the exponent alone rules it out
    assert diffusive_regime(time, 10 * plateau, [2.5, 7.5])['reasons'] == regime['reasons'][:1]


def test_linear_msd_is_diffusive():
    time = np.linspace(0, 10, 1001)
    regime = diffusive_regime(time, 6 * 0.2 * time, [2.5, 7.5], label='Li')
    assert regime['msd_exponent'] == pytest.approx(1.0, abs=1e-9)
    assert regime['diffusive'] is True and regime['reasons'] == [] and regime['warning'] is None
    # the ballistic offset every real MSD has bends the log-log slope a little, not out of the range
    offset = diffusive_regime(time, 6 * 0.2 * time + 0.5, [2.5, 7.5])
    assert 0.8 < offset['msd_exponent'] < 1.0 and offset['diffusive'] is True


def test_thresholds_are_parameters():
    time = np.linspace(0, 1, 101)
    slow = 6 * 0.1 * time  # diffusive in shape but only 0.45 Å² at 0.75 ps
    assert diffusive_regime(time, slow, [0.25, 0.75])['diffusive'] is False
    assert diffusive_regime(time, slow, [0.25, 0.75], min_msd_A2=0.1)['diffusive'] is True
    fast = 6 * 5.0 * time
    early = diffusive_regime(time, fast, [0.05, 0.75])
    assert early['diffusive'] is False
    assert early['reasons'] == ['window starts at 0.05 ps (before 0.1 ps: ballistic times)']
    assert diffusive_regime(time, fast, [0.05, 0.75], min_start_ps=0.01)['diffusive'] is True
    assert diffusive_regime(time, fast ** 1.5, [0.25, 0.75], exponent_range=(0.5, 1.6))['diffusive'] is True


def test_exponent_is_undefined_without_motion():
    time = np.linspace(0, 1, 11)
    regime = diffusive_regime(time, np.zeros(11), [0.0, 0.1])
    assert np.isnan(regime['msd_exponent']) and regime['diffusive'] is False
    assert regime['warning'].startswith('MSD exponent undefined over 0-0.1 ps: exponent undefined')


def test_diffusion_from_msd_carries_the_check():
    time = np.arange(20) * FS
    ballistic = diffusion_from_msd(time, (4.8 * time) ** 2, label='Cu')
    assert ballistic['D_A2_per_ps'] > 0  # the number is still reported ...
    assert ballistic['diffusive'] is False and ballistic['msd_exponent'] == pytest.approx(2.0)
    assert len(ballistic['warnings']) == 1
    assert ballistic['warnings'][0].startswith('Cu: MSD exponent 2.00')  # ... with the reason it is not a D
    time = np.linspace(0, 10, 501)
    linear = diffusion_from_msd(time, 6 * 0.3 * time, label='Li')
    assert linear['diffusive'] is True and linear['warnings'] == []
    assert linear['D_A2_per_ps'] == pytest.approx(0.3) and linear['msd_window_end_A2'] == pytest.approx(6 * 0.3 * 7.5)


@pytest.mark.parametrize(('frames', 'blocks'), [(0, 0), (2, 0), (5, 0), (6, 2), (9, 3), (12, 4), (14, 4), (15, 5),
                                                (20, 5), (10000, 5)])
def test_auto_blocks(frames, blocks):
    assert auto_blocks(frames) == blocks
    if blocks:
        assert frames // blocks >= 3


def test_blocks_too_short_for_the_window_are_dropped_not_fatal():
    """15 frames in 5 blocks of 3: the block window holds 1 lag, so the whole run is fitted."""
    rng = np.random.default_rng(0)
    time = np.arange(15) * 0.05
    block_time = time[:3]
    msd = 6 * 2.0 * time
    blocks = np.array([6 * 2.0 * (1 + rng.normal(0, 0.05)) * block_time for _ in range(5)])
    plan = fit_window(time, None, block_time)
    assert plan['use_blocks'] is False and plan['window_ps'] == pytest.approx([0.175, 0.525])
    assert plan['note'].startswith('msd: blocks of 3 lags (0.1 ps) are too short for the fit window')
    fit = diffusion_from_msd(time, msd, block_time_ps=block_time, block_msd_A2=blocks, label='Li')
    assert fit['error_method'] == 'least_squares_lower_bound' and 'num_blocks' not in fit
    assert fit['D_A2_per_ps'] == pytest.approx(2.0)
    assert fit['warnings'][0] == plan['note']
    # blocks long enough are used, over the block window
    long_time = np.arange(40) * 0.05
    assert fit_window(long_time, None, long_time[:8]) == {
        'window_ps': [pytest.approx(0.0875), pytest.approx(0.2625)], 'use_blocks': True, 'note': None}
    # an explicit window beyond the blocks but inside the run: whole run, same note
    beyond = fit_window(long_time, (0.5, 1.5), long_time[:8])
    assert beyond['use_blocks'] is False and beyond['window_ps'] == [0.5, 1.5] and beyond['note']


def test_short_msd_refusals_name_the_field():
    time = np.arange(20) * FS
    msd = (4.8 * time) ** 2
    with pytest.raises(ValueError, match=r'fit_start_ps: the fit window 0.0101-0.0104 ps holds 0 lag time'):
        diffusion_from_msd(time, msd, window=(0.0101, 0.0104))
    with pytest.raises(ValueError, match=r'fit_end_ps: 0.5 ps exceeds the longest lag of the MSD \(0.019 ps\)'):
        diffusion_from_msd(time, msd, window=(None, 0.5))
    with pytest.raises(ValueError, match=r'fit_start_ps: 0.1 ps is not below the default window end'):
        diffusion_from_msd(time, msd, window=(0.1, None))
    with pytest.raises(ValueError, match=r'fit_end_ps: 0.001 ps is not above the default window start'):
        diffusion_from_msd(time, msd, window=(None, 0.001))
    with pytest.raises(ValueError, match='msd: too short to fit: the default window'):
        diffusion_from_msd(time[:3], msd[:3])


def test_non_diffusive_conductors():
    contributions = {'Cu': 0.5, 'S': 0.001, 'P': -0.2}
    assert non_diffusive_conductors(contributions, {'Cu': True, 'S': False, 'P': True}) == []  # caged framework
    assert non_diffusive_conductors(contributions, {'Cu': False, 'S': False, 'P': False}) == ['Cu', 'P']
    assert non_diffusive_conductors(contributions, {'Cu': None}) == []  # unknown is not a verdict
    assert non_diffusive_conductors({'Cu': 0.0}, {'Cu': False}) == ['Cu']


# ------------------------------------------------------------------------------------------ calcfunctions


def ballistic_set(frames: int, speed_A_per_ps: float, seed: int = 0):
    """``frames`` frames 1 fs apart of 16 Cu and 16 S atoms flying in straight lines (pure ballistic motion)."""
    from ase import Atoms

    from aiida_mlcampaign.data.training_set import TrainingSetData

    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 12.0
    start = rng.random((32, 3)) @ cell
    directions = rng.normal(size=(32, 3))
    velocities = speed_A_per_ps * directions / np.linalg.norm(directions, axis=1)[:, None]
    images = []
    for step in range(frames):
        atoms = Atoms('Cu16S16', positions=start + velocities * step * FS, cell=cell, pbc=True)
        atoms.wrap()
        images.append(atoms)
    return TrainingSetData.from_ase(images, origin='aimd').store()


def calcfunction_count():
    from aiida import orm

    return orm.QueryBuilder().append(orm.CalcFunctionNode).count()


def test_short_run_msd_gets_blocks_it_can_hold(aiida_profile):
    from aiida_mlcampaign.calculations.analysis_structure import compute_msd

    for frames, blocks in ((12, 4), (20, 5), (5, 0), (2, 0)):
        msd = compute_msd(trajectory=ballistic_set(frames, 5.0), time_step_fs=1.0)['msd']
        assert msd.base.attributes.get('num_blocks') == blocks
        assert msd.get_array('msd_A2').shape == (frames, 2, 3)
        assert msd.get_array('msd_blocks_A2').shape[:2] == ((blocks, frames // blocks) if blocks else (0, 0))
    short = ballistic_set(12, 5.0)
    before = calcfunction_count()
    with pytest.raises(ValueError, match='blocks: 5 blocks of 12 frames leave fewer than 3 frames per block'):
        compute_msd(trajectory=short, time_step_fs=1.0, blocks=5)  # asked for: refused, as before
    assert calcfunction_count() == before
    assert compute_msd(trajectory=short, time_step_fs=1.0, blocks=0)['msd'].base.attributes.get('num_blocks') == 0


def test_short_ballistic_run_is_not_reported_as_diffusion(aiida_profile):
    """The bug report: 20 frames 1 fs apart, fitted at a few fs, gave a D and a σ without a word."""
    from aiida import orm

    from aiida_mlcampaign.calculations.analysis_structure import compute_msd, fit_arrhenius, fit_diffusion

    results = {}
    for temperature, speed in ((600.0, 4.0), (800.0, 5.0)):
        msd = compute_msd(trajectory=ballistic_set(20, speed), time_step_fs=1.0)['msd']
        outputs = fit_diffusion(msd=msd, temperature_K=temperature, charges=orm.Dict({'Cu': 1, 'S': -2}))
        data = outputs['diffusion'].get_dict()
        results[f'T{int(temperature)}'] = outputs['diffusion']
        for name in ('Cu', 'S', 'all'):
            entry = data['all'] if name == 'all' else data['species'][name]
            assert entry['D_A2_per_ps'] > 0 and 'D_err_A2_per_ps' in entry  # existing keys stay
            assert entry['msd_exponent'] == pytest.approx(2.0, abs=0.05)
            assert entry['diffusive'] is False
            assert entry['msd_window_end_A2'] < 1.0
        # 5 blocks of 4 frames: the window is 0.75-2.25 fs of the block length
        assert data['species']['Cu']['window_ps'] == pytest.approx([0.00075, 0.00225])
        assert data['species']['Cu']['error_method'] == 'block_average'
        warnings = data['warnings']
        assert [w.split(':')[0] for w in warnings] == ['Cu', 'S', 'all', 'conductivity']
        assert warnings[0].startswith('Cu: MSD exponent 2.0') and 'ballistic' in warnings[0]
        assert warnings[-1].endswith('rests on the non-diffusive D of Cu, S; σ not trustworthy')
        assert data['conductivity']['diffusive'] is False
        assert data['conductivity']['non_diffusive_species'] == ['Cu', 'S']
        assert data['diffusive_criteria'] == {'msd_exponent_range': [0.8, 1.2], 'min_msd_window_end_A2': 1.0,
                                              'min_window_start_ps': 0.1}

    arrhenius = fit_arrhenius(quantity=orm.Str('diffusion'), species=orm.Str('Cu'), **results)['arrhenius'].get_dict()
    assert np.isfinite(arrhenius['activation_energy_eV'])  # still fitted
    assert len(arrhenius['warnings']) == 2
    assert arrhenius['warnings'][0].startswith('T600 (600 K): D of Cu is not diffusive (MSD exponent 2.0')
    assert arrhenius['warnings'][1].startswith('T800 (800 K): D of Cu is not diffusive')
    sigma = fit_arrhenius(**results)['arrhenius'].get_dict()
    assert sigma['quantity'] == 'conductivity'
    assert sigma['warnings'][0] == ('T600 (600 K): σ rests on the non-diffusive D of Cu, S; '
                                    'its point in the fit is not trustworthy')
    plain = fit_arrhenius(temperatures=orm.List([600.0, 800.0]), values=orm.List([0.1, 0.3]))['arrhenius']
    assert plain.get_dict()['warnings'] == []


def synthetic_msd(d_A2_per_ps: float, lags: int = 200, dt_ps: float = 0.01, blocks: int = 4):
    """A compute_msd-shaped ArrayData with MSD = 6 D t exactly (one species, Li)."""
    from aiida import orm

    time = np.arange(lags) * dt_ps
    block_time = time[:lags // blocks] if blocks else time[:0]
    node = orm.ArrayData()
    node.set_array('time_ps', time)
    node.set_array('msd_A2', (2 * d_A2_per_ps * time)[:, None, None] * np.ones((1, 1, 3)))
    node.set_array('block_time_ps', block_time)
    node.set_array('msd_blocks_A2', np.array([(2 * d_A2_per_ps * (1 + 0.01 * b) * block_time)[:, None, None]
                                              * np.ones((1, 1, 3)) for b in range(blocks)]).reshape(
        blocks, len(block_time), 1, 3))
    node.base.attributes.set('species', ['Li'])
    node.base.attributes.set('counts', [10])
    node.base.attributes.set('mean_volume_A3', 1000.0)
    return node.store()


def test_diffusive_msd_gives_no_warning(aiida_profile):
    from aiida import orm

    from aiida_mlcampaign.calculations.analysis_structure import fit_diffusion

    data = fit_diffusion(msd=synthetic_msd(1.0), temperature_K=orm.Float(900.0),
                         charges=orm.Dict({'Li': 1}))['diffusion'].get_dict()
    li = data['species']['Li']
    assert li['D_A2_per_ps'] == pytest.approx(1.005, rel=1e-2)
    assert li['msd_exponent'] == pytest.approx(1.0) and li['diffusive'] is True
    assert li['window_ps'] == pytest.approx([0.1225, 0.3675])
    assert data['warnings'] == [] and data['conductivity']['diffusive'] is True
    assert data['conductivity']['non_diffusive_species'] == []


def test_fit_diffusion_refuses_windows_a_short_msd_cannot_fill(aiida_profile):
    """Refused by the validator with the field named, before any node is made: no traceback from inside."""
    from aiida import orm

    from aiida_mlcampaign.calculations.analysis_structure import fit_diffusion

    msd = synthetic_msd(1.0, lags=20, dt_ps=FS, blocks=0)  # 20 lags, 19 fs
    before = calcfunction_count()
    with pytest.raises(ValueError, match='fit_start_ps: the fit window 0.0101-0.0104 ps holds 0 lag time'):
        fit_diffusion(msd=msd, fit_start_ps=orm.Float(0.0101), fit_end_ps=orm.Float(0.0104))
    with pytest.raises(ValueError, match=r'fit_end_ps: 1 ps exceeds the longest lag of the MSD \(0.019 ps\)'):
        fit_diffusion(msd=msd, fit_end_ps=orm.Float(1.0))
    with pytest.raises(ValueError, match='fit_start_ps: 0.1 ps is not below the default window end'):
        fit_diffusion(msd=msd, fit_start_ps=orm.Float(0.1))
    with pytest.raises(ValueError, match='msd: too short to fit'):
        fit_diffusion(msd=synthetic_msd(1.0, lags=2, dt_ps=FS, blocks=0))
    assert calcfunction_count() == before
    # what the default does with it: a D, flagged (too little motion, ballistic times), no traceback
    data = fit_diffusion(msd=msd)['diffusion'].get_dict()
    assert data['species']['Li']['diffusive'] is False
    assert data['species']['Li']['msd_exponent'] == pytest.approx(1.0)
    assert data['warnings'] and 'before 0.1 ps' in data['warnings'][0]


def test_blocks_too_short_for_the_window_fall_back_in_fit_diffusion(aiida_profile):
    from aiida_mlcampaign.calculations.analysis_structure import fit_diffusion

    data = fit_diffusion(msd=synthetic_msd(1.0, lags=15, dt_ps=0.05, blocks=5))['diffusion'].get_dict()
    li = data['species']['Li']
    assert li['error_method'] == 'least_squares_lower_bound'
    assert li['window_ps'] == pytest.approx([0.175, 0.525])
    assert data['warnings'][0].startswith('msd: blocks of 3 lags')


def test_arrhenius_leaves_out_a_caged_non_positive_d(aiida_profile):
    """A caged low-T run can fit D <= 0; ln D cannot hold it, so that point is left out, with a word."""
    from aiida import orm

    from aiida_mlcampaign.analysis.transport import BOLTZMANN_EV_PER_K
    from aiida_mlcampaign.calculations.analysis_structure import fit_arrhenius

    def result(temperature, d, diffusive, exponent):
        entry = {'D_A2_per_ps': d, 'D_err_A2_per_ps': None, 'diffusive': diffusive, 'msd_exponent': exponent,
                 'msd_window_end_A2': 0.3 if not diffusive else 5.0}
        return orm.Dict({'species': {'Cu': entry}, 'temperature_K': temperature})

    hot = {f'T{t}': result(float(t), 3.0 * np.exp(-0.3 / (BOLTZMANN_EV_PER_K * t)), True, 1.0)
           for t in (600, 800, 1000)}
    fit = fit_arrhenius(T300=result(300.0, -0.002, False, None), **hot)['arrhenius'].get_dict()
    assert fit['activation_energy_eV'] == pytest.approx(0.3)
    assert fit['temperatures_K'] == [1000.0, 600.0, 800.0]  # sorted by input name, 300 K left out
    assert fit['warnings'] == [
        'T300 (300 K): D of Cu is not diffusive (MSD exponent undefined, 0.3 Å² at the window end); its point in '
        'the fit is not trustworthy',
        'T300 (300 K): left out of the fit, its non-diffusive value -0.002 is not positive',
    ]
