"""MSD: FFT against the direct sum, unwrapping in triclinic cells, random walk with a known D."""

import numpy as np
import pytest

from aiida_mlcampaign.analysis.msd import MsdAccumulator, msd_direct, msd_fft, plot_msd
from aiida_mlcampaign.analysis.transport import diffusion_from_msd

TRICLINIC = np.array([[10.0, 0.0, 0.0], [3.0, 9.0, 0.0], [1.0, 2.0, 11.0]])


def wrap(positions, cell):
    frac = np.linalg.solve(cell.T, positions.T).T
    return (frac - np.floor(frac)) @ cell


@pytest.mark.parametrize('length', [1, 2, 3, 17, 256, 1000])
def test_fft_equals_direct_sum(length):
    rng = np.random.default_rng(length)
    x = np.cumsum(rng.normal(size=(length, 4, 3)), axis=0) + rng.normal(0, 5, (1, 4, 3))
    direct = msd_direct(x)
    scale = max(np.abs(direct).max(), 1.0)
    assert np.abs(msd_fft(x) - direct).max() / scale < 1e-10


def random_walk(steps, natoms, sigma, seed, cell=TRICLINIC):
    rng = np.random.default_rng(seed)
    start = rng.random((natoms, 3)) @ cell
    steps_taken = np.cumsum(rng.normal(0, sigma, (steps - 1, natoms, 3)), axis=0)
    displacement = np.concatenate([np.zeros((1, natoms, 3)), steps_taken])
    return start + displacement


def test_random_walk_recovers_d_within_the_block_error():
    """Gaussian steps of variance s^2 per component and frame: D = s^2 / (2 dt) exactly."""
    dt, sigma = 0.01, 0.1
    true_d = sigma ** 2 / (2 * dt)
    truth = random_walk(600, 200, sigma, seed=7)
    with MsdAccumulator() as accumulator:
        for frame in truth:
            accumulator.add_frame(['Li'] * 120 + ['O'] * 80, TRICLINIC, wrap(frame, TRICLINIC))
        # The unwrapped displacements on disk are the true ones (float32 storage).
        stored = np.asarray(accumulator._trajectory())
        np.testing.assert_allclose(stored, truth - truth[0], atol=2e-5)
        result = accumulator.result(dt, blocks=5)
    assert result['species'] == ['Li', 'O'] and result['counts'] == [120, 80]
    assert result['msd_A2'].shape == (600, 2, 3)
    assert result['msd_blocks_A2'].shape == (5, 120, 2, 3)
    assert result['mean_volume_A3'] == pytest.approx(abs(np.linalg.det(TRICLINIC)))
    for k in range(2):
        fit = diffusion_from_msd(result['time_ps'], result['msd_A2'][:, k], block_time_ps=result['block_time_ps'],
                                 block_msd_A2=result['msd_blocks_A2'][:, :, k])
        assert fit['error_method'] == 'block_average' and fit['num_blocks'] == 5
        assert 0 < fit['D_err_A2_per_ps'] < 0.1 * true_d
        assert abs(fit['D_A2_per_ps'] - true_d) < 3 * fit['D_err_A2_per_ps']
        assert fit['window_ps'] == pytest.approx([0.25 * 119 * dt, 0.75 * 119 * dt])


def test_msd_of_the_accumulator_equals_the_direct_sum_per_species():
    truth = random_walk(40, 6, 0.3, seed=2)
    symbols = ['Cu', 'S', 'Cu', 'Cu', 'S', 'P']
    with MsdAccumulator() as accumulator:
        for frame in truth:
            accumulator.add_frame(symbols, TRICLINIC, wrap(frame, TRICLINIC))
        result = accumulator.result(0.002, blocks=2)
    per_atom = msd_direct(truth - truth[0])
    for k, species in enumerate(['Cu', 'S', 'P']):
        mask = np.array(symbols) == species
        np.testing.assert_allclose(result['msd_A2'][:, k], per_atom[:, mask].mean(axis=1), atol=1e-4)
    first_block = msd_direct(truth[:20] - truth[0])
    np.testing.assert_allclose(result['msd_blocks_A2'][0, :, 0], first_block[:, np.array(symbols) == 'Cu'].mean(axis=1),
                               atol=1e-4)
    np.testing.assert_allclose(result['time_ps'], np.arange(40) * 0.002)


def test_unwrapping_follows_a_changing_cell():
    """NPT-like: the cell breathes; unwrapped displacement = sum of minimum-image steps in the current cell."""
    rng = np.random.default_rng(4)
    frac = rng.random((10, 3))
    with MsdAccumulator() as accumulator:
        expected = np.zeros((10, 3))
        previous = None
        for step in range(30):
            cell = TRICLINIC * (1 + 0.01 * np.sin(step))
            if step:
                frac = frac + rng.normal(0, 0.02, frac.shape)
            positions = (frac - np.floor(frac)) @ cell
            if previous is not None:
                move = frac - previous
                expected += move @ cell
            previous = frac.copy()
            accumulator.add_frame(['Ar'] * 10, cell, positions)
        np.testing.assert_allclose(np.asarray(accumulator._trajectory()[-1]), expected, atol=1e-5)


def test_unwrapped_positions_are_used_when_given():
    truth = random_walk(5, 3, 4.0, seed=1)  # large steps: only the unwrapped column makes this possible
    with MsdAccumulator() as accumulator:
        for frame in truth:
            accumulator.add_frame(['Ar'] * 3, TRICLINIC, wrap(frame, TRICLINIC), unwrapped=frame)
        np.testing.assert_allclose(np.asarray(accumulator._trajectory()), truth - truth[0], atol=1e-5)


def test_refusals():
    with MsdAccumulator() as accumulator:
        accumulator.add_frame(['Ar', 'Ar'], TRICLINIC, [[0, 0, 0], [1, 1, 1]])
        with pytest.raises(ValueError, match='stride: an atom moved'):
            accumulator.add_frame(['Ar', 'Ar'], TRICLINIC, [[4, 0.5, 0], [1, 1, 1]])
        with pytest.raises(ValueError, match='symbols: frame 1'):
            accumulator.add_frame(['Ar', 'Kr'], TRICLINIC, [[0, 0, 0], [1, 1, 1]])
        with pytest.raises(ValueError, match='at least 2 frames'):
            accumulator.result(0.001)
        accumulator.add_frame(['Ar', 'Ar'], TRICLINIC, [[0.1, 0, 0], [1, 1, 1]])
        with pytest.raises(ValueError, match='blocks'):
            accumulator.result(0.001, blocks=2)
        assert accumulator.result(0.001, blocks=0)['msd_blocks_A2'].shape == (0, 0, 1, 3)


def test_msd_figure():
    time = np.arange(50) * 0.01
    msd = np.zeros((50, 1, 3))
    msd[:, 0, :] = 2 * time[:, None]
    fit = diffusion_from_msd(time, msd[:, 0])
    png = plot_msd(time, msd, ['Li'], {'Li': fit}, title='test')
    assert png.startswith(b'\x89PNG') and len(png) > 1000
