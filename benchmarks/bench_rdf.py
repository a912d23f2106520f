"""Benchmark: the streamed cell-list RDF of this package against ASE and freud (time per frame, peak memory).

Run by hand (pytest does not collect it), from the repository root::

    pip install -e ".[bench]"                 # freud-analysis
    python benchmarks/bench_rdf.py --write    # the defaults: ~5 min on 2 cores; updates the results file
    python benchmarks/bench_rdf.py --sizes 4000 32000 108000 --frames 20 --ase-frames 2 --ase-max-atoms 4000 \
        --r-max 6 --bins 300                  # the same, spelled out

What it does:

* Frames: an fcc Cu crystal (a = 3.61 Å, 4 n^3 atoms for the requested sizes, rounded up) with every
  atom displaced by N(0, 0.15 Å) per component, a new displacement per frame (seeded: every method
  sees the same frames). Positions are wrapped into the cell for freud (it needs them inside its
  box); ours and ASE get them as generated. One species, so the three codes do the same work.
* Methods, each (method, size) in a fresh subprocess so memory figures do not leak between them:
  ``ours`` = :class:`aiida_mlcampaign.analysis.rdf.RdfAccumulator` (``add_frame`` per frame),
  ``ase`` = ``ase.geometry.rdf.get_rdf`` per frame (neighbour list, then a Python loop over atoms),
  ``freud`` = ``freud.density.RDF(normalization_mode='finite_size').compute(..., reset=False)``.
* Time: wall time of the per-frame calls only (frame generation excluded), divided by the frames.
  ASE runs fewer frames (``--ase-frames``) and only up to ``--ase-max-atoms`` because it is
  100-400x slower (35 s per frame at 4000 atoms here; 1e5 atoms would take ~15 min per frame).
* Peak memory: growth of the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` before the
  timed section) over the RSS before it, plus the ``tracemalloc`` peak of Python/numpy allocations
  (freud's C++ allocations are invisible to tracemalloc, hence both).
* Agreement: the g(r) averaged over the frames each method ran. ASE normalises with N^2 instead
  of N(N-1): its curve is compared after multiplying ours by (N-1)/N; ours against freud over the
  same frames. The largest absolute difference is printed.

The target of 1e5 atoms x 1e3 frames would take ~20 min for ours alone and hours for ASE, so the
default is 1e5 atoms x 20 frames and the result is reported per frame (the cost is linear in the
number of frames: nothing is kept between frames but the histogram).

Writes a Markdown table to stdout and, with ``--write``, replaces the RDF section of
``benchmarks/results/analysis.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _results import replace_section, reset_peak, rss_kib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results' / 'analysis.md'


def make_frames(natoms: int, frames: int, seed: int = 0):
    """The base crystal and a generator of displaced frames (same seed = same frames)."""
    from ase.build import bulk

    n = math.ceil((natoms / 4) ** (1 / 3))
    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True).repeat((n, n, n))
    cell = np.array(atoms.cell)
    base = atoms.positions.copy()

    def generate():
        rng = np.random.default_rng(seed)
        for _ in range(frames):
            yield base + rng.normal(0.0, 0.15, base.shape)

    return atoms, cell, generate


def child(method: str, natoms: int, frames: int, r_max: float, bins: int, output: str) -> None:
    atoms, cell, generate = make_frames(natoms, frames)
    symbols = atoms.get_chemical_symbols()
    frame_list = list(generate())  # generated before the timed section (same for every method)
    if method == 'ours':
        from aiida_mlcampaign.analysis.rdf import RdfAccumulator
        accumulator = RdfAccumulator(r_max, bins)

        def run(positions):
            accumulator.add_frame(symbols, cell, positions)

        def result():
            return accumulator.result()['g_partial'][0]
    elif method == 'ase':
        from ase.geometry.rdf import get_rdf
        collected = []

        def run(positions):
            image = atoms.copy()
            image.positions = positions
            collected.append(get_rdf(image, r_max, bins, no_dists=True))

        def result():
            return np.mean(collected, axis=0)
    elif method == 'freud':
        import freud
        box = freud.box.Box.from_matrix(cell.T)
        rdf = freud.density.RDF(bins=bins, r_max=r_max, normalization_mode='finite_size')
        frac_of = np.linalg.inv(cell)

        def run(positions):
            frac = positions @ frac_of
            frac -= np.floor(frac)
            rdf.compute(system=(box, box.wrap((frac - 0.5) @ cell)), reset=False)

        def result():
            return np.asarray(rdf.rdf)
    else:
        raise SystemExit(f'unknown method {method}')
    before = rss_kib('VmRSS')
    tracemalloc.start()
    reset_peak()
    start = time.perf_counter()
    for positions in frame_list:
        run(positions)
    elapsed = time.perf_counter() - start
    peak_rss = rss_kib('VmHWM')
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.save(output, result())
    print(json.dumps({
        'method': method, 'atoms': len(atoms), 'frames': frames, 'per_frame_s': elapsed / frames,
        'peak_rss_growth_MB': max(peak_rss - before, 0) / 1024, 'tracemalloc_peak_MB': traced / 2**20,
    }))


def run_case(method, natoms, frames, r_max, bins, directory):
    output = os.path.join(directory, f'{method}-{natoms}.npy')
    completed = subprocess.run(
        [sys.executable, __file__, '--child', method, str(natoms), str(frames), str(r_max), str(bins), output],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode:
        raise SystemExit(f'{method} {natoms}: failed\n{completed.stderr}')
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    record['g'] = np.load(output)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[4000, 32000, 108000])
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--ase-frames', type=int, default=2)
    parser.add_argument('--ase-max-atoms', type=int, default=4000)
    parser.add_argument('--r-max', type=float, default=6.0)
    parser.add_argument('--bins', type=int, default=300)
    parser.add_argument('--write', action='store_true', help='update benchmarks/results/analysis.md')
    parser.add_argument('--child', nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, natoms, frames, r_max, bins, output = args.child
        child(method, int(natoms), int(frames), float(r_max), int(bins), output)
        return

    load = os.getloadavg()[0]
    try:
        import freud  # noqa: F401
        methods = ['ours', 'freud', 'ase']
    except ImportError:
        print('freud-analysis not installed (pip install -e ".[bench]"): skipping it', file=sys.stderr)
        methods = ['ours', 'ase']
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for natoms in args.sizes:
            records = {}
            for method in methods:
                if method == 'ase' and natoms > args.ase_max_atoms:
                    continue
                frames = args.ase_frames if method == 'ase' else args.frames
                records[method] = run_case(method, natoms, frames, args.r_max, args.bins, directory)
                print(f'{method:6s} {records[method]["atoms"]:7d} atoms: {records[method]["per_frame_s"]:.3f} s/frame',
                      file=sys.stderr)
            n = records['ours']['atoms']
            if 'ase' in records:  # ours over the ASE frames only, for a like-for-like comparison
                same = run_case('ours', natoms, args.ase_frames, args.r_max, args.bins, directory)
                records['ase']['max_dg'] = float(np.abs(same['g'] * (n - 1) / n - records['ase']['g']).max())
            if 'freud' in records:
                records['freud']['max_dg'] = float(np.abs(records['ours']['g'] - records['freud']['g']).max())
            for method, record in records.items():
                rows.append((n, method, record))

    lines = [
        '| atoms | method | frames | time per frame (s) | x ours | peak RSS growth (MB) | tracemalloc peak (MB) '
        '| max abs Δg vs ours |',
        '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    ours_time = {n: r['per_frame_s'] for n, m, r in rows if m == 'ours'}
    for n, method, record in rows:
        ratio = record['per_frame_s'] / ours_time[n]
        dg = '–' if method == 'ours' else f'{record.get("max_dg", float("nan")):.1e}'
        lines.append(
            f'| {n} | {method} | {record["frames"]} | {record["per_frame_s"]:.3f} | {ratio:.2f} | '
            f'{record["peak_rss_growth_MB"]:.0f} | {record["tracemalloc_peak_MB"]:.0f} | {dg} |'
        )
    import ase
    versions = f'ase {ase.__version__}, numpy {np.__version__}'
    try:
        import freud
        versions += f', freud {freud.__version__}'
    except ImportError:
        pass
    header = (
        f'RDF of rattled fcc Cu (σ = 0.15 Å), r_max = {args.r_max} Å, {args.bins} bins, one species; '
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, '
        f'{versions}; load average {load:.1f} at the start (other jobs shared the cores).\n'
        'Command: `python benchmarks/bench_rdf.py ' + ' '.join(sys.argv[1:]) + '`'
    )
    table = header + '\n\n' + '\n'.join(lines)
    print(table)
    if args.write:
        write_section(table)


def write_section(table: str) -> None:
    replace_section(RESULTS, 'bench_rdf', '## RDF: cell list vs ASE vs freud (`benchmarks/bench_rdf.py`)', table,
                    '# Analysis benchmarks')

if __name__ == '__main__':
    main()
