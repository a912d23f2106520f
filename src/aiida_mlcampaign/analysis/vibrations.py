"""Velocity autocorrelation (VACF) and vibrational density of states (VDOS) from MD frames.

Why this shape:

* **Streaming.** A production trajectory does not fit in memory, so frames are consumed one at a
  time. The VACF over *all* time origins is still exact: :class:`VacfAccumulator` keeps only the
  last ``block + max_lag - 1`` velocity frames and correlates each block of ``block`` origins with
  the frames that follow it by FFT (overlap-save), so memory is ``O(N_atoms * (block + max_lag))``
  and time ``O(T log)``, never ``O(T * max_lag)``.
* **Mass-weighted, per species.** ``C_s(t) = sum_{i in s} m_i <v_i(0) v_i(t)>`` (per Cartesian
  component, in amu Å²/ps²). At t = 0 it is ``N_s k_B T`` per component, which gives the kinetic
  temperature of each species as a free consistency check.
* **Normalisation.** ``g_s(nu) = 3 N_s * 2 dt [w_0 C_0 + 2 sum_k w_k C_k cos(2 pi nu t_k)] / C_s(0)``
  (``C`` summed over components): frequencies ``nu`` in THz (ordinary, not angular), and
  ``integral_0^{nu_Nyquist} g_s dnu = 3 N_s`` exactly on a grid that reaches the Nyquist frequency
  ``1/(2 dt)``. The default window is GPUMD's Hann window ``w_k = (1 + cos(pi k / N_c)) / 2``
  (``N_c`` = number of lags), so a GPUMD ``mvac.out`` transformed here reproduces its ``dos.out``
  (:func:`gpumd_dos_from_mvac`): GPUMD's ``dos_x(omega)`` (1/THz, angular omega, ``∫dos dω/2π = N``)
  equals ``N * g_x(nu = omega / 2 pi)``.
* **Velocities.** Taken from the frames when they carry them (GPUMD ``dump_xyz ... velocity``,
  Å/fs; ASE momenta), otherwise by forward differences of positions, ``v(t + dt/2) = (r(t + dt) -
  r(t)) / dt`` with the displacement reduced to the minimum image, so wrapped positions are fine as
  long as no atom moves more than half a cell between frames. The difference quotient damps a mode
  of frequency ``nu`` by ``sinc²(nu dt)`` (``sin(x)/x`` with ``x = pi nu dt``): 5 % at a quarter of
  the Nyquist frequency and 19 % at half of it, so sample AIMD positions at least every
  ~1/(8 nu_max). The result records which source was used (``velocity_source``).

No AiiDA import: the calcfunctions in ``calculations/analysis_vibrations.py`` wrap these.
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

from aiida_mlcampaign.formats.frames import FormatError, Frame

__all__ = [
    'AMU_A2_PER_PS2_IN_EV',
    'KB_EV_PER_K',
    'FrameData',
    'VacfAccumulator',
    'cosine_transform',
    'frame_data',
    'gpumd_dos_from_mvac',
    'hann_window',
    'plot_vdos',
    'vacf_from_frames',
    'vdos_from_mvac',
    'vdos_from_vacf',
    'velocities_from_positions',
]

KB_EV_PER_K = 8.617333262e-5
"""Boltzmann constant in eV/K."""

AMU_A2_PER_PS2_IN_EV = 1.66053906660e-27 * 1e-20 / 1e-24 / 1.602176634e-19
"""1 amu·Å²/ps² in eV (≈ 1.0364e-4)."""

WINDOWS = ('hann', 'none')


# --------------------------------------------------------------------------------------- frames


@dataclasses.dataclass
class FrameData:
    """What the VACF needs from one frame, whatever file it came from (Å, Å/fs, amu, fs)."""

    symbols: list[str]
    positions: np.ndarray
    cell: np.ndarray
    pbc: tuple[bool, bool, bool]
    velocities: np.ndarray | None = None
    masses: np.ndarray | None = None
    time_fs: float | None = None


def frame_data(frame) -> FrameData:
    """Normalise an ``iter_dump_xyz`` dict, a :class:`Frame` or an ``ase.Atoms`` to :class:`FrameData`."""
    if isinstance(frame, FrameData):
        return frame
    if isinstance(frame, dict):
        masses = None if frame.get('masses') is None else np.asarray(frame['masses'], float)
        velocities = None if frame.get('velocities') is None else np.asarray(frame['velocities'], float)
        momenta = frame.get('arrays', {}).get('momenta')
        if velocities is None and momenta is not None:  # an ASE-written extxyz: momenta in amu Å / ASE time
            from ase import units
            from ase.data import atomic_masses, atomic_numbers

            weights = masses if masses is not None else np.array(
                [atomic_masses[atomic_numbers[s]] for s in frame['species']])
            velocities = np.asarray(momenta, float) / weights[:, None] * units.fs
        return FrameData(
            symbols=list(frame['species']), positions=np.asarray(frame['positions'], float),
            cell=np.asarray(frame['cell'], float), pbc=tuple(frame.get('pbc', (True, True, True))),
            velocities=velocities, masses=masses, time_fs=frame.get('time'),
        )
    if isinstance(frame, Frame):
        time = frame.info.get('time_fs', frame.info.get('time'))
        return FrameData(symbols=list(frame.symbols), positions=frame.positions, cell=frame.cell,
                         pbc=frame.pbc, time_fs=None if time is None else float(time))
    # ase.Atoms: velocities only when momenta were stored (ASE velocity unit = Å / ase.units.fs^-1).
    from ase import units

    velocities = None
    if 'momenta' in frame.arrays:
        velocities = frame.get_velocities() * units.fs
    time = frame.info.get('time_fs', frame.info.get('time'))
    return FrameData(
        symbols=frame.get_chemical_symbols(), positions=frame.get_positions(), cell=np.array(frame.cell),
        pbc=tuple(bool(p) for p in frame.pbc), velocities=velocities,
        masses=frame.get_masses() if 'masses' in frame.arrays else None,
        time_fs=None if time is None else float(time),
    )


def velocities_from_positions(frames: t.Iterable[FrameData], timestep_fs: float) -> t.Iterator[np.ndarray]:
    """Forward-difference velocities (Å/fs) at the mid-points of consecutive frames, minimum image."""
    previous = None
    for frame in frames:
        if previous is not None:
            delta = frame.positions - previous.positions
            periodic = np.asarray(frame.pbc, dtype=bool)
            if periodic.any():
                cell = 0.5 * (np.asarray(frame.cell) + np.asarray(previous.cell))
                fractional = np.linalg.solve(cell.T, delta.T).T
                fractional[:, periodic] -= np.round(fractional[:, periodic])
                delta = fractional @ cell
            yield delta / timestep_fs
        previous = frame


# ------------------------------------------------------------------------------------- the VACF


def _fft_length(n: int) -> int:
    return 1 << max(int(n - 1).bit_length(), 0)


class VacfAccumulator:
    """Exact all-origin, mass-weighted VACF per species from velocities fed one frame at a time.

    ``add(velocities)`` takes an (N, 3) array in Å/ps; ``result()`` returns the VACF
    ``(n_lag, n_species, 3)`` in amu Å²/ps², averaged over every origin (``T - k`` origins at lag
    ``k``) and summed over the atoms of each species. ``atom_chunk`` bounds the FFT work array.
    """

    def __init__(self, species_index, masses, n_species: int, max_lag: int, block: int | None = None,
                 atom_chunk: int = 4096):
        self.species_index = np.asarray(species_index, dtype=int)
        self.masses = np.asarray(masses, dtype=float)
        if self.masses.shape != self.species_index.shape:
            raise ValueError('masses: one per atom expected')
        if max_lag < 1:
            raise ValueError(f'max_lag: must be >= 1, got {max_lag}')
        self.max_lag = int(max_lag)
        self.block = int(block or max(self.max_lag, 64))
        self.n_species = int(n_species)
        self.atom_chunk = int(atom_chunk)
        self._buffer: list[np.ndarray] = []
        self._sum = np.zeros((self.max_lag, self.n_species, 3))
        self._count = np.zeros(self.max_lag)
        self.n_frames = 0

    def add(self, velocities) -> None:
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != (len(self.masses), 3):
            raise FormatError(
                f'velocities: frame {self.n_frames} has shape {velocities.shape}, expected ({len(self.masses)}, 3)'
            )
        if not np.isfinite(velocities).all():
            raise FormatError(f'velocities: frame {self.n_frames} holds NaN or infinite values')
        self._buffer.append(velocities)
        self.n_frames += 1
        if len(self._buffer) == self.block + self.max_lag - 1:
            self._correlate(self.block)
            del self._buffer[:self.block]

    def _correlate(self, n_origins: int) -> None:
        data = np.stack(self._buffer)  # (L, N, 3)
        length = len(data)
        lags = min(self.max_lag, length)
        # No wrap-around: origin t < n_origins meets frame t + k <= n_origins + lags - 2 < size.
        size = _fft_length(max(length, n_origins + lags - 1))
        for start in range(0, data.shape[1], self.atom_chunk):
            chunk = data[:, start:start + self.atom_chunk, :]
            origins = np.zeros_like(chunk)
            origins[:n_origins] = chunk[:n_origins]
            spectrum_a = np.fft.rfft(origins, n=size, axis=0)
            spectrum_b = np.fft.rfft(chunk, n=size, axis=0)
            correlation = np.fft.irfft(np.conj(spectrum_a) * spectrum_b, n=size, axis=0)[:lags]
            weighted = correlation * self.masses[start:start + self.atom_chunk, None]
            species = self.species_index[start:start + self.atom_chunk]
            for s in range(self.n_species):
                self._sum[:lags, s, :] += weighted[:, species == s, :].sum(axis=1)
        if n_origins < length:  # a full block: every origin has all lags
            self._count[:lags] += n_origins
        else:  # the tail: origin t has lags up to length - 1 - t
            self._count[:lags] += length - np.arange(lags)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vacf, origins_per_lag)``; lags never reached (trajectory shorter than max_lag) are dropped."""
        if self._buffer:
            self._correlate(len(self._buffer))
            self._buffer = []
        if self.n_frames < 2:
            raise FormatError(f'trajectory: at least 2 velocity frames are needed, got {self.n_frames}')
        reached = self._count > 0
        return self._sum[reached] / self._count[reached, None, None], self._count[reached].copy()


def vacf_from_frames(frames: t.Iterable, max_lag: int, timestep_fs: float | None = None,
                     velocity_source: str = 'auto', species: t.Sequence[str] | None = None,
                     block: int | None = None) -> dict:
    """Stream ``frames`` into the mass-weighted VACF per species.

    ``frames``: ``iter_dump_xyz`` dicts, :class:`Frame` objects or ``ase.Atoms``, in time order.
    ``timestep_fs`` is the time between frames; when the frames carry times (GPUMD ``Time=``) it
    is read from them and a given value must agree. ``velocity_source``: ``'auto'`` (the frames'
    velocities if the first frame has them, else positions), ``'velocities'`` or ``'positions'``.
    ``max_lag`` is the number of correlation points (lags 0 .. max_lag - 1).

    Returns ``time_ps`` (n_lag,), ``vacf`` (n_lag, S, 3) amu Å²/ps², ``species`` (S), ``num_atoms``
    (S,) per species, ``temperature_K`` (S,) from ``C_s(0) = 3 N_s k_B T``, ``timestep_fs``,
    ``num_frames``, ``num_velocity_frames`` and ``velocity_source`` (``'velocities'`` or
    ``'finite_difference'``).
    """
    from ase.data import atomic_masses, atomic_numbers

    if velocity_source not in ('auto', 'velocities', 'positions'):
        raise ValueError(f"velocity_source: expected 'auto', 'velocities' or 'positions', got {velocity_source!r}")
    if timestep_fs is not None and not timestep_fs > 0:
        raise ValueError(f'timestep_fs: must be positive, got {timestep_fs}')
    stream = (frame_data(frame) for frame in frames)
    first = next(stream, None)
    if first is None:
        raise FormatError('trajectory: no frames')
    symbols = list(first.symbols)
    order = list(species) if species else sorted(set(symbols), key=symbols.index)
    missing = sorted(set(symbols) - set(order))
    if missing:
        raise ValueError(f'species: {missing} occur in the trajectory but not in {order}')
    species_index = np.array([order.index(s) for s in symbols])
    masses = first.masses if first.masses is not None else np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
    use_velocities = velocity_source == 'velocities' or (velocity_source == 'auto' and first.velocities is not None)
    if use_velocities and first.velocities is None:
        raise FormatError("velocity_source: 'velocities' requested but the first frame has no velocities")

    state = {'frames': 0, 'dt': None, 'last_time': None}

    def checked(stream_of_frames):
        for index, frame in enumerate(stream_of_frames):
            if list(frame.symbols) != symbols:
                raise FormatError(f'trajectory: frame {index} has different species or atom order than frame 0')
            if frame.time_fs is not None:
                if state['last_time'] is not None:
                    step = frame.time_fs - state['last_time']
                    if state['dt'] is None:
                        state['dt'] = step
                    elif not np.isclose(step, state['dt'], rtol=1e-6, atol=1e-9):
                        raise FormatError(
                            f'trajectory: frame {index}: time step {step} fs differs from {state["dt"]} fs '
                            '(frames must be equally spaced)'
                        )
                state['last_time'] = frame.time_fs
            state['frames'] += 1
            yield frame

    frames_checked = checked(_chain(first, stream))
    if use_velocities:
        def velocity_stream():
            for index, frame in enumerate(frames_checked):
                if frame.velocities is None:
                    raise FormatError(f'trajectory: frame {index} has no velocities but frame 0 has')
                yield frame.velocities
    else:
        def velocity_stream():
            # The time step is needed for the difference quotient; scale afterwards instead of guessing.
            yield from velocities_from_positions(frames_checked, 1.0)

    accumulator = VacfAccumulator(species_index, masses, len(order), max_lag, block=block)
    for velocities in velocity_stream():
        accumulator.add(velocities * 1000.0)  # Å/fs (or Å/step) -> Å/ps (or Å/ps per fs)
    vacf, origins = accumulator.result()

    dt = state['dt']
    if dt is not None and timestep_fs is not None and not np.isclose(dt, timestep_fs, rtol=1e-6):
        raise ValueError(f'timestep_fs: {timestep_fs} fs given but the frames are {dt} fs apart')
    dt = dt if dt is not None else timestep_fs
    if dt is None:
        raise ValueError('timestep_fs: the frames carry no time; give the time between frames in fs')
    if not dt > 0:
        raise FormatError(f'trajectory: frame times do not increase (step {dt} fs)')
    if not use_velocities:
        vacf = vacf / dt**2  # positions were differenced per frame, not per fs
    num_atoms = np.bincount(species_index, minlength=len(order))
    temperature = vacf[0].sum(axis=1) * AMU_A2_PER_PS2_IN_EV / (3 * num_atoms * KB_EV_PER_K)
    return {
        'time_ps': np.arange(len(vacf)) * dt / 1000.0,
        'vacf': vacf,
        'origins_per_lag': origins,
        'species': order,
        'num_atoms': num_atoms,
        'temperature_K': temperature,
        'timestep_fs': float(dt),
        'num_frames': state['frames'],
        'num_velocity_frames': accumulator.n_frames,
        'velocity_source': 'velocities' if use_velocities else 'finite_difference',
    }


def _chain(first, rest):
    yield first
    yield from rest


# ------------------------------------------------------------------------------------- the VDOS


def hann_window(n_lag: int) -> np.ndarray:
    """GPUMD's Hann window ``(1 + cos(pi k / n_lag)) / 2``, k = 0 .. n_lag - 1 (never exactly zero)."""
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(n_lag) / n_lag))


def cosine_transform(correlation, dt_ps: float, frequency_THz, window: str = 'hann') -> np.ndarray:
    """``2 dt [w_0 c_0 + 2 sum_k w_k c_k cos(2 pi nu k dt)]`` for each column of ``correlation``.

    ``correlation`` (n_lag, ...) sampled every ``dt_ps``; returns (n_freq, ...). Its integral over
    ``nu`` from 0 to ``1/(2 dt)`` is ``c_0``: a correlation normalised to 1 at t = 0 gives a
    spectrum with unit weight.
    """
    if window not in WINDOWS:
        raise ValueError(f'window: expected one of {WINDOWS}, got {window!r}')
    correlation = np.asarray(correlation, dtype=float)
    n_lag = correlation.shape[0]
    weights = np.full(n_lag, 2.0)
    weights[0] = 1.0
    if window == 'hann':
        weights *= hann_window(n_lag)
    frequency = np.asarray(frequency_THz, dtype=float)
    flat = correlation.reshape(n_lag, -1) * weights[:, None]
    result = np.empty((len(frequency), flat.shape[1]))
    times = np.arange(n_lag) * dt_ps
    for start in range(0, len(frequency), 512):  # bounded (512 x n_lag) cosine table
        phases = 2.0 * np.pi * np.outer(frequency[start:start + 512], times)
        result[start:start + 512] = np.cos(phases) @ flat
    return (2.0 * dt_ps * result).reshape((len(frequency),) + correlation.shape[1:])


def _frequency_grid(dt_ps: float, n_lag: int, frequency_max_THz: float | None, num_frequencies: int | None):
    nyquist = 0.5 / dt_ps
    top = nyquist if frequency_max_THz is None else float(frequency_max_THz)
    if not top > 0:
        raise ValueError(f'frequency_max_THz: must be positive, got {frequency_max_THz}')
    if top > nyquist * (1 + 1e-9):
        raise ValueError(f'frequency_max_THz: {top} THz is above the Nyquist frequency {nyquist:.6g} THz '
                         f'of the {dt_ps * 1000:g} fs sampling')
    count = int(num_frequencies) if num_frequencies else max(2 * n_lag, 200) + 1
    if count < 2:
        raise ValueError(f'num_frequencies: must be >= 2, got {num_frequencies}')
    return np.linspace(0.0, top, count), nyquist


def vdos_from_vacf(time_ps, vacf, num_atoms, window: str = 'hann', frequency_max_THz: float | None = None,
                   num_frequencies: int | None = None) -> dict:
    """Per-species VDOS (1/THz over ordinary frequency in THz), each normalised to ``3 N_s``.

    ``vacf`` (n_lag, S, 3) as from :func:`vacf_from_frames`. Returns ``frequency_THz`` (n,),
    ``partial_dos_per_THz`` (S, n), ``dos_per_THz`` (n,) = sum over species,
    ``nyquist_THz``, ``integral`` (S,) trapezoid integral of each partial over the grid (``3 N_s``
    when the grid reaches the Nyquist frequency and no weight lies above ``frequency_max_THz``).
    """
    time_ps = np.asarray(time_ps, dtype=float)
    vacf = np.asarray(vacf, dtype=float)
    if vacf.ndim != 3 or vacf.shape[2] != 3 or len(time_ps) != vacf.shape[0]:
        raise ValueError(f'vacf: expected shape (n_lag, n_species, 3) matching time_ps, got {vacf.shape}')
    if len(time_ps) < 2:
        raise ValueError('vacf: at least 2 lags are needed')
    dt = float(time_ps[1] - time_ps[0])
    if not dt > 0 or not np.allclose(np.diff(time_ps), dt, rtol=1e-4):
        raise ValueError('time_ps: must be equally spaced and increasing')
    num_atoms = np.asarray(num_atoms, dtype=float).reshape(-1)
    total = vacf.sum(axis=2)  # (n_lag, S)
    if not (total[0] > 0).all():
        raise ValueError('vacf: the t = 0 value of every species must be positive (atoms at rest?)')
    frequency, nyquist = _frequency_grid(dt, len(time_ps), frequency_max_THz, num_frequencies)
    spectra = cosine_transform(total / total[0], dt, frequency, window) * (3.0 * num_atoms)
    partial = spectra.T
    return {
        'frequency_THz': frequency,
        'partial_dos_per_THz': partial,
        'dos_per_THz': partial.sum(axis=0),
        'nyquist_THz': nyquist,
        'integral': np.trapezoid(partial, frequency, axis=1),
    }


def gpumd_dos_from_mvac(time_ps, mvac, omega_THz, num_atoms: int) -> np.ndarray:
    """GPUMD's ``dos.out`` columns from its ``mvac.out``: ``num_atoms * g_alpha(omega / 2 pi)``, (n, 3).

    The same transform as :func:`cosine_transform` with the Hann window: GPUMD's ω is angular
    (THz) and its DOS integrates to N over dω/2π, i.e. over ordinary frequency.
    """
    time_ps = np.asarray(time_ps, dtype=float)
    mvac = np.asarray(mvac, dtype=float)
    dt = float(time_ps[1] - time_ps[0])
    normalised = mvac / mvac[0]
    return num_atoms * cosine_transform(normalised, dt, np.asarray(omega_THz) / (2.0 * np.pi), 'hann')


def vdos_from_mvac(time_ps, mvac, num_atoms: int = 1, window: str = 'hann', frequency_max_THz=None,
                   num_frequencies=None) -> dict:
    """A VDOS (one 'species', ``3 num_atoms`` total) from GPUMD's normalised per-component MVAC.

    Each component is normalised to 1 at t = 0 as in GPUMD, so the three components carry equal
    weight whatever their kinetic energies.
    """
    time_ps = np.asarray(time_ps, dtype=float)
    mvac = np.asarray(mvac, dtype=float)
    if mvac.ndim != 2 or mvac.shape[1] != 3 or len(mvac) != len(time_ps):
        raise ValueError(f'mvac: expected shape (n_lag, 3) matching time_ps, got {mvac.shape}')
    if not (mvac[0] > 0).all():
        raise ValueError('mvac: the t = 0 values must be positive')
    dt = float(time_ps[1] - time_ps[0])
    frequency, nyquist = _frequency_grid(dt, len(time_ps), frequency_max_THz, num_frequencies)
    spectra = cosine_transform(mvac / mvac[0], dt, frequency, window).sum(axis=1) * num_atoms
    partial = spectra[None, :]
    return {
        'frequency_THz': frequency,
        'partial_dos_per_THz': partial,
        'dos_per_THz': spectra,
        'nyquist_THz': nyquist,
        'integral': np.trapezoid(partial, frequency, axis=1),
    }


# ------------------------------------------------------------------------------------- figure


def plot_vdos(time_ps, vacf_normalised, frequency_THz, partial_dos, species, title: str = '') -> bytes:
    """PNG: normalised VACF per species (left) and partial + total VDOS (right)."""
    from .figures import new_figure, to_png

    figure, (left, right) = new_figure(2, 1)
    for s, name in enumerate(species):
        left.plot(time_ps, vacf_normalised[:, s], label=name)
        right.plot(frequency_THz, partial_dos[s], label=name)
    if len(species) > 1:
        right.plot(frequency_THz, np.sum(partial_dos, axis=0), color='k', lw=1.0, label='total')
    left.axhline(0.0, color='0.6', lw=0.6)
    left.set_xlabel('time (ps)')
    left.set_ylabel('mass-weighted VACF C(t)/C(0)')
    right.set_xlabel('frequency ν (THz)')
    right.set_ylabel('VDOS g(ν) (1/THz, ∫g dν = 3N)')
    right.set_xlim(frequency_THz[0], frequency_THz[-1])
    right.set_ylim(bottom=min(0.0, float(np.min(partial_dos))))
    for axes in (left, right):
        axes.legend(fontsize='small')
    if title:
        figure.suptitle(title)
    return to_png(figure)
