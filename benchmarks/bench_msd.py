"""Benchmark: FFT MSD (all time origins) against the direct O(T^2) sum, and the memory of streaming.

Run by hand (pytest does not collect it), from the repository root::

    python benchmarks/bench_msd.py --write    # the defaults: ~2 min on 2 cores; updates the results file
    python benchmarks/bench_msd.py --lengths 100 300 1000 3000 10000 --atoms 64 \\
        --stream-atoms 20000 --stream-frames 500   # the same, spelled out

Part 1, FFT vs direct: random walks of ``--atoms`` atoms x 3 components and T frames;
:func:`aiida_mlcampaign.analysis.msd.msd_fft` and :func:`~aiida_mlcampaign.analysis.msd.msd_direct`
(numpy, one vectorised pass per lag) on the same float64 array. Reported: both times (best of 3 for
the FFT; one run for the direct sum above T = 1000), their ratio, and the largest relative
difference (must stay ~1e-13).

Part 2, streaming memory: ``--stream-frames`` wrapped frames of ``--stream-atoms`` atoms go through
:class:`~aiida_mlcampaign.analysis.msd.MsdAccumulator` (float32 displacements appended to a temporary
file, FFT per block of atoms at the end), each in a fresh subprocess, against keeping every frame in a
float64 array and running ``msd_fft`` on it. Peak memory = growth of the peak RSS (``VmHWM``, reset
through ``/proc/self/clear_refs``) over the RSS before the section; frames are generated one at a time
inside the section in both cases (a random walk, seeded).

Writes a Markdown table to stdout and, with ``--write``, replaces the MSD section of
``benchmarks/results/analysis.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _results import replace_section, reset_peak, rss_kib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results' / 'analysis.md'


def timed(function, x, repeats):
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(x)
        best = min(best, time.perf_counter() - start)
    return best, result


def part_fft_vs_direct(lengths, atoms):
    from aiida_mlcampaign.analysis.msd import msd_direct, msd_fft

    rows = []
    for length in lengths:
        rng = np.random.default_rng(length)
        x = np.cumsum(rng.normal(0, 0.1, (length, atoms, 3)), axis=0)
        fft_time, fast = timed(msd_fft, x, 3)
        direct_time, slow = timed(msd_direct, x, 3 if length <= 1000 else 1)
        difference = float(np.abs(fast - slow).max() / np.abs(slow).max())
        rows.append((length, fft_time, direct_time, difference))
        print(f'T = {length}: fft {fft_time:.4f} s, direct {direct_time:.3f} s', file=sys.stderr)
    return rows


def stream_child(mode: str, natoms: int, frames: int) -> None:
    from aiida_mlcampaign.analysis.msd import MsdAccumulator, msd_fft

    cell = np.eye(3) * (natoms / 0.05) ** (1 / 3)
    rng = np.random.default_rng(0)
    start_positions = rng.random((natoms, 3)) @ cell
    symbols = ['Li'] * natoms
    before = rss_kib('VmRSS')
    reset_peak()
    start = time.perf_counter()
    positions = start_positions.copy()
    if mode == 'stream':
        with MsdAccumulator() as accumulator:
            for _ in range(frames):
                positions += rng.normal(0, 0.05, positions.shape)
                accumulator.add_frame(symbols, cell, positions - np.floor(positions / cell[0, 0]) * cell[0, 0])
            result = accumulator.result(0.01, blocks=5)['msd_A2']
    else:
        trajectory = np.empty((frames, natoms, 3))
        for k in range(frames):
            positions += rng.normal(0, 0.05, positions.shape)
            trajectory[k] = positions
        result = msd_fft(trajectory).mean(axis=1)[:, None, :]
    elapsed = time.perf_counter() - start
    peak = rss_kib('VmHWM')
    print(json.dumps({'mode': mode, 'seconds': elapsed, 'peak_rss_growth_MB': max(peak - before, 0) / 1024,
                      'msd_last': float(result[-1].sum())}))


def part_streaming(natoms, frames):
    records = {}
    for mode in ('stream', 'in_memory'):
        completed = subprocess.run([sys.executable, __file__, '--child', mode, str(natoms), str(frames)],
                                   capture_output=True, text=True, check=False)
        if completed.returncode:
            raise SystemExit(f'{mode}: failed\n{completed.stderr}')
        records[mode] = json.loads(completed.stdout.strip().splitlines()[-1])
        print(f'{mode}: {records[mode]}', file=sys.stderr)
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lengths', type=int, nargs='+', default=[100, 300, 1000, 3000, 10000])
    parser.add_argument('--atoms', type=int, default=64)
    parser.add_argument('--stream-atoms', type=int, default=20000)
    parser.add_argument('--stream-frames', type=int, default=500)
    parser.add_argument('--write', action='store_true', help='update benchmarks/results/analysis.md')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, natoms, frames = args.child
        stream_child(mode, int(natoms), int(frames))
        return

    load = os.getloadavg()[0]
    rows = part_fft_vs_direct(args.lengths, args.atoms)
    streaming = part_streaming(args.stream_atoms, args.stream_frames)
    lines = [
        f'Random walks, {args.atoms} atoms x 3 components, float64; {platform.machine()}, {os.cpu_count()} cores, '
        f'Python {platform.python_version()}, numpy {np.__version__}; load average {load:.1f} at the start.',
        'Command: `python benchmarks/bench_msd.py ' + ' '.join(sys.argv[1:]) + '`',
        '',
        '| frames T | FFT (s) | direct sum (s) | direct / FFT | max relative difference |',
        '| ---: | ---: | ---: | ---: | ---: |',
    ]
    for length, fast, slow, difference in rows:
        lines.append(f'| {length} | {fast:.4f} | {slow:.3f} | {slow / fast:.0f} | {difference:.1e} |')
    size_mb = args.stream_atoms * args.stream_frames * 12 / 2**20
    lines += [
        '',
        f'Streaming memory, {args.stream_atoms} atoms x {args.stream_frames} frames (float64 frames would be '
        f'{2 * size_mb:.0f} MB; the float32 temporary file is {size_mb:.0f} MB on disk):',
        '',
        '| method | time incl. frame generation (s) | peak RSS growth (MB) |',
        '| --- | ---: | ---: |',
    ]
    labels = {'stream': '`MsdAccumulator` (float32 temp file, 5 blocks too)',
              'in_memory': 'all frames in RAM (float64) + `msd_fft`'}
    for mode, record in streaming.items():
        lines.append(f'| {labels[mode]} | {record["seconds"]:.1f} | {record["peak_rss_growth_MB"]:.0f} |')
    table = '\n'.join(lines)
    print(table)
    if args.write:
        replace_section(RESULTS, 'bench_msd', '## MSD: FFT vs direct sum, streaming memory (`benchmarks/bench_msd.py`)',
                        table, '# Analysis benchmarks')

if __name__ == '__main__':
    main()
