"""Benchmark: time to accuracy of a NEP trained by neppo vs an MTP trained by motep, same frames, same CPU.

Run by hand (pytest does not collect it); the default run takes ~20 min on 2 cores::

    python benchmarks/bench_nep_vs_mtp_cpu.py --write      (from the repository root; needs neppo and motep)

Options::

    --train 100 --test 40     # EMT-labelled frames to fit and to test on
    --nep-steps 50 100 ...    # neppo AdamW steps, one fresh training per value
    --mtp-iters 25 50 ...     # motep BFGS iterations, one fresh training per value
    --level 10                # MTP level (shipped template)
    --md-atoms 256 2048       # MD speed of the two most accurate models at these sizes
    --json results.json       # every number as JSON
    --write                   # update benchmarks/results/nep_vs_mtp.md

What it measures, on the SAME frames for both families (the paper's set-up: MTP and NEP fitted to one
label set): for each training budget, the wall time of a fresh training and the force/energy RMSE of the
resulting model on the SAME held-out test frames; then the time each family needs to reach a common force
target (1.2 x the larger of the two best RMSEs, i.e. an accuracy both reach), and the CPU MD speed
(atom-steps/s, Langevin 300 K, one core) of the most accurate model of each family. **ASE's EMT calculator
stands in for DFT in this benchmark only** (labels of the frames).

* Frames: Cu-Au fcc, 32-atom cubic cells with a random Au fraction (Vegard lattice constant); 80 % from
  EMT Langevin MD at 300-1200 K in cells strained up to +-3 %, 20 % static strained + rattled cells.
* NEP: ``neppo train`` as ``mlcampaign.nep.train`` runs it (``nep.in`` from ``formats.nep.nep_in(...,
  engine='neppo')``, ``train.xyz`` from ``formats.extxyz``), NEP4 with GPUMD's default descriptor (n_max 6 6,
  basis 6 6, l_max 4 2 0), cutoffs 5/4 Å, 30 neurons, batch 10, seed 1, cosine learning rate 1e-2 -> 1e-4,
  2 torch threads; the wall time is that of the whole command (about 5 s of it is Python and torch start-up).
  Test errors from calorine's CPUNEP (the evaluator the plugin uses).
* MTP: ``aiida_mlcampaign.mtp.engine.train`` (motep 0.2.0 BFGS, the settings of ``mlcampaign.motep.train``:
  energy/force/stress weights 1/0.01/0.001), level template, min_dist 1.9, max_dist 5.0 Å, seed 0; motep's
  C extension runs on one core. Test errors from ``engine.evaluate``.
* Both families see only the training frames; both are scored by
  ``aiida_mlcampaign.mtp.engine.errors_against_references`` (force RMSE per Cartesian component).
"""

from __future__ import annotations

import os

for _name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_name] = '1'  # this process (motep, MD) is serial; neppo gets its own threads below

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _results import replace_section  # noqa: E402
from bench_speed_cpu import machine, run_md  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / 'results' / 'nep_vs_mtp.md'
SPECIES = ['Cu', 'Au']
NEP_SETTINGS = {'cutoff': [5.0, 4.0], 'neuron': 30, 'batch': 10, 'seed': 1}
NEPPO_THREADS = 2


def make_frames(count: int, seed: int):
    """EMT-labelled Cu-Au frames (``Frame`` objects), deterministic in ``seed``."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from aiida_mlcampaign.formats.frames import Frame

    rng = np.random.default_rng(seed)
    frames = []
    while len(frames) < count:
        fraction = rng.uniform(0.0, 1.0)
        a = 3.61 + (4.08 - 3.61) * fraction
        atoms = bulk('Cu', 'fcc', a=a, cubic=True).repeat(2)
        gold = rng.random(len(atoms)) < fraction
        atoms.symbols[gold] = 'Au'
        strain = np.eye(3) + np.diag(rng.uniform(-0.03, 0.03, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.calc = EMT()
        if rng.random() < 0.8:
            temperature = rng.choice([300.0, 600.0, 900.0, 1200.0])
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
            dynamics = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
            dynamics.run(30)
            snapshots = 4
        else:
            atoms.rattle(rng.uniform(0.03, 0.1), seed=int(rng.integers(1 << 30)))
            snapshots = 1
        for _ in range(snapshots):
            if len(frames) == count:
                break
            frames.append(Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:].copy(),
                                positions=atoms.positions.copy(), energy=atoms.get_potential_energy(),
                                forces=atoms.get_forces().copy(), stress=atoms.get_stress(voigt=False).copy()))
            if snapshots > 1:
                dynamics.run(10)
    return frames


def nep_run(train_xyz, test_frames, steps: int, directory: pathlib.Path) -> dict:
    from aiida_mlcampaign.formats.nep import nep_in
    from aiida_mlcampaign.mtp.engine import errors_against_references
    from aiida_mlcampaign.nep import cpu

    directory.mkdir(parents=True)
    shutil.copy(train_xyz, directory / 'train.xyz')
    settings = {'type': SPECIES, **NEP_SETTINGS, 'generation': steps, 'output_interval': max(steps // 4, 1)}
    (directory / 'nep.in').write_text(nep_in(settings, engine='neppo'))
    env = {**os.environ, 'OMP_NUM_THREADS': str(NEPPO_THREADS)}
    start = time.perf_counter()
    result = subprocess.run(['neppo', 'train', '.', '--device', 'cpu'], cwd=directory, env=env, capture_output=True,
                            text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f'neppo failed ({result.returncode}): {result.stderr[-2000:]}')
    predicted = cpu.evaluate(directory / 'nep.txt', test_frames)
    offsets = np.cumsum([0, *predicted['natoms']])
    forces = [predicted['forces'][offsets[i]:offsets[i + 1]] for i in range(len(test_frames))]
    from aiida_mlcampaign.formats.frames import matrix_to_voigt

    stresses = np.array([matrix_to_voigt(s) for s in predicted['stresses']])
    errors = errors_against_references([f.to_ase() for f in test_frames], predicted['energies'], forces, stresses)
    return {'family': 'NEP (neppo)', 'budget': steps, 'wall_time': wall, 'force_rmse': errors['forces_rmse'],
            'energy_rmse_per_atom': errors['energy_per_atom_rmse'], 'model': str(directory / 'nep.txt')}


def mtp_run(train_cfg, test_cfg, level: int, iterations: int, directory: pathlib.Path) -> dict:
    from aiida_mlcampaign.formats.mtp import format_mtp, initial_potential
    from aiida_mlcampaign.mtp import engine

    directory.mkdir(parents=True)
    template = directory / 'template.mtp'
    template.write_text(format_mtp(initial_potential(level, len(SPECIES), 1.9, 5.0)))
    start = time.perf_counter()
    engine.train(template, train_cfg, SPECIES, directory / 'trained.mtp', seed=0, max_iter=iterations)
    wall = time.perf_counter() - start
    errors = engine.evaluate(directory / 'trained.mtp', test_cfg, SPECIES).errors
    return {'family': f'MTP-{level:02d} (motep)', 'budget': iterations, 'wall_time': wall,
            'force_rmse': errors['forces_rmse'], 'energy_rmse_per_atom': errors['energy_per_atom_rmse'],
            'model': str(directory / 'trained.mtp')}


def time_to(rows: list[dict], target: float) -> float | None:
    """Wall time of the cheapest run of a family whose test force RMSE is at or below ``target``."""
    times = [row['wall_time'] for row in rows if row['force_rmse'] <= target]
    return min(times) if times else None


def md_speed(model_row: dict, natoms: int, steps: int) -> float:
    from ase.build import bulk

    repeat = round((natoms / 4) ** (1 / 3))
    atoms = bulk('Cu', 'fcc', a=3.7, cubic=True).repeat(repeat)
    atoms.symbols[::4] = 'Au'
    if model_row['family'].startswith('NEP'):
        model = {'family': 'nep', 'path': model_row['model'], 'cutoff': 5.0}
    else:
        from aiida_mlcampaign.mtp import engine

        model = {'family': 'mtp', 'mtp': engine.read_potential(model_row['model'], SPECIES), 'cutoff': 5.0}
    record = run_md(model, atoms, steps, 10, 300.0, 0)
    return record['natoms'] * record['steps_run'] / record['wall_time']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--train', type=int, default=100)
    parser.add_argument('--test', type=int, default=40)
    parser.add_argument('--nep-steps', type=int, nargs='+', default=[50, 100, 200, 400, 800, 1600])
    parser.add_argument('--mtp-iters', type=int, nargs='+', default=[25, 50, 100, 200])
    parser.add_argument('--level', type=int, default=10)
    parser.add_argument('--md-atoms', type=int, nargs='+', default=[256, 2048])
    parser.add_argument('--md-steps', type=int, default=100)
    parser.add_argument('--json', type=pathlib.Path)
    parser.add_argument('--write', action='store_true')
    args = parser.parse_args()
    if shutil.which('neppo') is None:
        sys.exit('FAILED: neppo is not on PATH (pip install ".[nep-cpu]" after the CPU build of torch)')
    warnings.simplefilter('ignore')

    from importlib.metadata import version

    from aiida_mlcampaign.formats.extxyz import write_extxyz
    from aiida_mlcampaign.formats.mlip_cfg import write_cfg

    started = time.perf_counter()
    train, test = make_frames(args.train, 1), make_frames(args.test, 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_extxyz(train, tmp / 'train.xyz')
        write_cfg(train, tmp / 'train.cfg', SPECIES)
        write_cfg(test, tmp / 'test.cfg', SPECIES)
        for steps in args.nep_steps:
            rows.append(nep_run(tmp / 'train.xyz', test, steps, tmp / f'nep-{steps}'))
            print(f"NEP  {steps:5d} steps: {rows[-1]['wall_time']:7.1f} s, test force RMSE "
                  f"{rows[-1]['force_rmse'] * 1e3:7.1f} meV/Å", file=sys.stderr)
        for iterations in args.mtp_iters:
            rows.append(mtp_run(tmp / 'train.cfg', tmp / 'test.cfg', args.level, iterations, tmp / f'mtp-{iterations}'))
            print(f"MTP  {iterations:5d} iters: {rows[-1]['wall_time']:7.1f} s, test force RMSE "
                  f"{rows[-1]['force_rmse'] * 1e3:7.1f} meV/Å", file=sys.stderr)
        nep_rows = [row for row in rows if row['family'].startswith('NEP')]
        mtp_rows = [row for row in rows if row['family'].startswith('MTP')]
        best = {'nep': min(nep_rows, key=lambda row: row['force_rmse']),
                'mtp': min(mtp_rows, key=lambda row: row['force_rmse'])}
        target = 1.2 * max(best['nep']['force_rmse'], best['mtp']['force_rmse'])
        reach = {'nep': time_to(nep_rows, target), 'mtp': time_to(mtp_rows, target)}
        speeds = {family: {n: md_speed(row, n, args.md_steps) for n in args.md_atoms} for family, row in best.items()}
    for row in rows:
        row.pop('model')

    hardware = machine()
    versions = {name: version(name) for name in ('neppo', 'torch', 'motep', 'calorine', 'ase')}
    result = {'rows': rows, 'target_force_rmse': target, 'time_to_target': reach, 'md_speed': speeds,
              'best': {family: {k: v for k, v in row.items() if k != 'model'} for family, row in best.items()},
              'machine': hardware, 'versions': versions, 'train_frames': args.train, 'test_frames': args.test,
              'atoms_per_frame': 32, 'level': args.level, 'neppo_threads': NEPPO_THREADS,
              'load_average_end': os.getloadavg(), 'total_wall_time': time.perf_counter() - started}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))

    lines = ['| family | budget | training wall time (s) | test force RMSE (meV/Å) | test energy RMSE (meV/atom) |',
             '| --- | ---: | ---: | ---: | ---: |']
    for row in rows:
        unit = 'steps' if row['family'].startswith('NEP') else 'BFGS iterations'
        lines.append(f"| {row['family']} | {row['budget']} {unit} | {row['wall_time']:.1f} | "
                     f"{row['force_rmse'] * 1e3:.1f} | {row['energy_rmse_per_atom'] * 1e3:.2f} |")
    ratio = reach['mtp'] / reach['nep'] if reach['mtp'] and reach['nep'] else None
    summary = [
        '',
        f"Common target: test force RMSE <= {target * 1e3:.1f} meV/Å (1.2 x the larger best RMSE). Time to reach it: "
        f"NEP {reach['nep']:.1f} s, MTP {reach['mtp']:.1f} s"
        + (f' (MTP/NEP = {ratio:.2f}).' if ratio else '.'),
        '',
        '| MD speed, one core (atom-steps/s) | ' + ' | '.join(f'{n} atoms' for n in args.md_atoms) + ' |',
        '| --- | ' + ' | '.join('---:' for _ in args.md_atoms) + ' |',
    ]
    for family, label in (('nep', best['nep']['family']), ('mtp', best['mtp']['family'])):
        summary.append(f'| {label}, best of its runs | ' + ' | '.join(f'{speeds[family][n]:.3g}'
                                                                       for n in args.md_atoms) + ' |')
    summary += ['', f"Frames: {args.train} train / {args.test} test, 32-atom Cu-Au cells, EMT labels. Hardware: "
                f"{hardware['cpu']}, {hardware['cores']} cores (neppo {NEPPO_THREADS} torch threads; motep and the "
                f"MD serial). Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}. Total "
                f"{result['total_wall_time'] / 60:.0f} min, load average at the end {os.getloadavg()[0]:.2f}."]
    text = '\n'.join(lines + summary)
    print(text)
    if args.write:
        replace_section(RESULTS, 'nep-vs-mtp', '## Time to accuracy and MD speed: neppo NEP vs motep MTP (CPU)',
                        text, '# NEP vs MTP on the CPU\n\nWritten by `benchmarks/bench_nep_vs_mtp_cpu.py --write`.')


if __name__ == '__main__':
    main()
