"""Benchmark: assemble training-set arrays from N stored DFT outputs, in bulk vs. node by node.

Run by hand (pytest does not collect it); the default run (N = 10000, sqlite_dos) takes ~5-6 min on 2 cores,
almost all of it in method (b)::

    python benchmarks/bench_training_set_assembly.py        (from the repository root)

Options (combine freely)::

    --frames 2000        # N (default 10000)
    --storage psql       # core.psql_dos on PostgreSQL at 127.0.0.1:5432, user postgres (default: core.sqlite_dos)
    --objects packed     # pack the repository first, as `verdi storage maintain --full` would (default: loose)
    --setup orm          # create the nodes with Node.store() instead of bulk_insert (~0.1 s per frame)
    --tracemalloc        # add tracemalloc peaks (runs each method a second time)
    --keep               # keep the temporary profile and print its path

What it does:

1. Creates a throw-away AiiDA config and profile in a temporary ``AIIDA_PATH`` (``core.sqlite_dos``, or with
   ``--storage psql`` ``core.psql_dos`` on a temporary database created through psycopg as user ``postgres``;
   no broker). Nothing outside the temporary directory (and that database) is touched; both are removed at
   the end unless ``--keep``.
2. Setup (timed separately): N "PwCalculation outputs", each a ``CalcJobNode`` with two ``create`` links to
   an ``output_parameters`` ``Dict`` (``energy`` in eV, ``wall_time_seconds``) and an ``output_trajectory``
   ``TrajectoryData`` (one 8-atom frame: ``positions``, ``cells``, ``steps`` from ``set_trajectory`` plus
   ``forces``). ``Node.store()`` costs ~0.1 s per frame here (link validation, hashing, one repository
   write per array), i.e. ~17 min for 10^4 frames, so by default the rows are written the way
   ``verdi archive import`` does it: ``StorageBackend.bulk_insert`` for nodes and links in one transaction and
   the ``.npy`` files through the repository backend. The ``.npy`` bytes are checked to be identical to what
   ``ArrayData.set_array`` writes, and method (b) reads every node back through the ORM, which validates them.
3. Times, each in a fresh subprocess so that memory figures and caches do not leak between methods:

   (a) bulk: one ``QueryBuilder`` (calc -> Dict, calc -> TrajectoryData) projecting ``attributes.energy`` and
       the trajectory's ``repository_metadata`` (file name -> object key), then every ``.npy`` object read in
       one pass with ``DiskObjectStoreRepositoryBackend.iter_object_streams`` and ``np.load``;
   (b) one by one: for each (Dict pk, TrajectoryData pk) pair, ``orm.load_node(pk)['energy']`` and
       ``orm.load_node(pk).get_array('forces' / 'positions')``. (b) is given the pk pairs for free; (a) finds
       them itself inside the timed section.

   Peak memory is the growth of the peak RSS (``VmHWM``, reset before the section) over the RSS before it; with
   ``--tracemalloc`` each method runs once more, untimed, for the ``tracemalloc`` peak of Python allocations.
4. Checks that (a), (b) and the generated data are bit-identical, then prints a Markdown table.

Two aiida-core details the numbers depend on: AiiDA stores float attributes with 14 significant digits
(``clean_value``, ``AIIDA_FLOAT_PRECISION``), so the generated energies are rounded the same way before they
are compared; and (b) pays several ms per ``get_array`` here because the repository backend opens and closes a
disk-objectstore session (an SQLAlchemy engine on ``packs.idx``) for ``has_object`` and again for ``open``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuid_module

import numpy as np

PROFILE_NAME = 'bench'
PW_PROCESS_TYPE = 'aiida.calculations:quantumespresso.pw'
SYMBOLS = ['Cu', 'Cu', 'Cu', 'Cu', 'S', 'S', 'S', 'S']
CELL_EDGE = 5.0


# ----------------------------------------------------------------------------------------- profile


def create_throwaway_profile(root: pathlib.Path, storage: str) -> dict:
    """Config + profile under ``root`` (AIIDA_PATH must already point there); returns info for cleanup."""
    from aiida.manage.configuration import create_profile, get_config, load_profile

    config = get_config(create=True)
    info = {'storage': storage, 'database': None}
    if storage == 'sqlite':
        backend = 'core.sqlite_dos'
        storage_config = {'filepath': str(root / 'storage')}
    else:
        import psycopg

        database = f'aiida_bench_{uuid_module.uuid4().hex[:12]}'
        with psycopg.connect('host=127.0.0.1 port=5432 user=postgres dbname=postgres', autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE {database}')
        info['database'] = database
        backend = 'core.psql_dos'
        storage_config = {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': '127.0.0.1',
            'database_port': 5432,
            'database_username': 'postgres',
            'database_password': '',
            'database_name': database,
            'repository_uri': (root / 'repository').as_uri(),
        }
    create_profile(config, storage_backend=backend, storage_config=storage_config, name=PROFILE_NAME,
                   email='bench@localhost', is_test_profile=True)
    config.set_default_profile(PROFILE_NAME, overwrite=True)
    config.store()
    load_profile(PROFILE_NAME, allow_switch=True)
    return info


def drop_database(database: str) -> None:
    import psycopg

    with psycopg.connect('host=127.0.0.1 port=5432 user=postgres dbname=postgres', autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS {database} WITH (FORCE)')


# ----------------------------------------------------------------------------------------- setup


def generate(frames: int, seed: int) -> dict[str, np.ndarray]:
    """Random labels; scalars already as AiiDA stores attributes (``clean_value``: 14 significant digits)."""
    from aiida.orm.implementation.utils import clean_value

    rng = np.random.default_rng(seed)
    natoms = len(SYMBOLS)
    base = np.array([[i % 2, (i // 2) % 2, i // 4] for i in range(natoms)], dtype=float) * CELL_EDGE / 2
    return {
        'energies': np.array(clean_value((-3.5 * natoms + rng.normal(0, 0.3, frames)).tolist())),
        'wall_times': np.array(clean_value(rng.uniform(30, 300, frames).tolist())),
        'positions': base[None] + rng.normal(0, 0.1, (frames, natoms, 3)),
        'forces': rng.normal(0, 0.5, (frames, natoms, 3)),
    }


def npy_bytes(array: np.ndarray) -> bytes:
    handle = io.BytesIO()
    np.save(handle, array, allow_pickle=False)  # what ArrayData.set_array writes
    return handle.getvalue()


def trajectory_template(positions: np.ndarray, forces: np.ndarray):
    from aiida import orm

    trajectory = orm.TrajectoryData()
    cells = (np.eye(3) * CELL_EDGE)[None]
    trajectory.set_trajectory(symbols=SYMBOLS, positions=positions[None], cells=cells, pbc=(True, True, True))
    trajectory.set_array('forces', forces[None])
    return trajectory


def setup_orm(data: dict) -> list[tuple[int, int]]:
    """Node.store() for every node, all in one transaction."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    pairs = []
    with storage.transaction():
        for i in range(len(data['energies'])):
            calc = orm.CalcJobNode()
            calc.set_process_type(PW_PROCESS_TYPE)
            calc.set_process_label('PwCalculation')
            calc.set_exit_status(0)
            calc.store()
            params = orm.Dict({'energy': float(data['energies'][i]), 'wall_time_seconds': float(data['wall_times'][i])})
            params.base.links.add_incoming(calc, LinkType.CREATE, 'output_parameters')
            params.store()
            trajectory = trajectory_template(data['positions'][i], data['forces'][i])
            trajectory.base.links.add_incoming(calc, LinkType.CREATE, 'output_trajectory')
            trajectory.store()
            pairs.append((params.pk, trajectory.pk))
    return pairs


def setup_bulk(data: dict) -> list[tuple[int, int]]:
    """The same nodes and links written as rows (``bulk_insert``) plus repository objects, as archive import does."""
    from aiida import orm
    from aiida.common import timezone
    from aiida.common.links import LinkType
    from aiida.manage import get_manager
    from aiida.orm.entities import EntityTypes
    from aiida.orm.implementation.utils import clean_value

    storage = get_manager().get_profile_storage()
    repository = storage.get_repository()
    user_id = orm.User.collection.get_default().pk
    count = len(data['energies'])

    # Attributes and file contents exactly as the ORM would make them.
    template = trajectory_template(data['positions'][0], data['forces'][0])
    traj_attributes = template.base.attributes.all
    for name in ('positions', 'forces'):
        if npy_bytes(data[name][0][None]) != template.base.repository.get_object_content(f'{name}.npy', mode='rb'):
            raise RuntimeError(f'{name}.npy: bytes differ from what ArrayData.set_array writes')
    shared_keys = {}  # cells.npy and steps.npy are the same for every frame: one object each
    for name in ('cells', 'steps'):
        content = template.base.repository.get_object_content(f'{name}.npy', mode='rb')
        shared_keys[name] = repository.put_object_from_filelike(io.BytesIO(content))

    def row(node_class, attributes, repository_metadata=None, process_type=None):
        now = timezone.now()
        return {
            'uuid': str(uuid_module.uuid4()), 'node_type': node_class.class_node_type, 'process_type': process_type,
            'label': '', 'description': '', 'ctime': now, 'mtime': now, 'attributes': clean_value(attributes),
            'extras': {}, 'repository_metadata': repository_metadata or {}, 'user_id': user_id, 'dbcomputer_id': None,
        }

    calc_rows, param_rows, traj_rows = [], [], []
    for i in range(count):
        keys = {
            'positions': repository.put_object_from_filelike(io.BytesIO(npy_bytes(data['positions'][i][None]))),
            'forces': repository.put_object_from_filelike(io.BytesIO(npy_bytes(data['forces'][i][None]))),
            **shared_keys,
        }
        calc_rows.append(row(orm.CalcJobNode, {'process_label': 'PwCalculation', 'process_state': 'finished',
                                               'exit_status': 0, 'sealed': True}, process_type=PW_PROCESS_TYPE))
        param_rows.append(row(orm.Dict, {'energy': float(data['energies'][i]),
                                         'wall_time_seconds': float(data['wall_times'][i])}))
        traj_rows.append(row(orm.TrajectoryData, traj_attributes,
                             {'o': {f'{name}.npy': {'k': key} for name, key in sorted(keys.items())}}))

    with storage.transaction():
        storage.bulk_insert(EntityTypes.NODE, calc_rows + param_rows + traj_rows)
        # Do not rely on RETURNING order: map uuid -> pk explicitly.
        pk_of = dict(orm.QueryBuilder().append(orm.Node, project=['uuid', 'id']).all())
        links, pairs = [], []
        for calc, params, traj in zip(calc_rows, param_rows, traj_rows, strict=True):
            calc_pk, params_pk, traj_pk = pk_of[calc['uuid']], pk_of[params['uuid']], pk_of[traj['uuid']]
            links.append({'input_id': calc_pk, 'output_id': params_pk, 'label': 'output_parameters',
                          'type': LinkType.CREATE.value})
            links.append({'input_id': calc_pk, 'output_id': traj_pk, 'label': 'output_trajectory',
                          'type': LinkType.CREATE.value})
            pairs.append((params_pk, traj_pk))
        storage.bulk_insert(EntityTypes.LINK, links)
    return pairs


# ----------------------------------------------------------------------------------------- the two methods


def assemble_bulk(_pairs) -> dict[str, np.ndarray]:
    from aiida import orm
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    qb = orm.QueryBuilder()
    qb.append(orm.CalcJobNode, filters={'process_type': PW_PROCESS_TYPE, 'attributes.exit_status': 0},
              project='id', tag='calc')
    # Exact on both backends because AiiDA stores float attributes with 14 significant digits (see generate());
    # core.sqlite_dos renders a projected JSON number with 15 (JSON_QUOTE), which would cut a full-precision double.
    qb.append(orm.Dict, with_incoming='calc', edge_filters={'label': 'output_parameters'},
              project='attributes.energy')
    qb.append(orm.TrajectoryData, with_incoming='calc', edge_filters={'label': 'output_trajectory'},
              project='repository_metadata')
    qb.order_by({'calc': 'id'})
    rows = qb.all()
    energies = np.array([energy for _, energy, _ in rows], dtype=float)
    force_keys = [meta['o']['forces.npy']['k'] for _, _, meta in rows]
    position_keys = [meta['o']['positions.npy']['k'] for _, _, meta in rows]

    repository = storage.get_repository()
    contents = {}
    for key, stream in repository.iter_object_streams(set(force_keys) | set(position_keys)):  # one pass, disk order
        contents[key] = stream.read()
    forces = np.stack([np.load(io.BytesIO(contents[key]))[0] for key in force_keys])
    positions = np.stack([np.load(io.BytesIO(contents[key]))[0] for key in position_keys])
    return {'energies': energies, 'forces': forces, 'positions': positions}


def assemble_one_by_one(pairs) -> dict[str, np.ndarray]:
    from aiida import orm

    energies, forces, positions = [], [], []
    for params_pk, traj_pk in pairs:
        energies.append(orm.load_node(params_pk)['energy'])
        trajectory = orm.load_node(traj_pk)
        forces.append(trajectory.get_array('forces')[0])
        positions.append(trajectory.get_array('positions')[0])
    return {'energies': np.array(energies, dtype=float), 'forces': np.stack(forces), 'positions': np.stack(positions)}


METHODS = {'bulk': assemble_bulk, 'one_by_one': assemble_one_by_one}


def proc_status_kib(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` from /proc/self/status (KiB)."""
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(f'{key}:'):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that the peak belongs to the timed section.

    ``resource.getrusage().ru_maxrss`` is not usable here: Linux keeps it across ``execve``, so a worker started
    by ``subprocess`` reports at least the RSS of the (large, forked) parent. VmHWM belongs to the new address space.
    """
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
    except OSError:
        pass  # then VmHWM counts from exec; the warm-up is small next to the measured section


def worker(method: str, workdir: pathlib.Path, trace: bool) -> None:
    """Runs in a subprocess with AIIDA_PATH set: load the profile, time one method, report JSON on stdout."""
    import tracemalloc

    from aiida import load_profile

    load_profile(PROFILE_NAME)
    pairs = [tuple(p) for p in json.loads((workdir / 'pairs.json').read_text())]
    function = METHODS[method]
    # Warm the imports and the storage connection outside the timed section.
    from aiida import orm

    orm.QueryBuilder().append(orm.Node, project='id').first()
    if method == 'one_by_one':
        function(pairs[:1])

    rss_before = proc_status_kib('VmRSS')
    reset_peak_rss()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    arrays = function(pairs)
    wall = time.perf_counter() - start
    result = {'method': method, 'wall_s': wall, 'frames': len(arrays['energies'])}
    if trace:
        result['tracemalloc_peak_mib'] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        peak = proc_status_kib('VmHWM')
        result['rss_growth_mib'] = max(peak - rss_before, 0) / 1024
        result['rss_peak_mib'] = peak / 1024
        np.savez(workdir / f'{method}.npz', **arrays)
    print(json.dumps(result))


def run_worker(method: str, root: pathlib.Path, workdir: pathlib.Path, trace: bool) -> dict:
    env = dict(os.environ, AIIDA_PATH=str(root))
    command = [sys.executable, __file__, '--worker', method, '--workdir', str(workdir)] + (['--trace'] if trace else [])
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f'worker {method} failed')
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=10000, help='number of stored calculation outputs (N)')
    parser.add_argument('--storage', choices=('sqlite', 'psql'), default='sqlite')
    parser.add_argument('--setup', choices=('bulk', 'orm'), default='bulk',
                        help='write nodes with bulk_insert (default) or Node.store() (~0.1 s per frame)')
    parser.add_argument('--objects', choices=('loose', 'packed'), default='loose',
                        help='leave repository objects loose (as store() does) or pack them first')
    parser.add_argument('--tracemalloc', action='store_true',
                        help='also run each method once more under tracemalloc (doubles the run time)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep', action='store_true', help='keep the temporary profile (path is printed)')
    parser.add_argument('--worker', choices=tuple(METHODS), help=argparse.SUPPRESS)
    parser.add_argument('--workdir', type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument('--trace', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker(args.worker, args.workdir, args.trace)
        return

    root = pathlib.Path(tempfile.mkdtemp(prefix='aiida-bench-'))
    os.environ['AIIDA_PATH'] = str(root)  # before aiida reads its configuration directory
    import warnings

    warnings.filterwarnings('ignore', message='Creating AiiDA configuration folder')
    info = {'database': None}
    try:
        info = create_throwaway_profile(root, args.storage)
        workdir = root / 'work'
        workdir.mkdir()
        print(f'profile {PROFILE_NAME!r} ({args.storage}) in {root}; N = {args.frames}', flush=True)

        start = time.perf_counter()
        data = generate(args.frames, args.seed)
        pairs = (setup_bulk if args.setup == 'bulk' else setup_orm)(data)
        setup_s = time.perf_counter() - start
        pack_s = None
        if args.objects == 'packed':
            from aiida.manage import get_manager

            start = time.perf_counter()
            get_manager().get_profile_storage().get_repository().maintain(live=False, pack_loose=True)
            pack_s = time.perf_counter() - start
        (workdir / 'pairs.json').write_text(json.dumps(pairs))
        nodes = 3 * args.frames
        print(f'setup ({args.setup}): {nodes} nodes, {2 * args.frames} links in {setup_s:.1f} s'
              + (f'; packing {pack_s:.1f} s' if pack_s is not None else ''), flush=True)
        from aiida.manage import get_manager

        get_manager().get_profile_storage().close()  # workers open their own connections

        results = {}
        for method in METHODS:
            results[method] = run_worker(method, root, workdir, trace=False)
            print(f'{method}: {results[method]["wall_s"]:.2f} s', flush=True)
        if args.tracemalloc:
            for method in METHODS:
                results[method].update(
                    {k: v for k, v in run_worker(method, root, workdir, trace=True).items() if 'tracemalloc' in k})

        # Identical arrays from both methods and equal to what was generated.
        bulk, single = np.load(workdir / 'bulk.npz'), np.load(workdir / 'one_by_one.npz')
        for name in ('energies', 'forces', 'positions'):
            if not np.array_equal(bulk[name], data[name]):
                raise SystemExit(f'{name}: bulk result differs from the generated data')
            if not np.array_equal(single[name], data[name]):
                raise SystemExit(f'{name}: one-by-one result differs from the generated data')
        print('check: energies, forces, positions bit-identical in both methods and to the generated data')

        report(args, setup_s, pack_s, results)
    finally:
        try:
            from aiida.manage import get_manager

            get_manager().reset_profile()
        except Exception:  # noqa: BLE001 - best effort before dropping the database
            pass
        if args.keep:
            print(f'kept: {root}' + (f' and database {info["database"]}' if info.get('database') else ''))
        else:
            if info.get('database'):
                drop_database(info['database'])
            shutil.rmtree(root, ignore_errors=True)


def report(args, setup_s, pack_s, results) -> None:
    bulk, single = results['bulk'], results['one_by_one']
    ratio = single['wall_s'] / bulk['wall_s']
    traced = 'tracemalloc_peak_mib' in bulk

    def memory(r):
        text = f'{r["rss_growth_mib"]:.1f}'
        return text + (f' / {r["tracemalloc_peak_mib"]:.1f}' if traced else '')

    storage = {'sqlite': 'core.sqlite_dos', 'psql': 'core.psql_dos'}[args.storage]
    cpu = platform.processor() or platform.machine()
    header_memory = 'peak memory (MiB: RSS growth' + (' / tracemalloc)' if traced else ')')
    print()
    print(f'Assembling energies + forces + positions of N = {args.frames} stored 8-atom frames '
          f'({storage}, objects {args.objects}; {os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}). '
          f'Setup ({args.setup}, not timed below): {setup_s:.1f} s'
          + (f' + packing {pack_s:.1f} s' if pack_s is not None else '') + '.')
    print()
    print(f'| method | wall time (s) | per frame (ms) | {header_memory} |')
    print('| --- | ---: | ---: | ---: |')
    print(f'| bulk: 1 QueryBuilder + 1 repository pass | {bulk["wall_s"]:.2f} | '
          f'{1e3 * bulk["wall_s"] / args.frames:.3f} | {memory(bulk)} |')
    print(f'| one by one: `load_node` + `get_array` | {single["wall_s"]:.2f} | '
          f'{1e3 * single["wall_s"] / args.frames:.3f} | {memory(single)} |')
    print(f'| ratio (one by one / bulk) | {ratio:.1f}x | | |')
    print()
    command = 'python benchmarks/bench_training_set_assembly.py' + ''.join(
        f' --{name} {value}' for name, value, default in (
            ('frames', args.frames, 10000), ('storage', args.storage, 'sqlite'), ('setup', args.setup, 'bulk'),
            ('objects', args.objects, 'loose')) if value != default) + (' --tracemalloc' if args.tracemalloc else '')
    print(f'Command: `{command}`')


if __name__ == '__main__':
    main()
