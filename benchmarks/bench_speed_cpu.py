"""Benchmark: MD speed per model on the CPU, MTP (motep) vs NEP (calorine's CPUNEP), same structure, same MD.

Run by hand (pytest does not collect it: ``testpaths = ["tests"]``), from the repository root::

    python benchmarks/bench_speed_cpu.py --write      # the defaults: ~4 min on 2 cores; updates the results file
    python benchmarks/bench_speed_cpu.py --sizes 2 4 5 --steps 200 --warmup 20 --repeats 5 --levels 10 16 \\
        --mtp-cutoff 5.0 --coeff-scale 1e-4 --temperature 300      # the same, spelled out

What it measures: atom-steps/s = atoms x MD steps / wall time of the MD loop, for the same structure and
the same MD settings, one core per run. Answers issue #5's "speed per model" on a machine without a GPU.

* Structure: rock-salt PbTe, ``ase.build.bulk('PbTe', 'rocksalt', a=6.46, cubic=True).repeat(n)``; the
  default ``--sizes 2 4 5`` gives 64, 512 and 1000 atoms.
* MD (plain ASE, the recipe of the exploration driver ``aiida_mlcampaign.exploration``): Maxwell-Boltzmann
  velocities at 300 K from ``numpy.random.default_rng(seed)``, centre-of-mass momentum removed, Langevin
  (friction 0.02 fs^-1, ``FixCom``, the same generator for the noise), time step 1 fs; ``--warmup`` steps
  (20) untimed, then ``--steps`` (200) timed with ``time.perf_counter`` around the ``dynamics.step()``
  loop: force evaluation + ASE integrator, no grading, no output. The driver's own ``wall_time`` also
  counts the extrapolation grading, so this is bare MD, not exploration throughput.
* Models: (a) motep 0.2.0's ``motep.calculator.MTP`` (``engine='cext'``, ``mode='run'``, what the driver
  uses) for MTP levels 10 and 16, species ['Te', 'Pb'], built from the shipped untrained templates with
  ``aiida_mlcampaign.formats.mtp.initial_potential(level, 2, min_dist=2.0, max_dist=--mtp-cutoff)``
  (what ``MtpPotentialData.from_template`` stores; the node itself is not built, so no AiiDA profile is
  needed). The coefficients are random but fixed: ``mtp.initialize(numpy.random.default_rng(seed))``,
  the call ``aiida_mlcampaign.mtp.engine.train`` makes to fill an untrained potential before
  optimising, then the moment coefficients are multiplied by ``--coeff-scale`` (1e-4). Speed does not
  depend on fit quality: the evaluation does the same arithmetic whatever the coefficient values (checked
  at the start of every run: force calls on one rattled cell with scale 1 and with the scale used), but
  with the raw random coefficients (moment coefficients uniform in [-5, 5]) the forces reach 1e18 eV/Å
  within 200 fs and the crystal collapses, which would change the neighbour counts and so the cost. With
  the scale the atoms move almost freely under the thermostat and the lattice stays intact; the final
  temperature, shortest distance and neighbours per atom are printed for every model to show it.
  (b) calorine 4.1's ``CPUNEP`` with the recorded real PbTe NEP
  ``tests/fixtures/gpumd/nep/pbte_train_master/nep.txt`` (nep4, cutoffs 8 Å radial / 4 Å angular).
* Threads: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` are forced to 1 here,
  before numpy is imported (neither motep's C extension nor calorine's ``nep_cpu`` is threaded; this
  stops numpy's BLAS in ASE's integrator from taking the second core). Runs are sequential, one process.
  The machine's core count and the load average (other jobs may share the cores) are printed.
* Repeats: ``--repeats`` (5) rounds; in each round every size and every model runs once, in turn, so a
  change of machine load hits all models alike. Per model and size, the repeats are combined the way
  ``aiida_mlcampaign.analysis.speed`` combines runs (Σ atom-steps / Σ time): each run is written as a
  walker of an exploration ``summary.json`` (``natoms``, ``steps_run``, ``wall_time``) and read back with
  ``speed_from_record`` -> ``explore_speed``; per size, ``compare_speeds`` makes the table the
  ``compare_speed`` calcfunction stores (fastest first, ratio to the slowest, "X 1.0x faster than Y").
  The min-max over the repeats is shown next to it.

The paper's "NEP 41x faster than MTP" is GPUMD on a GPU against MTP in LAMMPS on CPUs. This benchmark is
CPU against CPU, one core each, through ASE (Python integrator and calculator overhead included), so its
NEP/MTP ratio is a different quantity and is not expected to reproduce 41x.

Writes Markdown to stdout and, with ``--write``, replaces the generated section of
``benchmarks/results/speed.md`` (text outside the markers is kept).
"""

from __future__ import annotations

import os

for _variable in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_variable] = '1'  # before numpy is imported anywhere

import argparse  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _results import replace_section  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results' / 'speed.md'
NEP_MODEL = ROOT / 'tests' / 'fixtures' / 'gpumd' / 'nep' / 'pbte_train_master' / 'nep.txt'
SPECIES = ['Te', 'Pb']  # the NEP's type order; the MTP uses the same
FRICTION = 0.02  # fs^-1, the exploration driver's default
TIME_STEP = 1.0  # fs
MTP_MIN_DIST = 2.0  # Å; shortest distance seen in the runs is ~2.5 Å (nearest neighbours at 3.23 Å)


class _MinDistCounter(logging.Filter):
    """Counts motep's 'smaller than min_dist' warnings instead of printing one per MD step."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record):
        if 'smaller than min_dist' in record.getMessage():
            self.count += 1
            return False
        return True


def structure(repeat: int):
    from ase.build import bulk

    return bulk('PbTe', 'rocksalt', a=6.46, cubic=True).repeat(repeat)


def mtp_data(level: int, cutoff: float, seed: int, scale: float, directory: pathlib.Path):
    """motep ``MTPData`` from the shipped template, random coefficients as ``engine.train`` initialises them."""
    from aiida_mlcampaign.formats.mtp import format_mtp, initial_potential
    from aiida_mlcampaign.mtp import engine

    path = directory / f'L{level:02d}.mtp'
    path.write_text(format_mtp(initial_potential(level, len(SPECIES), MTP_MIN_DIST, cutoff)))
    mtp = engine.read_potential(path, SPECIES)
    mtp.initialize(np.random.default_rng(seed))
    mtp.moment_coeffs = mtp.moment_coeffs * scale
    return mtp


def calculator(model: dict):
    if model['family'] == 'nep':
        from aiida_mlcampaign.nep.cpu import nep_calculator

        return nep_calculator(model['path'])
    from motep.calculator import MTP

    return MTP(model['mtp'], engine='cext', mode='run')


def scale_check(model: dict, raw_mtp, atoms, calls: int = 10, rounds: int = 3) -> tuple[float, float]:
    """Best seconds per force call on one rattled cell, raw random coefficients vs the scaled ones (alternated)."""
    from motep.calculator import MTP

    rattled = atoms.copy()
    rattled.rattle(0.1, seed=1)
    best = [float('inf'), float('inf')]
    for _ in range(rounds):
        for index, mtp in enumerate((raw_mtp, model['mtp'])):
            rattled.calc = MTP(mtp, engine='cext', mode='run')
            rattled.get_forces()
            start = time.perf_counter()
            for i in range(calls):
                rattled.positions[0, 0] += 1e-4 * (-1) ** i  # a change, so every call evaluates
                rattled.get_forces()
            best[index] = min(best[index], (time.perf_counter() - start) / calls)
    return best[0], best[1]


def run_md(model: dict, atoms0, steps: int, warmup: int, temperature: float, seed: int) -> dict:
    """One walker: warm-up, then ``steps`` timed MD steps; the sanity figures of the final frame."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.neighborlist import neighbor_list

    atoms = atoms0.copy()
    atoms.calc = calculator(model)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms, preserve_temperature=True)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, TIME_STEP * units.fs, temperature_K=temperature, friction=FRICTION / units.fs,
                        fixcm=False, rng=rng)
    for _ in range(warmup):
        dynamics.step()
    start = time.perf_counter()
    for _ in range(steps):
        dynamics.step()
    wall = time.perf_counter() - start
    i, d = neighbor_list('id', atoms, model['cutoff'])
    return {
        'natoms': len(atoms), 'steps_run': steps, 'wall_time': wall, 'temperature': temperature, 'seed': seed,
        'final_temperature': float(atoms.get_temperature()), 'min_distance': float(d.min()),
        'neighbours_per_atom': len(i) / len(atoms),
        'finite': bool(np.isfinite(atoms.get_potential_energy()) and np.all(np.isfinite(atoms.get_forces()))),
    }


def integrator_overhead(atoms0, steps: int, temperature: float, seed: int) -> float:
    """Atom-steps/s of the same Langevin loop with a calculator that returns zero forces at no cost."""
    from ase import units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    class Zero(Calculator):
        implemented_properties = ['energy', 'forces']

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {'energy': 0.0, 'forces': np.zeros((len(self.atoms), 3))}

    atoms = atoms0.copy()
    atoms.calc = Zero()
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, units.fs, temperature_K=temperature, friction=FRICTION / units.fs, fixcm=False,
                        rng=np.random.default_rng(seed))
    start = time.perf_counter()
    for _ in range(steps):
        dynamics.step()
    return len(atoms) * steps / (time.perf_counter() - start)


def machine() -> dict:
    model_name = ''
    try:
        for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model_name = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    return {'cpu': model_name or platform.processor() or platform.machine(), 'cores': os.cpu_count(),
            'usable_cores': affinity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[2, 4, 5],
                        help='supercell repeats of the 8-atom cubic PbTe cell (2 4 5 = 64, 512, 1000 atoms)')
    parser.add_argument('--steps', type=int, default=200, help='timed MD steps per run')
    parser.add_argument('--warmup', type=int, default=20, help='untimed MD steps before the timed ones')
    parser.add_argument('--repeats', type=int, default=5, help='rounds over every size and model')
    parser.add_argument('--levels', type=int, nargs='+', default=[10, 16], help='MTP levels (shipped templates)')
    parser.add_argument('--mtp-cutoff', type=float, default=5.0, help='MTP max_dist in Å (template default 5)')
    parser.add_argument('--coeff-scale', type=float, default=1e-4,
                        help='factor on the random MTP moment coefficients (keeps the MD stable)')
    parser.add_argument('--temperature', type=float, default=300.0, help='K')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--nep', type=pathlib.Path, default=NEP_MODEL, help='nep.txt (default: the PbTe fixture)')
    parser.add_argument('--write', action='store_true', help='update benchmarks/results/speed.md')
    args = parser.parse_args()

    from importlib.metadata import version

    import ase

    from aiida_mlcampaign.analysis.speed import compare_speeds, speed_from_record
    from aiida_mlcampaign.formats.nep import read_nep_header

    warnings.simplefilter('ignore', FutureWarning)
    counter = _MinDistCounter()
    logging.getLogger('motep.potentials.mtp.base').addFilter(counter)
    load_start = os.getloadavg()
    wall_start = time.perf_counter()
    header = read_nep_header(args.nep)
    nep_cutoff = float(header['cutoff'][0]) if 'cutoff' in header else 8.0

    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        raw = {}
        for level in args.levels:
            name = f'MTP-L{level:02d}'
            models[name] = {'family': 'mtp', 'cutoff': args.mtp_cutoff,
                            'mtp': mtp_data(level, args.mtp_cutoff, args.seed, args.coeff_scale, pathlib.Path(tmp))}
            raw[name] = mtp_data(level, args.mtp_cutoff, args.seed, 1.0, pathlib.Path(tmp))
        models['NEP'] = {'family': 'nep', 'cutoff': nep_cutoff, 'path': args.nep}

        check_atoms = structure(args.sizes[len(args.sizes) // 2])
        scale_times = {name: scale_check(models[name], raw[name], check_atoms) for name in raw}
        for name, (t_raw, t_scaled) in scale_times.items():
            print(f'{name}: force call on {len(check_atoms)} rattled atoms, coefficients x1: {t_raw * 1e3:.1f} ms, '
                  f'x{args.coeff_scale:g}: {t_scaled * 1e3:.1f} ms', file=sys.stderr)

        overhead = {n: integrator_overhead(structure(n), args.steps, args.temperature, args.seed) for n in args.sizes}
        runs = {(name, n): [] for n in args.sizes for name in models}
        for repeat in range(args.repeats):
            for n in args.sizes:
                atoms0 = structure(n)
                for name, model in models.items():
                    record = run_md(model, atoms0, args.steps, args.warmup, args.temperature, args.seed)
                    record['walker'] = repeat
                    runs[(name, n)].append(record)
                    print(f'repeat {repeat} {name:8s} {len(atoms0):5d} atoms: '
                          f'{record["natoms"] * record["steps_run"] / record["wall_time"]:.4g} atom-steps/s, '
                          f'T_end {record["final_temperature"]:.0f} K, d_min {record["min_distance"]:.2f} Å',
                          file=sys.stderr)
    load_end = os.getloadavg()
    total = time.perf_counter() - wall_start

    # Every (model, size) as an exploration summary.json, read back by the project's speed functions.
    rows, tables = [], {}
    for n in args.sizes:
        speeds, details = {}, {}
        for name, model in models.items():
            summary = {'family': model['family'], 'walkers': runs[(name, n)],
                       'settings': {'steps': args.steps, 'time_step': TIME_STEP, 'ensemble': 'nvt',
                                    'friction': FRICTION, 'temperatures': [args.temperature],
                                    'seeds': [args.seed]},
                       'label': name, 'hardware': '1 CPU core'}
            details[name] = speed_from_record(summary)
            speeds[name] = details[name]['atom_steps_per_s']
        table = compare_speeds(speeds)
        tables[n] = table
        natoms = runs[(table['models'][0], n)][0]['natoms']
        for name in table['models']:
            single = [r['natoms'] * r['steps_run'] / r['wall_time'] for r in runs[(name, n)]]
            last = runs[(name, n)]
            rows.append({
                'atoms': natoms, 'model': name, 'speed': table['atom_steps_per_s'][name],
                'low': min(single), 'high': max(single), 'ratio': table['ratio_to_slowest'][name],
                'neighbours': np.mean([r['neighbours_per_atom'] for r in last]),
                'cutoff': models[name]['cutoff'],
                'T_end': np.mean([r['final_temperature'] for r in last]),
                'd_min': min(r['min_distance'] for r in last),
                'ok': all(r['finite'] for r in last),
            })

    lines = [
        '| atoms | model | atom-steps/s | min-max over repeats | ratio to slowest | cutoff (Å) '
        '| neighbours per atom | T end (K) | d_min (Å) |',
        '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    for r in rows:
        lines.append(
            f"| {r['atoms']} | {r['model']} | {r['speed']:.3g} | {r['low']:.3g}-{r['high']:.3g} | {r['ratio']:.2f} | "
            f"{r['cutoff']:g} | {r['neighbours']:.1f} | {r['T_end']:.0f} | "
            f"{r['d_min']:.2f}{'' if r['ok'] else ' (NOT FINITE)'} |"
        )
    mtp_names = [name for name in models if name != 'NEP']
    ratio_lines = ['| atoms | ' + ' | '.join(f'NEP / {name}' for name in mtp_names) + ' |',
                   '| ---: | ' + ' | '.join('---:' for _ in mtp_names) + ' |']
    for n, table in tables.items():
        speeds = table['atom_steps_per_s']
        natoms = runs[('NEP', n)][0]['natoms']
        ratio_lines.append(f'| {natoms} | ' + ' | '.join(f"{speeds['NEP'] / speeds[m]:.2f}" for m in mtp_names) + ' |')
    statements = [f"- {runs[('NEP', n)][0]['natoms']} atoms: " + '; '.join(table['statements'])
                  for n, table in tables.items()]

    info = machine()
    scale_text = '; '.join(f'{name} {a * 1e3:.1f} vs {b * 1e3:.1f} ms' for name, (a, b) in scale_times.items())
    text = '\n'.join([
        f"Rock-salt PbTe (a = 6.46 Å), Langevin {args.temperature:g} K, friction {FRICTION} fs⁻¹, {TIME_STEP:g} fs, "
        f"{args.warmup} warm-up + {args.steps} timed steps, {args.repeats} repeats (interleaved), seed {args.seed}. "
        f"MTP: motep {version('motep')} `cext`, templates, species {SPECIES}, min_dist "
        f"{MTP_MIN_DIST} Å, random coefficients (`initialize(default_rng({args.seed}))`, moment coefficients "
        f"x{args.coeff_scale:g}). NEP: calorine {version('calorine')} CPUNEP, "
        f"`tests/fixtures/gpumd/nep/pbte_train_master/nep.txt` ({header.get('model', 'nep')}).",
        '',
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), one process, "
        'OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1; '
        f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (other jobs shared the cores). "
        f"Python {platform.python_version()}, ase {ase.__version__}, numpy {np.__version__}. "
        f"Total run time {total / 60:.1f} min. Coefficient check (force call, {len(check_atoms)} rattled atoms, "
        f"x1 vs x{args.coeff_scale:g}): {scale_text}. motep min_dist warnings: {counter.count}. ASE's Langevin loop "
        'alone (zero-force calculator): ' + ', '.join(f'{len(structure(n))} atoms {v:.3g}' for n, v in overhead.items())
        + ' atom-steps/s (the integrator share of a step is speed / this).',
        '',
        'Command: `python benchmarks/bench_speed_cpu.py ' + ' '.join(sys.argv[1:]) + '`',
        '',
        'Per model and size (atom-steps/s = Σ atoms·steps / Σ time over the repeats, via '
        '`analysis.speed.speed_from_record`; ratio via `compare_speeds`, as `compare_speed` stores it):',
        '',
        *lines,
        '',
        'NEP / MTP ratio (> 1: NEP faster):',
        '',
        *ratio_lines,
        '',
        '`compare_speeds` statements:',
        '',
        *statements,
    ])
    print(text, flush=True)
    if args.write:
        write_section(text)


def write_section(text: str) -> None:
    replace_section(RESULTS, 'bench_speed_cpu', '## Measured (`benchmarks/bench_speed_cpu.py`)', text,
                    '# MD speed per model')

if __name__ == '__main__':
    main()
