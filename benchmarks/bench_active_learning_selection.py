"""Benchmark: labels needed to reach a force-RMSE target, MTP grade-based D-optimal selection vs. random.

Run by hand (pytest does not collect it); the default run takes ~5 min on 2 cores::

    python benchmarks/bench_active_learning_selection.py        (from the repository root)

Options (combine freely)::

    --target 0.05        # force-RMSE target in eV/Å (default: --target-factor x the full-pool RMSE)
    --target-factor 1.5  # target = factor x test force RMSE of an MTP trained on the whole labelled pool
    --batch 4            # frames added per round (default 4)
    --rounds 10          # selection rounds per strategy (default 10: up to seed + 40 labels)
    --seeds 3            # random-selection seeds (default 3; mean ± std reported)
    --level 6            # MTP level template (default 6)
    --max-iter 500       # BFGS iterations per training (default 500)
    --workers 2          # worker processes (default 2 = the cores of this machine)
    --json results.json  # also write every number as JSON
    --keep               # keep the working directory (pool/test/seed .cfg, every trained .mtp)

What it measures: on the SAME unlabelled pool, how many labelled frames an MTP needs before its force RMSE
on a held-out test set drops below a target, when the frames are chosen (a) by the MTP's extrapolation
grade / D-optimality (:func:`aiida_mlcampaign.mtp.engine.select_add`, MaxVol on the energy Jacobians, mlip-2's
``select-add``) and (b) uniformly at random; reported as the ratio random / grade of the labels needed
(seed set included). **ASE's EMT calculator stands in for DFT in this benchmark only**: it labels the seed,
test and selected frames; nothing else in the project uses it.

No AiiDA is involved; only the project's own building blocks:
``aiida_mlcampaign.mtp.engine.train / evaluate / select_add / grade / load_images / min_distance_of``,
``aiida_mlcampaign.formats.mtp.initial_potential / write_mtp`` (level template),
``aiida_mlcampaign.formats.mlip_cfg.write_cfg`` and ``aiida_mlcampaign.formats.frames.Frame.from_ase``.

Setup (all deterministic, fixed seeds):

* System: Cu-Au (EMT), fcc cells of 8, 12, 16 and 32 atoms with a random Au fraction in [0, 1] (Vegard
  lattice constant), types Cu = 0, Au = 1.
* Pool (default 240 frames, unlabelled): 80 % from Langevin MD driven by EMT at 300, 600, 900, 1200 or
  1500 K in cells with a random symmetric strain of up to ±4 % (8 frames per walker, 20 MD steps = 40 fs
  apart after 40 steps of equilibration); 20 % static cells strained by up to ±7 % and rattled by
  0.04-0.12 Å. Written once to ``pool.cfg`` (no labels); every strategy reads that file.
* Test set (50 frames, EMT-labelled): the same recipe with independent random streams (new walkers).
* Seed set (5 frames, EMT-labelled, shared by all strategies): a cold start, 300 K MD in unstrained 8-atom
  cells with 0, 2, 4, 6 and 8 Au atoms.
* Every round the MTP is retrained from the untrained level template (``initial_potential(level, 2,
  min_dist=1.8, max_dist=5.0)``) with ``engine.train(..., seed=0, max_iter)`` on all labels so far and
  evaluated on the test set (``engine.evaluate(...).errors['forces_rmse']``, eV/Å per Cartesian
  component). Round 0 is the seed set alone; rounds 1..``--rounds`` each add ``--batch`` frames:

  (a) grade: ``engine.select_add(mtp, species, labelled, remaining_pool, select_threshold=1.1,
      budget=batch)`` (highest D-optimal grade first); if it offers fewer than ``batch``, the rest is
      filled with the highest ``engine.grade`` among the remaining candidates;
  (b) random: ``numpy.random.default_rng(1000 + seed).choice(remaining_pool, batch, replace=False)``.

  A selected frame is labelled with EMT when it is selected (one EMT call per label; counted and checked).
* Reference: an MTP trained the same way on the whole pool (all frames EMT-labelled); the default target is
  ``--target-factor`` (1.5) x its test force RMSE.
* Labels needed = labels (seed included) of the first round whose test force RMSE is below the target,
  i.e. what a loop that stops at the target reports. With the default (derived) target every strategy runs
  all its rounds in parallel with the reference and the stop is applied afterwards; with ``--target`` the
  runs stop at the target.

It exits non-zero (``FAILED: ...`` on stderr) if anything is inconsistent: the pool, test or seed set a worker
read differs from the one generated (SHA-256 of the ``.cfg`` files and of the structures loaded), test and
pool share a structure, a frame is closer than ``min_dist``, a selection repeats a frame or picks a labelled
one, the label count differs from the EMT calls, the seed-set-only MTP (round 0) differs between strategies,
an RMSE is not finite, the target is already met by the seed set, or a strategy does not reach the target
within ``--rounds``.
"""

from __future__ import annotations

import os

# One BLAS thread per process: the workers run side by side on the 2 cores, and round 0 must be bit-identical.
for _name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_name, '1')

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

SPECIES = ['Cu', 'Au']
LATTICE = {'Cu': 3.61, 'Au': 4.08}  # Å, Vegard's law in between
MIN_DIST = 1.8  # Å, min_dist of the MTP radial basis
MAX_DIST = 5.0  # Å, cutoff
N_SEED = 5
POOL_WALKERS, POOL_RATTLED = 48, 48  # 48 x 4 MD frames + 48 rattled = 240
TEST_WALKERS, TEST_RATTLED = 10, 10  # 10 x 4 MD frames + 10 rattled = 50
FRAMES_PER_WALKER = 4
TEMPERATURES = (300, 600, 900, 1200, 1500)
TRAIN_SEED = 0
SELECT_THRESHOLD = 1.1


class BenchmarkError(RuntimeError):
    """An inconsistency: the benchmark's numbers would mean nothing."""


def fail(message: str):
    raise BenchmarkError(message)


def quiet() -> None:
    warnings.simplefilter('ignore')
    logging.getLogger('motep').setLevel(logging.ERROR)


# ----------------------------------------------------------------------------------------- data


def emt_label(atoms):
    """A copy of ``atoms`` with EMT energy, forces and stress attached (EMT stands in for DFT)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    work = atoms.copy()
    work.set_constraint()
    work.calc = EMT()
    energy = work.get_potential_energy()
    forces = work.get_forces()
    stress = work.get_stress()
    labelled = atoms.copy()
    labelled.set_constraint()
    labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=forces, stress=stress)
    return labelled


def make_cell(rng, n_atoms: int | None = None, au_count: int | None = None):
    """An fcc Cu-Au cell of 8, 12, 16 or 32 atoms with random Au sites (Vegard lattice constant)."""
    from ase.build import bulk

    shapes = {8: ('cubic', (2, 1, 1)), 12: ('primitive', (2, 2, 3)), 16: ('cubic', (2, 2, 1)), 32: ('cubic', (2, 2, 2))}
    if n_atoms is None:
        n_atoms = int(rng.choice([8, 12, 16, 32], p=[0.3, 0.3, 0.25, 0.15]))
    kind, repeat = shapes[n_atoms]
    if au_count is None:
        au_count = int(round(rng.uniform(0.0, 1.0) * n_atoms))
    x = au_count / n_atoms
    a = (1 - x) * LATTICE['Cu'] + x * LATTICE['Au']
    atoms = bulk('Cu', 'fcc', a=a, cubic=(kind == 'cubic')).repeat(repeat)
    assert len(atoms) == n_atoms
    numbers = np.full(n_atoms, 29)
    numbers[rng.choice(n_atoms, au_count, replace=False)] = 79
    atoms.set_atomic_numbers(numbers)
    return atoms


def strain(atoms, rng, amplitude: float):
    eps = rng.uniform(-amplitude, amplitude, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(np.array(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)


def md_walker(rng, temperature: float, n_frames: int, atoms, equilibrate: int = 40, every: int = 20):
    """EMT-driven Langevin MD (2 fs); ``n_frames`` snapshots ``every`` steps apart, without labels."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    atoms.calc = EMT()
    if hasattr(vd, 'thermalize_momenta'):
        vd.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms, preserve_temperature=True)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02 / units.fs,
                        fixcm=False, rng=rng)
    dynamics.run(equilibrate)
    frames = []
    for _ in range(n_frames):
        dynamics.run(every)
        frame = atoms.copy()
        frame.set_constraint()
        frame.calc = None
        frames.append(frame)
    return frames


def distribution(seed: int, n_walkers: int, n_rattled: int) -> list:
    """Frames of the pool/test distribution: MD at 300-1500 K in strained cells, plus strained+rattled."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_walkers):
        atoms = make_cell(rng)
        strain(atoms, rng, 0.04)
        temperature = float(rng.choice(TEMPERATURES))
        frames += md_walker(rng, temperature, FRAMES_PER_WALKER, atoms)
    for _ in range(n_rattled):
        atoms = make_cell(rng)
        strain(atoms, rng, 0.07)
        atoms.positions += rng.normal(0.0, rng.uniform(0.04, 0.12), size=atoms.positions.shape)
        frames.append(atoms)
    return frames


def seed_set() -> list:
    """Cold start: 300 K MD, unstrained 8-atom cells, 0/2/4/6/8 Au atoms; one frame each."""
    rng = np.random.default_rng(7)
    return [md_walker(rng, 300.0, 1, make_cell(rng, 8, au))[0] for au in np.linspace(0, 8, N_SEED).astype(int)]


def write_frames(frames, path) -> None:
    from aiida_mlcampaign.formats.frames import Frame
    from aiida_mlcampaign.formats.mlip_cfg import write_cfg

    count = write_cfg([Frame.from_ase(a) for a in frames], path, SPECIES)
    if count != len(frames):
        fail(f'{path}: wrote {count} of {len(frames)} frames')


def file_sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def structures_sha(images) -> str:
    """SHA-256 over numbers, cell, pbc and positions of every image, in order (exact bytes)."""
    digest = hashlib.sha256()
    for atoms in images:
        digest.update(np.asarray(atoms.numbers, dtype='<i8').tobytes())
        digest.update(np.asarray(atoms.cell, dtype='<f8').tobytes())
        digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
        digest.update(np.ascontiguousarray(atoms.positions, dtype='<f8').tobytes())
    return digest.hexdigest()


def labels_sha(images) -> str:
    digest = hashlib.sha256()
    for atoms in images:
        results = atoms.calc.results
        digest.update(np.float64(results['energy']).tobytes())
        digest.update(np.ascontiguousarray(results['forces'], dtype='<f8').tobytes())
    return digest.hexdigest()


def build_data(workdir: pathlib.Path) -> dict:
    """Generate seed, pool and test sets, write them as .cfg and return paths, hashes and sizes."""
    from aiida_mlcampaign.formats.frames import structure_hash
    from aiida_mlcampaign.formats.mtp import initial_potential, write_mtp
    from aiida_mlcampaign.mtp import engine

    start = time.perf_counter()
    seed = [emt_label(a) for a in seed_set()]
    pool = distribution(2024, POOL_WALKERS, POOL_RATTLED)
    test = [emt_label(a) for a in distribution(4048, TEST_WALKERS, TEST_RATTLED)]
    paths = {name: workdir / f'{name}.cfg' for name in ('seed', 'pool', 'test')}
    write_frames(seed, paths['seed'])
    write_frames(pool, paths['pool'])  # no labels: the strategies label what they select
    write_frames(test, paths['test'])

    def hashes(images):
        return {structure_hash(a.get_chemical_symbols(), a.cell, a.positions, a.pbc) for a in images}

    seed_h, pool_h, test_h = hashes(seed), hashes(pool), hashes(test)
    if len(pool_h) != len(pool) or len(test_h) != len(test) or len(seed_h) != len(seed):
        fail('duplicate structures inside the seed, pool or test set')
    if pool_h & test_h or seed_h & (pool_h | test_h):
        fail('the test (or seed) set shares a structure with the pool')
    shortest = engine.min_distance_of(seed + pool + test)
    if not shortest > MIN_DIST:
        fail(f'shortest interatomic distance {shortest:.3f} Å is not above the MTP min_dist {MIN_DIST} Å')
    if any(a.calc is not None for a in engine.load_images(paths['pool'], SPECIES)[:1]):
        fail('pool.cfg carries labels; it must be unlabelled')
    template = workdir / 'template.mtp'
    write_mtp(initial_potential(LEVEL[0], len(SPECIES), MIN_DIST, MAX_DIST), template)
    natoms = [len(a) for a in pool]
    au = [float(np.mean(a.numbers == 79)) for a in pool]
    return {
        'paths': {k: str(v) for k, v in paths.items()},
        'template': str(template),
        'sha': {k: file_sha(v) for k, v in paths.items()},
        'structures_sha': {
            'seed': structures_sha(engine.load_images(paths['seed'], SPECIES)),
            'pool': structures_sha(engine.load_images(paths['pool'], SPECIES)),
            'test': structures_sha(engine.load_images(paths['test'], SPECIES)),
        },
        'sizes': {'seed': len(seed), 'pool': len(pool), 'test': len(test)},
        'pool_natoms': [min(natoms), max(natoms), float(np.mean(natoms))],
        'pool_au_fraction': [min(au), max(au)],
        'shortest_distance': float(shortest),
        'test_force_scale': float(np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in test]) ** 2))),
        'seconds': time.perf_counter() - start,
    }


LEVEL = [6]  # set from --level before build_data


# --------------------------------------------------------------------------------------- workers


def run_task(task: dict) -> dict:
    """One strategy (``grade``, ``random``) or the full-pool ``reference``, in its own process."""
    quiet()
    from aiida_mlcampaign.mtp import engine

    data, settings = task['data'], task['settings']
    out = pathlib.Path(task['dir'])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # The same files, checked byte for byte and structure for structure.
    read_sha = {k: file_sha(v) for k, v in data['paths'].items()}
    seed = engine.load_images(data['paths']['seed'], SPECIES)
    pool = engine.load_images(data['paths']['pool'], SPECIES)
    for atoms in pool:
        atoms.calc = None  # unlabelled candidates: only positions are known before selection
    read_structures = {
        'seed': structures_sha(seed),
        'pool': structures_sha(pool),
        'test': structures_sha(engine.load_images(data['paths']['test'], SPECIES)),
    }
    emt_calls = 0

    def label(atoms):
        nonlocal emt_calls
        emt_calls += 1
        return emt_label(atoms)

    def fit_and_test(training, tag: str) -> tuple[float, float]:
        path = out / f'{tag}.mtp'
        errors = engine.train(data['template'], training, SPECIES, path,
                              seed=TRAIN_SEED, max_iter=settings['max_iter'], forces_weight=settings['forces_weight'])
        test_rmse = float(engine.evaluate(path, data['paths']['test'], SPECIES).errors['forces_rmse'])
        if not (np.isfinite(test_rmse) and np.isfinite(errors['forces_rmse'])):
            fail(f'{task["name"]} {tag}: non-finite force RMSE (train {errors["forces_rmse"]}, test {test_rmse})')
        return test_rmse, float(errors['forces_rmse'])

    result = {'name': task['name'], 'kind': task['kind'], 'read_sha': read_sha, 'read_structures': read_structures}

    if task['kind'] == 'reference':
        labelled = [label(a) for a in pool]
        test_rmse, train_rmse = fit_and_test(labelled, 'full_pool')
        result.update(test_rmse=test_rmse, train_rmse=train_rmse, labels=len(labelled), emt_calls=emt_calls,
                      seconds=time.perf_counter() - start)
        # Tell the strategies still running the target, so that they can stop at it (atomic rename).
        tmp = pathlib.Path(settings['target_file']).with_suffix('.tmp')
        tmp.write_text(json.dumps({'reference_rmse': test_rmse}))
        tmp.replace(settings['target_file'])
        print(f'[reference] whole pool ({len(labelled)} labels): test F-RMSE {test_rmse:.4f} eV/Å '
              f'({time.perf_counter() - start:.0f} s)', flush=True)
        return result

    labelled = list(seed)  # labelled by EMT when the seed .cfg was made
    chosen: list[int] = []
    curve = []
    picks = []  # per round: (from select_add, filled by grade)
    rng = np.random.default_rng(1000 + task.get('seed', 0))
    target = settings['target']
    target_file = pathlib.Path(settings['target_file'])
    path_prev = None  # the MTP fitted in the previous round (set at the end of each round)
    for round_ in range(settings['rounds'] + 1):
        if round_ > 0:
            taken = set(chosen)
            remaining = [i for i in range(len(pool)) if i not in taken]
            batch = settings['batch']
            if len(remaining) < batch:
                fail(f'{task["name"]}: pool exhausted in round {round_}')
            if task['kind'] == 'grade':
                candidates = [pool[i] for i in remaining]
                sel = [int(i) for i in engine.select_add(path_prev, SPECIES, labelled, candidates,
                                                         select_threshold=SELECT_THRESHOLD, budget=batch)]
                if len(set(sel)) != len(sel) or any(not 0 <= i < len(candidates) for i in sel) or len(sel) > batch:
                    fail(f'grade round {round_}: select_add returned invalid indices {sel}')
                n_dopt = len(sel)
                if len(sel) < batch:
                    gamma = engine.grade(path_prev, SPECIES, labelled, candidates)
                    for i in np.argsort(-gamma, kind='stable'):
                        if int(i) not in sel:
                            sel.append(int(i))
                        if len(sel) == batch:
                            break
                picks.append((n_dopt, batch - n_dopt))
                new = [remaining[i] for i in sel]
            else:
                new = [int(i) for i in rng.choice(remaining, size=batch, replace=False)]
            if len(set(new)) != len(new) or set(new) & taken:
                fail(f'{task["name"]} round {round_}: selection repeats a frame or picks a labelled one: {new}')
            chosen += new
            labelled += [label(pool[i]) for i in new]
        if len(labelled) != len(seed) + len(chosen) or emt_calls != len(chosen):
            fail(f'{task["name"]} round {round_}: {len(labelled)} labels, {len(chosen)} selected, '
                 f'{emt_calls} EMT calls')
        t0 = time.perf_counter()
        test_rmse, train_rmse = fit_and_test(labelled, f'round{round_:02d}')
        path_prev = out / f'round{round_:02d}.mtp'
        curve.append({'round': round_, 'labels': len(labelled), 'test_rmse': test_rmse, 'train_rmse': train_rmse,
                      'seconds': time.perf_counter() - t0})
        print(f'[{task["name"]}] round {round_:2d}: {len(labelled):3d} labels, test F-RMSE {test_rmse:.4f} eV/Å '
              f'(train {train_rmse:.4f})', flush=True)
        if target is None and target_file.exists():
            target = settings['target_factor'] * json.loads(target_file.read_text())['reference_rmse']
            print(f'[{task["name"]}] target known: test F-RMSE < {target:.4f} eV/Å', flush=True)
        if target is not None and any(point['test_rmse'] < target for point in curve):
            break  # stop at the target (a round that already crossed it counts as the stop)
    result.update(curve=curve, chosen=chosen, picks=picks, emt_calls=emt_calls, seconds=time.perf_counter() - start,
                  target_used=target)
    return result


# ------------------------------------------------------------------------------------------ main


def labels_needed(curve, target: float):
    for point in curve:
        if point['test_rmse'] < target:
            return point
    return None


def check_consistency(data: dict, results: list[dict]) -> None:
    for r in results:
        if r['read_sha'] != data['sha']:
            fail(f'{r["name"]}: the .cfg files it read differ from the ones generated '
                 f'({r["read_sha"]} != {data["sha"]})')
        if r['read_structures'] != data['structures_sha']:
            fail(f'{r["name"]}: the structures it loaded differ from the generated ones')
    reference = next(r for r in results if r['kind'] == 'reference')
    if reference['labels'] != data['sizes']['pool'] or reference['emt_calls'] != data['sizes']['pool']:
        fail('reference: not trained on the whole pool')
    runs = [r for r in results if r['kind'] != 'reference']
    round0 = {r['name']: r['curve'][0]['test_rmse'] for r in runs}
    first = next(iter(round0.values()))
    if any(abs(v - first) > 1e-9 * max(1.0, abs(first)) for v in round0.values()):
        fail(f'the seed-set-only MTP (round 0) differs between strategies: {round0}')
    randoms = [tuple(r['chosen']) for r in runs if r['kind'] == 'random']
    if len(randoms) > 1 and len(set(randoms)) != len(randoms):
        fail('two random seeds selected the same frames')


def fmt_pm(values) -> str:
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return f'{values[0]:.4g}'
    return f'{values.mean():.4g} ± {values.std(ddof=1):.2g}'


def report(args, data, results, target, target_origin, wall) -> tuple[str, bool, dict]:
    runs = {r['name']: r for r in results if r['kind'] != 'reference'}
    grade = runs['grade']
    randoms = [r for r in runs.values() if r['kind'] == 'random']
    reference = next(r for r in results if r['kind'] == 'reference')

    print('\nTest force RMSE (eV/Å) after each round (retrained from the template each round):')
    header = '| labels | grade (D-optimal) | ' + ' | '.join(r['name'] for r in randoms) + ' | random mean ± std |'
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    n_rows = max(len(r['curve']) for r in runs.values())
    for i in range(n_rows):
        labels = data['sizes']['seed'] + i * args.batch
        cells = [f'{grade["curve"][i]["test_rmse"]:.4f}' if i < len(grade['curve']) else '']
        values = []
        for r in randoms:
            if i < len(r['curve']):
                cells.append(f'{r["curve"][i]["test_rmse"]:.4f}')
                values.append(r['curve'][i]['test_rmse'])
            else:
                cells.append('')
        mean = fmt_pm(values) if len(values) == len(randoms) else ''
        print(f'| {labels} | ' + ' | '.join(cells) + f' | {mean} |')

    ok = True
    needed = {}
    for name, r in runs.items():
        point = labels_needed(r['curve'], target)
        if point is None:
            ok = False
            print(f'{name}: target {target:.4f} eV/Å NOT reached within {args.rounds} rounds '
                  f'({r["curve"][-1]["labels"]} labels, last test F-RMSE {r["curve"][-1]["test_rmse"]:.4f})',
                  file=sys.stderr)
        needed[name] = point
    grade_rounds = (needed['grade'] or grade['curve'][-1])['round']
    d_opt = sum(p[0] for p in grade['picks'][:grade_rounds])
    fill = sum(p[1] for p in grade['picks'][:grade_rounds])

    lines = []
    lines.append(f'Cu-Au fcc, ASE EMT as the stand-in for DFT; MTP level {args.level:02d} retrained from the '
                 f'template every round (motep BFGS, max_iter {args.max_iter}); seed set {data["sizes"]["seed"]} '
                 f'frames, pool {data["sizes"]["pool"]} frames ({data["pool_natoms"][0]}-{data["pool_natoms"][1]} '
                 f'atoms, MD 300-1500 K + strained/rattled cells), held-out test set {data["sizes"]["test"]} frames; '
                 f'batch {args.batch} per round; target test force RMSE < {target:.4f} eV/Å ({target_origin}).')
    lines.append('')
    lines.append('| strategy | labels to reach target (seed incl.) | test F-RMSE there (eV/Å) |')
    lines.append('|---|---|---|')
    if all(needed.values()):
        g = needed['grade']
        lines.append(f'| MTP grade, D-optimal (`select_add`; {d_opt} D-optimal + {fill} grade-filled picks) '
                     f'| {g["labels"]} | {g["test_rmse"]:.4f} |')
        rl = [needed[r['name']]['labels'] for r in randoms]
        rr = [needed[r['name']]['test_rmse'] for r in randoms]
        lines.append(f'| random ({len(randoms)} seeds, mean ± std) | {fmt_pm(rl)} | {fmt_pm(rr)} |')
        ratios = np.array(rl, dtype=float) / g['labels']
        lines.append(f'| **ratio random / grade** | **{fmt_pm(ratios)}** | |')
        lines.append(f'| whole pool (reference) | {reference["labels"]} | {reference["test_rmse"]:.4f} |')
    lines.append('')
    lines.append(f'Wall time {wall:.0f} s on {args.workers} worker processes ({os.cpu_count()} cores).')
    return '\n'.join(lines), ok, needed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--target', type=float, default=None, help='force-RMSE target in eV/Å')
    parser.add_argument('--target-factor', type=float, default=1.5, help='target = factor x full-pool RMSE')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--seeds', type=int, default=3, help='random-selection seeds')
    parser.add_argument('--level', type=int, default=6)
    parser.add_argument('--max-iter', type=int, default=500)
    parser.add_argument('--forces-weight', type=float, default=1.0,
                        help='forces_weight of engine.train (energy_weight 1, stress_weight 0.001)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--json', type=pathlib.Path, default=None)
    parser.add_argument('--keep', action='store_true')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.seeds < 1 or args.max_iter < 1 or args.workers < 1:
        parser.error('--batch, --rounds, --seeds, --max-iter and --workers must be >= 1')
    if args.target is not None and not args.target > 0:
        parser.error('--target must be > 0')
    if not args.target_factor > 0:
        parser.error('--target-factor must be > 0')
    from aiida_mlcampaign.formats.mtp import available_levels

    if args.level not in available_levels():
        parser.error(f'--level: no template for {args.level}; available: {available_levels()}')
    LEVEL[0] = args.level
    quiet()

    wall_start = time.perf_counter()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='bench_al_selection_'))
    print('Active-learning selection benchmark: MTP grade-based D-optimal vs random selection')
    print('NOTE: ASE EMT stands in for DFT in this benchmark only (labels of seed, test and selected frames).')
    print(f'python {platform.python_version()}, work dir {workdir}')
    try:
        data = build_data(workdir)
        if data['sizes']['seed'] + args.rounds * args.batch > data['sizes']['pool']:
            fail(f'--rounds x --batch = {args.rounds * args.batch} exceeds the pool ({data["sizes"]["pool"]})')
        print(f'data: seed {data["sizes"]["seed"]}, pool {data["sizes"]["pool"]} (unlabelled, '
              f'{data["pool_natoms"][0]}-{data["pool_natoms"][1]} atoms, Au fraction '
              f'{data["pool_au_fraction"][0]:.2f}-{data["pool_au_fraction"][1]:.2f}), test {data["sizes"]["test"]} '
              f'(RMS force component {data["test_force_scale"]:.3f} eV/Å); shortest distance '
              f'{data["shortest_distance"]:.3f} Å; {data["seconds"]:.0f} s')
        print(f'pool.cfg sha256 {data["sha"]["pool"]}', flush=True)

        settings = {'batch': args.batch, 'rounds': args.rounds, 'max_iter': args.max_iter, 'target': args.target,
                    'target_factor': args.target_factor,
                    'forces_weight': args.forces_weight, 'target_file': str(workdir / 'target.json')}
        # The reference (longest task) first; the strategies pick the target up from target.json once it is written.
        tasks = [{'name': 'reference', 'kind': 'reference'}, {'name': 'grade', 'kind': 'grade'}]
        tasks += [{'name': f'random{s}', 'kind': 'random', 'seed': s} for s in range(args.seeds)]
        for task in tasks:
            task.update(data=data, settings=settings, dir=str(workdir / task['name']))
        context = multiprocessing.get_context('spawn')
        with context.Pool(min(args.workers, len(tasks)), maxtasksperchild=1) as pool:
            results = pool.map(run_task, tasks, chunksize=1)
        check_consistency(data, results)

        reference = next(r for r in results if r['kind'] == 'reference')
        if args.target is not None:
            target, origin = args.target, f'--target; {args.target / reference["test_rmse"]:.2f} x the whole-pool RMSE'
        else:
            target = args.target_factor * reference['test_rmse']
            origin = f'{args.target_factor:g} x the whole-pool MTP\'s {reference["test_rmse"]:.4f} eV/Å'
        print(f'\nTarget: test force RMSE < {target:.4f} eV/Å ({origin})')
        round0 = next(r for r in results if r['kind'] == 'grade')['curve'][0]
        for r in results:
            if r['kind'] != 'reference' and r['target_used'] is not None and abs(r['target_used'] - target) > 1e-12:
                fail(f'{r["name"]} stopped at target {r["target_used"]}, not at {target}')
        if round0['test_rmse'] < target:
            fail(f'the seed set alone already meets the target ({round0["test_rmse"]:.4f} < {target:.4f}); '
                 'choose a smaller --target')
        wall = time.perf_counter() - wall_start
        table, ok, needed = report(args, data, results, target, origin, wall)
        print('\n' + table)
        if args.json:
            args.json.write_text(json.dumps({
                'args': {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
                'data': data, 'target': target, 'results': results,
                'needed': needed, 'wall_seconds': wall}, indent=1, default=str))
        if not ok:
            fail('a strategy did not reach the target; raise --rounds or --target')
        return 0
    except BenchmarkError as exc:
        print(f'FAILED: {exc}', file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f'kept {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
