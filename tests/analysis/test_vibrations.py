"""VACF / VDOS numerics: exact streaming correlation, oscillators of known frequency, GPUMD's dos.out."""

import pathlib

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_masses, atomic_numbers

from aiida_mlcampaign.analysis import vibrations as vib
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import read_dos, read_mvac

GPUMD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'


def brute_force_vacf(v, species_index, masses, n_species, max_lag):
    lags = min(max_lag, len(v))
    result = np.zeros((lags, n_species, 3))
    for k in range(lags):
        product = (v[:len(v) - k] * v[k:]).mean(axis=0) * masses[:, None]
        for s in range(n_species):
            result[k, s] = product[species_index == s].sum(axis=0)
    return result


@pytest.mark.parametrize('block, max_lag', [(1, 4), (3, 5), (7, 17), (40, 30), (2, 1)])
def test_streamed_fft_vacf_equals_direct_sum_over_all_origins(block, max_lag):
    rng = np.random.default_rng(1)
    v = rng.normal(size=(17, 5, 3))
    species, masses = np.array([0, 1, 0, 1, 1]), rng.uniform(1, 3, 5)
    accumulator = vib.VacfAccumulator(species, masses, 2, max_lag, block=block, atom_chunk=2)
    for frame in v:
        accumulator.add(frame)
    vacf, origins = accumulator.result()
    assert np.allclose(vacf, brute_force_vacf(v, species, masses, 2, max_lag), atol=1e-12)
    assert np.array_equal(origins, 17 - np.arange(min(max_lag, 17)))


def test_cosine_transform_of_normalised_correlation_has_unit_weight():
    rng = np.random.default_rng(2)
    c = np.concatenate([[1.0], rng.normal(scale=0.3, size=99)])
    nu = np.linspace(0.0, 0.5 / 0.01, 101)  # up to Nyquist for dt = 0.01 ps
    for window in ('hann', 'none'):
        spectrum = vib.cosine_transform(c, 0.01, nu, window)
        assert np.trapezoid(spectrum, nu) == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ValueError, match='window'):
        vib.cosine_transform(c, 0.01, nu, 'blackman')


def oscillator_frames(frequencies_THz, counts, dt_fs=2.0, n_frames=1200, amplitude=0.02, box=6.0,
                      wrap=True, seed=0):
    """Independent oscillators: atoms of species s vibrate at frequencies_THz[s] with random phases and axes.

    Positions are offset to straddle the cell boundary and wrapped, so finite differences must unwrap.
    """
    rng = np.random.default_rng(seed)
    symbols = [s for s, n in counts.items() for _ in range(n)]
    frequency = np.array([frequencies_THz[s] for s in symbols])[:, None]
    omega = 2 * np.pi * frequency / 1000.0  # rad/fs
    phase = rng.uniform(0, 2 * np.pi, size=(len(symbols), 3))
    centres = np.where(rng.random((len(symbols), 3)) < 0.5, 0.005, box - 0.005)  # right at the boundary
    cell = np.eye(3) * box
    for step in range(n_frames):
        time = step * dt_fs
        positions = centres + amplitude * np.sin(omega * time + phase)
        velocities = amplitude * omega * np.cos(omega * time + phase)  # Å/fs
        if wrap:
            positions = np.mod(positions, box)
        yield {'species': symbols, 'positions': positions, 'cell': cell, 'pbc': (True, True, True),
               'velocities': velocities, 'masses': None, 'time': time}


def peak(result, s):
    return result['frequency_THz'][np.argmax(result['partial_dos_per_THz'][s])]


def test_two_species_oscillators_peak_at_their_frequencies_and_integrate_to_3n():
    frequencies = {'Cu': 5.0, 'S': 12.0}
    vacf = vib.vacf_from_frames(oscillator_frames(frequencies, {'Cu': 3, 'S': 2}), max_lag=400)
    assert vacf['species'] == ['Cu', 'S'] and list(vacf['num_atoms']) == [3, 2]
    assert vacf['velocity_source'] == 'velocities' and vacf['timestep_fs'] == 2.0
    # Mean v^2 per component is (A omega)^2 / 2: T = m <v^2> / k_B, up to the finite sampling of the phases.
    for s, name in enumerate(vacf['species']):
        v2 = (0.02 * 2 * np.pi * frequencies[name] / 1000.0 * 1000.0) ** 2 / 2  # (Å/ps)^2
        expected = atomic_masses[atomic_numbers[name]] * v2 * vib.AMU_A2_PER_PS2_IN_EV / vib.KB_EV_PER_K
        assert vacf['temperature_K'][s] == pytest.approx(expected, rel=0.05)

    full = vib.vdos_from_vacf(vacf['time_ps'], vacf['vacf'], vacf['num_atoms'])  # grid up to Nyquist = 250 THz
    assert full['nyquist_THz'] == pytest.approx(250.0)
    assert full['integral'] == pytest.approx([9.0, 6.0], rel=1e-6)
    assert np.trapezoid(full['dos_per_THz'], full['frequency_THz']) == pytest.approx(15.0, rel=1e-6)

    fine = vib.vdos_from_vacf(vacf['time_ps'], vacf['vacf'], vacf['num_atoms'], frequency_max_THz=20.0,
                              num_frequencies=2001)
    assert peak(fine, 0) == pytest.approx(5.0, abs=0.02)
    assert peak(fine, 1) == pytest.approx(12.0, abs=0.02)


def test_finite_differences_of_wrapped_positions_recover_the_frequency():
    frames = oscillator_frames({'Cu': 8.0}, {'Cu': 4}, wrap=True)
    stripped = ({**f, 'velocities': None, 'time': None} for f in frames)
    vacf = vib.vacf_from_frames(stripped, max_lag=400, timestep_fs=2.0)
    assert vacf['velocity_source'] == 'finite_difference'
    assert vacf['num_frames'] == 1200 and vacf['num_velocity_frames'] == 1199
    reference = vib.vacf_from_frames(oscillator_frames({'Cu': 8.0}, {'Cu': 4}), max_lag=400)
    # Forward differences damp by sinc^2(pi nu dt) = 0.9974 at 8 THz and 2 fs.
    damping = np.sinc(8.0 * 0.002) ** 2
    assert vacf['temperature_K'][0] == pytest.approx(reference['temperature_K'][0] * damping, rel=0.01)
    fine = vib.vdos_from_vacf(vacf['time_ps'], vacf['vacf'], vacf['num_atoms'], frequency_max_THz=20.0,
                              num_frequencies=2001)
    assert peak(fine, 0) == pytest.approx(8.0, abs=0.02)
    # Forcing the route: positions although velocities exist.
    forced = vib.vacf_from_frames(oscillator_frames({'Cu': 8.0}, {'Cu': 4}), max_lag=50, velocity_source='positions')
    assert forced['velocity_source'] == 'finite_difference'


class Spring(Calculator):
    """Every atom tied to its start position by an isotropic spring k (eV/Å^2)."""

    implemented_properties = ['energy', 'forces']

    def __init__(self, k, origin):
        super().__init__()
        self.k, self.origin = k, np.array(origin)

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        displacement = atoms.positions - self.origin
        self.results = {'energy': 0.5 * self.k * (displacement**2).sum(), 'forces': -self.k * displacement}


def test_ase_verlet_spring_peaks_at_its_frequency():
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = Atoms('Ar2', positions=[[1, 1, 1], [4, 4, 4]], cell=[8, 8, 8], pbc=True)
    k = 2.0
    atoms.calc = Spring(k, atoms.positions)
    rng = np.random.default_rng(3)
    atoms.set_momenta(rng.normal(size=(2, 3)) * 0.1)
    expected = np.sqrt(k / atomic_masses[18]) * units.fs / (2 * np.pi) * 1000.0  # THz
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    frames = []
    for _ in range(1500):
        dynamics.run(1)
        snapshot = atoms.copy()
        snapshot.info['time_fs'] = dynamics.get_time() / units.fs
        frames.append(snapshot)
    vacf = vib.vacf_from_frames(iter(frames), max_lag=600)
    assert vacf['velocity_source'] == 'velocities' and vacf['timestep_fs'] == pytest.approx(1.0)
    fine = vib.vdos_from_vacf(vacf['time_ps'], vacf['vacf'], vacf['num_atoms'], frequency_max_THz=3 * expected,
                              num_frequencies=3001)
    assert peak(fine, 0) == pytest.approx(expected, abs=0.02)


def test_time_step_is_required_and_checked():
    frames = [{**f, 'time': None} for f in oscillator_frames({'Cu': 5.0}, {'Cu': 1}, n_frames=5)]
    with pytest.raises(ValueError, match='timestep_fs: the frames carry no time'):
        vib.vacf_from_frames(iter(frames), max_lag=3)
    with pytest.raises(ValueError, match='timestep_fs: 3.0 fs given but the frames are 2.0 fs apart'):
        vib.vacf_from_frames(oscillator_frames({'Cu': 5.0}, {'Cu': 1}, n_frames=5), max_lag=3, timestep_fs=3.0)
    uneven = list(oscillator_frames({'Cu': 5.0}, {'Cu': 1}, n_frames=5))
    uneven[3]['time'] += 0.5
    with pytest.raises(FormatError, match='frame 3: time step 2.5 fs differs from 2.0 fs'):
        vib.vacf_from_frames(iter(uneven), max_lag=3)
    with pytest.raises(FormatError, match='at least 2 velocity frames'):
        vib.vacf_from_frames(oscillator_frames({'Cu': 5.0}, {'Cu': 1}, n_frames=1), max_lag=3)
    with pytest.raises(ValueError, match='frequency_max_THz: 300.0 THz is above the Nyquist'):
        vib.vdos_from_vacf([0, 0.002], np.ones((2, 1, 3)), [1], frequency_max_THz=300.0)


@pytest.mark.parametrize('folder, atoms', [('graphene_dos_vac_v4.0', 8640), ('carbon_nep_dos_legacy_v3.x', 64000)])
def test_gpumd_mvac_transformed_here_reproduces_gpumd_dos_out(folder, atoms):
    """GPUMD's compute_dos: mvac.out -> dos.out, for a v4.0 and a legacy v3.x run.

    The atom count behind dos.out (not in the fixture) comes out of a least-squares fit and must be an
    integer. Tolerance 2e-5 of each column's maximum: both files are printed with %g (6 significant
    digits), and the rounding of the 200 mvac values (≤ 5e-7 each) summed with weights 4 dt N gives
    at most ~1e-5 of the peak; the observed difference is ≤ 4e-6.
    """
    mvac, dos = read_mvac(GPUMD / folder / 'mvac.out'), read_dos(GPUMD / folder / 'dos.out')
    per_atom = vib.gpumd_dos_from_mvac(mvac['time_ps'], mvac['mvac'], dos['omega_THz'], 1)
    fitted = np.sum(dos['dos_per_THz'] * per_atom) / np.sum(per_atom**2)
    assert fitted == pytest.approx(atoms, abs=0.05)
    difference = np.abs(dos['dos_per_THz'] - atoms * per_atom).max(axis=0)
    assert (difference < 2e-5 * np.abs(dos['dos_per_THz']).max(axis=0)).all()
    # As a VDOS over ordinary frequency: the three components carry 3N up to the Nyquist frequency.
    vdos = vib.vdos_from_mvac(mvac['time_ps'], mvac['mvac'], num_atoms=atoms)
    assert vdos['nyquist_THz'] == pytest.approx(100.0)
    assert vdos['integral'][0] == pytest.approx(3 * atoms, rel=1e-9)


def test_vdos_figure_is_a_png():
    vacf = vib.vacf_from_frames(oscillator_frames({'Cu': 5.0, 'S': 9.0}, {'Cu': 2, 'S': 1}, n_frames=200), max_lag=80)
    result = vib.vdos_from_vacf(vacf['time_ps'], vacf['vacf'], vacf['num_atoms'])
    total = vacf['vacf'].sum(axis=2)
    png = vib.plot_vdos(vacf['time_ps'], total / total[0], result['frequency_THz'], result['partial_dos_per_THz'],
                        vacf['species'], title='test')
    assert png.startswith(b'\x89PNG') and len(png) > 1000


def test_ase_extxyz_momenta_are_velocities(tmp_path):
    """An ASE-written extended XYZ stores momenta, not velocities: they are converted, not differenced."""
    import ase.io
    from ase import units

    from aiida_mlcampaign.formats.gpumd import iter_dump_xyz

    images = []
    for frame in oscillator_frames({'Cu': 5.0}, {'Cu': 2}, n_frames=60):
        atoms = Atoms(frame['species'], positions=frame['positions'], cell=frame['cell'], pbc=True)
        atoms.set_velocities(frame['velocities'] / units.fs)
        atoms.info['time'] = frame['time']
        images.append(atoms)
    ase.io.write(tmp_path / 'md.xyz', images, format='extxyz')
    from_file = vib.vacf_from_frames(iter_dump_xyz(tmp_path / 'md.xyz'), max_lag=20)
    direct = vib.vacf_from_frames(oscillator_frames({'Cu': 5.0}, {'Cu': 2}, n_frames=60), max_lag=20)
    assert from_file['velocity_source'] == 'velocities' and from_file['timestep_fs'] == pytest.approx(2.0)
    assert np.allclose(from_file['vacf'], direct['vacf'], rtol=1e-5)
