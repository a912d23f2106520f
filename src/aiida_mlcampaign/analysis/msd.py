"""Mean-square displacement per species over all time origins, from wrapped frames that arrive one by one.

Unwrapping. MD programs write positions wrapped into the cell. Between two consecutive frames the
displacement is taken as the minimum image in fractional coordinates (``ds - round(ds)``), then
converted with the current cell, so triclinic and NPT cells work. This recovers the true
displacement exactly when every atom moves less than half the smallest cell width between the
stored frames; a frame pair where some atom seems to move more than a third of it is refused (the
stride is too large to unwrap reliably, and a larger jump would be silently folded back).

Memory trade-off, stated honestly. The FFT algorithm needs the whole time series of each atom, so
the positions of every frame must be kept somewhere: the MSD cannot be streamed the way an RDF
can. :class:`MsdAccumulator` never holds the frames; it appends each frame's unwrapped displacement
from the first frame as float32 (12 bytes per atom and frame) to an anonymous temporary file and,
at the end, memory-maps it and transforms a block of atoms at a time. RAM then holds one block of
atoms and its FFT work arrays (``block_bytes``, default 128 MB, bounds them), plus one (N, 3) float64
running displacement; disk holds ``12 * T * N`` bytes (1e5 atoms x 1e4 frames = 12 GB,
so put ``directory`` on scratch for such runs). Displacements from the first frame, not absolute
unwrapped positions, are stored so float32 keeps ~1e-6 relative precision of the displacement itself.

FFT MSD (Calandrini et al. / nMoldyn, Kneller et al., Comput. Phys. Commun. 91 (1995) 191), for
one coordinate x(k), k = 0..T-1 and lag m:

    MSD(m) = S1(m) - 2 S2(m),
    S1(m) = 1/(T-m) sum_{k=0}^{T-m-1} [x(k+m)^2 + x(k)^2]        (running sums, O(T))
    S2(m) = 1/(T-m) sum_{k=0}^{T-m-1} x(k) x(k+m)                 (autocorrelation by FFT, O(T log T))

which equals the direct average over all T-m origins (:func:`msd_direct`, O(T^2), kept for tests).
"""

from __future__ import annotations

import tempfile
import typing as t

import numpy as np

__all__ = ['MsdAccumulator', 'msd_direct', 'msd_fft', 'plot_msd']


def msd_fft(x) -> np.ndarray:
    """MSD over all time origins for every column of ``x`` (shape (T, ...)); returns (T, ...) in x's units²."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    if n == 0:
        return np.zeros_like(x)
    squares = x * x
    total = 2.0 * squares.sum(axis=0)
    zero = np.zeros((1,) + x.shape[1:])
    front = np.concatenate([zero, np.cumsum(squares, axis=0)[:-1]])        # sum_{k<m} x(k)^2
    back = np.concatenate([zero, np.cumsum(squares[::-1], axis=0)[:-1]])   # sum_{k>=T-m} x(k)^2
    remaining = (n - np.arange(n)).reshape((n,) + (1,) * (x.ndim - 1))
    s1 = (total - front - back) / remaining
    size = 1 << int(np.ceil(np.log2(2 * n)))  # zero padding to >= 2T removes the circular wrap
    spectrum = np.fft.rfft(x, n=size, axis=0)
    correlation = np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[:n]
    s2 = correlation / remaining
    return s1 - 2.0 * s2


def msd_direct(x) -> np.ndarray:
    """Reference O(T^2) MSD: for each lag, the mean of squared differences over all origins."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    result = np.zeros_like(x)
    for lag in range(1, n):
        difference = x[lag:] - x[:n - lag]
        result[lag] = np.mean(difference * difference, axis=0)
    return result


def _min_width(cell: np.ndarray) -> float:
    volume = abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
    return volume / max(np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3))


class MsdAccumulator:
    """Unwrap frames one at a time and store their displacements on disk for the FFT MSD.

    Atoms must keep their order and species through the trajectory (as in an MD dump).
    ``directory`` is where the temporary file goes (default: the system temporary directory);
    it is deleted when the accumulator is closed or garbage-collected.
    """

    max_jump_fraction = 1.0 / 3.0

    def __init__(self, directory: str | None = None):
        self.symbols: list[str] | None = None
        self.num_frames = 0
        self._file = tempfile.TemporaryFile(dir=directory)
        self._previous_frac: np.ndarray | None = None
        self._displacement: np.ndarray | None = None
        self._volume_sum = 0.0
        self.max_displacement_A = 0.0

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add_frame(self, symbols: t.Sequence[str], cell, positions, unwrapped=None) -> None:
        """Add a frame (Å). ``unwrapped`` positions (e.g. GPUMD's ``unwrapped_position``) skip unwrapping."""
        symbols = [str(s) for s in symbols]
        cell = np.asarray(cell, dtype=float).reshape(3, 3)
        positions = np.asarray(positions, dtype=float)
        if positions.shape != (len(symbols), 3):
            raise ValueError(f'positions: expected shape ({len(symbols)}, 3), got {positions.shape}')
        volume = abs(float(np.dot(cell[0], np.cross(cell[1], cell[2]))))
        if not volume > 0:
            raise ValueError(f'cell: the cell of frame {self.num_frames} has zero volume')
        if self.symbols is None:
            self.symbols = symbols
            self._origin = None if unwrapped is None else np.asarray(unwrapped, dtype=float).copy()
            self._displacement = np.zeros((len(symbols), 3))
        else:
            if symbols != self.symbols:
                raise ValueError(
                    f'symbols: frame {self.num_frames} has different atoms or order than frame 0 '
                    '(the MSD needs the same atoms in the same order in every frame)'
                )
            if unwrapped is not None and self._origin is not None:
                self._displacement = np.asarray(unwrapped, dtype=float) - self._origin
            else:
                step = np.linalg.solve(cell.T, positions.T).T - self._previous_frac
                step -= np.round(step)
                step = step @ cell
                jump = float(np.sqrt(np.max(np.einsum('ij,ij->i', step, step))))
                limit = self.max_jump_fraction * _min_width(cell)
                if jump > limit:
                    raise ValueError(
                        f'stride: an atom moved {jump:.3f} Å between frames {self.num_frames - 1} and '
                        f'{self.num_frames}, more than a third of the smallest cell width ({limit:.3f} Å); '
                        'the frames are too far apart to unwrap, use a smaller stride'
                    )
                self.max_displacement_A = max(self.max_displacement_A, jump)
                self._displacement += step
        self._previous_frac = np.linalg.solve(cell.T, positions.T).T
        self._displacement.astype(np.float32).tofile(self._file)
        self._volume_sum += volume
        self.num_frames += 1

    def _trajectory(self) -> np.ndarray:
        """The stored displacements as a read-only (T, N, 3) float32 memory map."""
        self._file.flush()
        natoms = len(self.symbols)
        return np.memmap(self._file, dtype=np.float32, mode='r', shape=(self.num_frames, natoms, 3))

    def _atoms(self, begin: int, end: int) -> np.ndarray:
        """Displacements of atoms begin..end over all frames as float64 (T, end - begin, 3).

        A fresh map per block, dropped at once: the file pages it touched leave the resident set
        with it, so the whole file is never resident (a long-lived map would keep every page).
        """
        trajectory = self._trajectory()
        try:
            return np.array(trajectory[:, begin:end, :], dtype=float)
        finally:
            del trajectory

    def result(self, time_step_ps: float, blocks: int = 5, block_bytes: int = 128 * 2**20) -> dict:
        """Per-species MSD (x, y, z) over all origins, for the whole run and for ``blocks`` equal blocks.

        Returns ``time_ps`` (T,) lags, ``msd_A2`` (T, S, 3), ``block_time_ps`` (Tb,) and
        ``msd_blocks_A2`` (B, Tb, S, 3) with Tb = T // B (the blocks give the error bar of D by
        block averaging; ``blocks=0`` skips them), ``species``, ``counts`` (atoms per species),
        ``mean_volume_A3``, ``num_frames``, ``max_displacement_A`` (largest move between frames).
        """
        if self.num_frames < 2:
            raise ValueError(f'trajectory: the MSD needs at least 2 frames, got {self.num_frames}')
        if not time_step_ps > 0:
            raise ValueError(f'time_step: must be positive, got {time_step_ps}')
        blocks = int(blocks)
        n_frames = self.num_frames
        if blocks and n_frames // blocks < 3:
            raise ValueError(
                f'blocks: {blocks} blocks of {n_frames} frames leave fewer than 3 frames per block'
            )
        species = sorted(set(self.symbols), key=self.symbols.index)
        index = np.array([species.index(s) for s in self.symbols])
        counts = np.bincount(index, minlength=len(species))
        natoms = len(self.symbols)
        # msd_fft holds ~12 float64 arrays the size of its input at its peak (padding to 2T included).
        per_atom = max(1, int(block_bytes // (n_frames * 3 * 8 * 12)))
        msd_sum = np.zeros((n_frames, len(species), 3))
        block_length = n_frames // blocks if blocks else 0
        block_sum = np.zeros((blocks, block_length, len(species), 3))
        for begin in range(0, natoms, per_atom):
            end = min(begin + per_atom, natoms)
            x = self._atoms(begin, end)
            one_hot = np.zeros((end - begin, len(species)))
            one_hot[np.arange(end - begin), index[begin:end]] = 1.0
            msd_sum += np.einsum('tac,as->tsc', msd_fft(x), one_hot)
            for b in range(blocks):
                part = x[b * block_length:(b + 1) * block_length]
                block_sum[b] += np.einsum('tac,as->tsc', msd_fft(part), one_hot)
        return {
            'time_ps': np.arange(n_frames) * time_step_ps,
            'msd_A2': msd_sum / counts[None, :, None],
            'block_time_ps': np.arange(block_length) * time_step_ps,
            'msd_blocks_A2': block_sum / counts[None, None, :, None],
            'species': species,
            'counts': counts.tolist(),
            'mean_volume_A3': self._volume_sum / n_frames,
            'num_frames': n_frames,
            'max_displacement_A': self.max_displacement_A,
        }


def plot_msd(time_ps, msd_A2, labels: t.Sequence[str], fits: t.Mapping[str, dict] | None = None,
             title: str = '') -> bytes:
    """PNG of the MSD (sum of x, y, z) per species; dashed lines show fitted 6 D t + c over its window."""
    from .figures import new_figure, to_png

    figure, axis = new_figure()
    msd = np.asarray(msd_A2, dtype=float)
    time = np.asarray(time_ps, dtype=float)
    for i, label in enumerate(labels):
        total = msd[:, i, :].sum(axis=-1)
        line, = axis.plot(time, total, label=label)
        fit = (fits or {}).get(label)
        if fit:
            start, stop = fit['window_ps']
            inside = (time >= start) & (time <= stop)
            axis.plot(time[inside], fit['slope_A2_per_ps'] * time[inside] + fit['intercept_A2'], '--',
                      color=line.get_color(), lw=2,
                      label=f'{label}: D = {fit["D_A2_per_ps"]:.3g} ± {fit["D_err_A2_per_ps"]:.2g} Å²/ps')
    axis.set_xlabel('lag time (ps)')
    axis.set_ylabel('MSD (Å²)')
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title, fontsize=9)
    return to_png(figure)
