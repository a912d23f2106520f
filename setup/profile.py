"""Idempotent creation of the AiiDA profile, the localhost computer and codes found on PATH.

Two layouts are supported. The embedded default (``core.sqlite_dos`` storage and aiida-core's
built-in ZeroMQ broker) needs no service at all, so a laptop runs the daemon out of the box. The
production layout (``core.psql_dos`` + RabbitMQ) is what a group server uses. Running ``setup`` twice
reuses what exists, so it is safe in scripts and CI.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

#: glibc malloc settings that stop pw.x from mmapping and page-faulting its large arrays every SCF
#: iteration (measured 494 s -> 86 s for a 56-atom cell together with OpenBLAS).
PW_MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_TRIM_THRESHOLD_': '17179869184',
    'MALLOC_TOP_PAD_': '536870912',
    'OMP_NUM_THREADS': '1',
}
ROOT_MPI_ENV = {'OMPI_ALLOW_RUN_AS_ROOT': '1', 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM': '1'}

#: Executables looked for on PATH and the CalcJob plugin they default to (None: no plugin yet).
KNOWN_EXECUTABLES = {
    'pw.x': ('quantumespresso.pw', True),
    'ld1.x': (None, False),
    'mlp': (None, True),
    'motep': ('mlcampaign.motep.train', False),
    'mlcampaign-explore': ('mlcampaign.mtp.explore', False),
    'mlcampaign-md': ('mlcampaign.md.cpu', False),
    'nep': ('mlcampaign.nep.train', False),
    'neppo': ('mlcampaign.nep.train', False),
    'gpumd': ('mlcampaign.gpumd.md', False),
    'lmp': (None, True),
}
#: Programs installed by pip with this package (its console scripts, or its extras): looked for first next to
#: the running interpreter, so that a job runs them under the interpreter the project is installed in, even when
#: the job's login shell puts another Python's scripts first on PATH (a virtual environment is not activated
#: in the job script).
PYTHON_EXECUTABLES = ('mlcampaign-explore', 'mlcampaign-md', 'motep', 'neppo')


@dataclasses.dataclass
class PsqlSettings:
    hostname: str = '127.0.0.1'
    port: int = 5432
    username: str = 'aiida_mlcampaign'
    password: str = 'aiida_mlcampaign'
    database: str = ''
    superuser: str = 'postgres'


@dataclasses.dataclass
class RabbitmqSettings:
    host: str = '127.0.0.1'
    port: int = 5672
    username: str = 'guest'
    password: str = 'guest'
    virtual_host: str = ''


def environment_prepend_text(extra: dict | None = None) -> str:
    env = dict(PW_MALLOC_ENV)
    if hasattr(os, 'geteuid') and os.geteuid() == 0:
        env.update(ROOT_MPI_ENV)
    env.update(extra or {})
    return '\n'.join(f'export {key}={value}' for key, value in env.items())


def blas_of(executable: str) -> str | None:
    """The BLAS library the dynamic linker picks for ``executable`` (None if ldd is unavailable)."""
    ldd = shutil.which('ldd')
    path = shutil.which(executable)
    if not ldd or not path:
        return None
    output = subprocess.run([ldd, path], capture_output=True, text=True, check=False).stdout
    for line in output.splitlines():
        if 'libblas' in line or 'libopenblas' in line:
            target = line.split('=>')[-1].split('(')[0].strip()
            return os.path.realpath(target) if target else line.strip()
    return None


def create_psql_database(settings: PsqlSettings) -> None:
    """Create role and database (C.UTF-8 collation) if missing; ``verdi presto`` fails without sudo/en_US."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=settings.hostname, port=settings.port, user=settings.superuser, dbname='postgres',
                         autocommit=True) as connection:
        role_exists = connection.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (settings.username,)).fetchone()
        if not role_exists:
            connection.execute(
                sql.SQL('CREATE ROLE {} LOGIN PASSWORD {}').format(
                    sql.Identifier(settings.username), sql.Literal(settings.password)
                )
            )
        db_exists = connection.execute('SELECT 1 FROM pg_database WHERE datname = %s', (settings.database,)).fetchone()
        if not db_exists:
            connection.execute(
                sql.SQL(
                    "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' "
                    'TEMPLATE template0'
                ).format(sql.Identifier(settings.database), sql.Identifier(settings.username))
            )


def ensure_profile(name: str, *, storage: str = 'sqlite', broker: str = 'zeromq', psql: PsqlSettings | None = None,
                   rabbitmq: RabbitmqSettings | None = None, email: str = 'campaign@localhost',
                   set_default: bool = True):
    """Load profile ``name``, creating it first if needed. Returns ``(profile, created)``."""
    from aiida.manage.configuration import create_profile, get_config, load_profile
    from aiida.plugins import BrokerFactory

    if storage not in ('sqlite', 'psql'):
        raise ValueError(f"storage: must be 'sqlite' or 'psql', got {storage!r}")
    if broker not in ('zeromq', 'rabbitmq', 'none'):
        raise ValueError(f"broker: must be 'zeromq', 'rabbitmq' or 'none', got {broker!r}")
    config = get_config(create=True)
    if name in config.profile_names:
        profile = load_profile(name, allow_switch=True)
        return profile, False

    if storage == 'sqlite':
        storage_backend, storage_config = 'core.sqlite_dos', {}
    else:
        psql = psql or PsqlSettings()
        if not psql.database:
            psql.database = f'aiida_{name}'.replace('-', '_')
        create_psql_database(psql)
        repository = pathlib.Path(config.dirpath) / 'repository' / name
        storage_backend = 'core.psql_dos'
        storage_config = {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': psql.hostname,
            'database_port': psql.port,
            'database_username': psql.username,
            'database_password': psql.password,
            'database_name': psql.database,
            'repository_uri': repository.as_uri(),
        }
    if broker == 'zeromq':
        broker_backend, broker_config = 'core.zeromq', BrokerFactory('core.zeromq').get_default_config()
    elif broker == 'rabbitmq':
        rabbitmq = rabbitmq or RabbitmqSettings()
        check_rabbitmq(rabbitmq)
        broker_backend = 'core.rabbitmq'
        broker_config = {
            'broker_protocol': 'amqp',
            'broker_username': rabbitmq.username,
            'broker_password': rabbitmq.password,
            'broker_host': rabbitmq.host,
            'broker_port': rabbitmq.port,
            'broker_virtual_host': rabbitmq.virtual_host,
        }
    else:
        broker_backend, broker_config = None, None

    profile = create_profile(config, name=name, email=email, storage_backend=storage_backend,
                             storage_config=storage_config, broker_backend=broker_backend, broker_config=broker_config)
    config.set_option('runner.poll.interval', 1, scope=profile.name)
    if broker == 'rabbitmq':
        # aiida-core warns for every RabbitMQ >= 3.8.15; the README says how to set consumer_timeout.
        config.set_option('warnings.rabbitmq_version', False, scope=profile.name)
    if set_default:
        config.set_default_profile(profile.name, overwrite=True)
    config.store()
    return load_profile(profile.name, allow_switch=True), True


def check_rabbitmq(settings: RabbitmqSettings, timeout: float = 5.0) -> None:
    import socket

    try:
        with socket.create_connection((settings.host, settings.port), timeout=timeout):
            pass
    except OSError as exception:
        raise ConnectionError(
            f'broker: RabbitMQ is not reachable at {settings.host}:{settings.port} ({exception})'
        ) from exception


def ensure_localhost(label: str = 'localhost', workdir: str | None = None, mpiprocs: int | None = None):
    """The ``core.local`` + ``core.direct`` computer, created once and configured."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.manage.configuration import get_config

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        if workdir is None:
            from aiida.manage import get_manager

            workdir = str(pathlib.Path(get_config().dirpath) / 'scratch' / get_manager().get_profile().name)
        computer = orm.Computer(
            label=label, hostname='localhost', description='This machine (aiida-mlcampaign setup)',
            transport_type='core.local', scheduler_type='core.direct', workdir=workdir,
        )
        computer.set_mpirun_command(['mpirun', '-np', '{tot_num_mpiprocs}'])
        computer.store()
        computer.set_default_mpiprocs_per_machine(mpiprocs or os.cpu_count() or 1)
        computer.set_minimum_job_poll_interval(1)
    if not computer.is_user_configured(orm.User.collection.get_default()):
        computer.configure(safe_interval=0)
    return computer


def ensure_code(label: str, executable: str, computer, plugin: str | None, with_mpi: bool,
                prepend_text: str = ''):
    """An InstalledCode ``label@computer`` running ``executable``: the existing one if it runs that executable,
    else a new one; a code of that label that runs something else is refused, naming both paths.

    Why not reuse by label alone: code attributes are immutable, and a ``motep@localhost`` left from elsewhere
    (another environment's motep, a test's ``/bin/true``) would silently run instead of the program found now.
    """
    from aiida import orm

    query = orm.QueryBuilder().append(orm.Computer, filters={'id': computer.pk}, tag='computer')
    query.append(orm.InstalledCode, with_computer='computer', filters={'label': label})
    existing = [code for (code,) in query.iterall()]
    for code in existing:
        if str(code.filepath_executable) == str(executable):
            return code
    if existing:
        others = ', '.join(sorted({str(code.filepath_executable) for code in existing}))
        raise ValueError(f'code {label}@{computer.label}: exists and runs {others}, but {executable} was found; '
                         f'relabel the old code (verdi code relabel) or delete it, then run setup again')
    code = orm.InstalledCode(computer=computer, filepath_executable=executable, label=label,
                             default_calc_job_plugin=plugin, with_mpi=with_mpi,
                             description=f'{pathlib.Path(executable).name} found on PATH by aiida-mlcampaign setup')
    code.prepend_text = prepend_text
    return code.store()


def find_executable(name: str) -> str | None:
    """Where ``name`` is: for :data:`PYTHON_EXECUTABLES` first the running interpreter's scripts folder, then PATH."""
    if name in PYTHON_EXECUTABLES:
        scripts = pathlib.Path(sysconfig.get_path('scripts'))
        for folder in (scripts, pathlib.Path(sys.executable).parent):
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which(name)


def discover_codes(computer, executables: dict | None = None) -> dict[str, object]:
    """Create a code for every known executable found (:func:`find_executable`); pw.x gets the tuned environment."""
    found = {}
    for name, (plugin, with_mpi) in (executables or KNOWN_EXECUTABLES).items():
        path = find_executable(name)
        if not path:
            continue
        prepend = environment_prepend_text() if name in ('pw.x', 'ld1.x', 'mlp', 'lmp') else ''
        label = name.replace('.x', '')
        found[name] = ensure_code(label, path, computer, plugin, with_mpi, prepend)
    return found
