"""A real SLURM cluster over SSH on this one machine, for rehearsing a campaign (and for the tests).

Why: a campaign is meant to run DFT on a CPU cluster and NEP training/GPUMD on a GPU cluster. Job scripts,
GPU requests, walltime kills, cancelled jobs and an unreachable login node are only believable against a real
scheduler behind a real transport. Debian's ``munge``, ``slurmctld``, ``slurmd`` and ``openssh-server`` give one
in seconds: :class:`LocalCluster` starts all four on loopback with every file (configuration, keys, state, logs,
pid files) in one folder, and stops them again. Nothing in ``/etc`` is touched: ``sshd`` exports ``SLURM_CONF`` to
every session, so ``sbatch``/``squeue`` over SSH talk to this cluster and no other.

The cluster has one node (this machine) and two partitions, ``cpu`` (default) and ``gpu``; the node declares
``gpus`` count-only GPUs (``gres/gpu`` backed by empty placeholder files), so that ``--gres=gpu:1`` and
``--gpus-per-node=1`` are accepted and scheduled (and limit the GPU jobs that run at once), without a device.
Each partition oversubscribes the cores (``OverSubscribe=FORCE``) so that a test's jobs are not queued behind
another test's. AiiDA-free: the AiiDA computers that point at it are made by ``aiida_mlcampaign.setup.cluster``.

Needs root (``slurmd`` starts jobs as their user) and the packages named in :data:`PACKAGES`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import time

__all__ = ('PACKAGES', 'ClusterError', 'LocalCluster', 'free_port')

#: Debian packages that provide each program the cluster needs.
PACKAGES = {
    'munged': 'munge', 'munge': 'munge', 'slurmctld': 'slurmctld', 'slurmd': 'slurmd', 'sbatch': 'slurm-client',
    'squeue': 'slurm-client', 'sinfo': 'slurm-client', 'scontrol': 'slurm-client', 'sshd': 'openssh-server',
    'ssh': 'openssh-client', 'ssh-keygen': 'openssh-client',
}
_SBIN = ('/usr/sbin', '/usr/local/sbin', '/sbin')
STATE_FILE = 'cluster.json'


class ClusterError(RuntimeError):
    """The local cluster could not be started or reached; the message says which part and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as gone
        with open(f'/proc/{pid}/stat') as handle:
            return handle.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return True


@dataclasses.dataclass
class LocalCluster:
    """SLURM (``cpu`` and ``gpu`` partitions) behind ``sshd`` on 127.0.0.1, with all its files in ``root``.

    ``LocalCluster.load(root)`` finds a cluster started earlier (its ports are kept in ``root/cluster.json``)."""

    root: pathlib.Path
    ssh_port: int = 2299
    slurmctld_port: int = 6817
    slurmd_port: int = 6818
    gpus: int = 2
    oversubscribe: int = 4
    name: str = 'mlcampaign'

    def __post_init__(self):
        self.root = pathlib.Path(self.root).resolve()

    # ------------------------------------------------------------------------------------------------- files
    @property
    def slurm_conf(self) -> pathlib.Path:
        return self.root / 'slurm.conf'

    @property
    def key_file(self) -> pathlib.Path:
        """The private key that logs in as the current user (give it to the AiiDA transport)."""
        return self.root / 'ssh' / 'client_key'

    @property
    def log_dir(self) -> pathlib.Path:
        return self.root / 'log'

    @property
    def hostname(self) -> str:
        """The node's name: SLURM's ``slurmd`` finds its own node by the short host name."""
        return socket.gethostname().split('.')[0]

    @property
    def username(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    def env(self) -> dict:
        """The environment for running SLURM's clients here (``sbatch``, ``squeue``) against this cluster."""
        return {**os.environ, 'SLURM_CONF': str(self.slurm_conf)}

    @property
    def ssh_alias(self) -> str:
        """The login node's name in :attr:`ssh_config` (what ``core.ssh_async`` is configured with)."""
        return f'{self.name}-cluster'

    @property
    def ssh_config(self) -> pathlib.Path:
        """An OpenSSH client configuration with one ``Host`` entry, :attr:`ssh_alias` (port, user, key, and the
        host key in its own ``known_hosts``: checked, not ignored). ``Include`` it from ``~/.ssh/config`` for
        ``core.ssh_async``, which reads only that file."""
        return self.root / 'ssh' / 'config'

    def ssh_command(self) -> list[str]:
        """``ssh`` to the cluster's login node (append the remote command)."""
        return [_which('ssh') or 'ssh', '-F', str(self.ssh_config), '-o', 'BatchMode=yes', self.ssh_alias]

    def transport_settings(self) -> dict:
        """``computer.configure(**...)`` for aiida-core's ``core.ssh`` transport (paramiko) to this cluster.

        ``safe_interval`` 0: the login node is this machine, nobody to protect from many connections."""
        return {'username': self.username, 'port': self.ssh_port, 'key_filename': str(self.key_file),
                'look_for_keys': False, 'allow_agent': False, 'key_policy': 'AutoAddPolicy',
                'load_system_host_keys': False, 'timeout': 30, 'safe_interval': 0.0, 'compress': False}

    # ------------------------------------------------------------------------------------------------ state
    @classmethod
    def load(cls, root) -> LocalCluster:
        """The cluster whose files are in ``root`` (as :meth:`start` left them)."""
        path = pathlib.Path(root) / STATE_FILE
        if not path.exists():
            raise ClusterError(f'no local cluster in {root}: {STATE_FILE} is missing (start one first)')
        return cls(root=pathlib.Path(root), **json.loads(path.read_text()))

    def _save(self) -> None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'root'}
        (self.root / STATE_FILE).write_text(json.dumps(fields, indent=1))

    def _pid(self, daemon: str) -> int | None:
        path = {'munged': self.root / 'munge-run' / 'munged.pid', 'slurmctld': self.root / 'slurmctld.pid',
                'slurmd': self.root / 'slurmd.pid', 'sshd': self.root / 'ssh' / 'sshd.pid'}[daemon]
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def status(self) -> dict[str, bool]:
        """Whether each daemon is running, by its pid file."""
        return {daemon: _alive(self._pid(daemon)) for daemon in ('munged', 'slurmctld', 'slurmd', 'sshd')}

    # ------------------------------------------------------------------------------------------- configuration
    def _write_config(self) -> None:
        root, host = self.root, self.hostname
        gres = ''.join(f'Name=gpu File={root / "gpu" / f"gpu{i}"}\n' for i in range(self.gpus))
        (root / 'gres.conf').write_text('AutoDetect=off\n' + gres)
        cpus = os.cpu_count() or 1
        node_gres = f' Gres=gpu:{self.gpus}' if self.gpus else ''
        over = f' OverSubscribe=FORCE:{self.oversubscribe}' if self.oversubscribe > 1 else ''
        self.slurm_conf.write_text('\n'.join([
            f'# aiida-mlcampaign local cluster in {root} (aiida_mlcampaign.cluster)',
            f'ClusterName={self.name}',
            f'SlurmctldHost={host}(127.0.0.1)',
            'SlurmUser=root',
            f'SlurmctldPort={self.slurmctld_port}',
            f'SlurmdPort={self.slurmd_port}',
            'AuthType=auth/munge',
            'CredType=cred/munge',
            f'AuthInfo=socket={root / "munge-run" / "munge.socket"}',
            f'StateSaveLocation={root / "state"}',
            f'SlurmdSpoolDir={root / "spool"}',
            f'SlurmctldLogFile={self.log_dir / "slurmctld.log"}',
            f'SlurmdLogFile={self.log_dir / "slurmd.log"}',
            f'SlurmctldPidFile={root / "slurmctld.pid"}',
            f'SlurmdPidFile={root / "slurmd.pid"}',
            'ProctrackType=proctrack/linuxproc',
            'TaskPlugin=task/none',
            'JobAcctGatherType=jobacct_gather/none',
            'SchedulerType=sched/backfill',
            'SchedulerParameters=sched_interval=1',
            'SelectType=select/cons_tres',
            'SelectTypeParameters=CR_Core',
            'ReturnToService=2',
            'MpiDefault=none',
            # a job over its --time is signalled at once and killed 5 s later (SLURM's defaults are minutes)
            'KillWait=5',
            'OverTimeLimit=0',
            'MinJobAge=300',
            'GresTypes=gpu',
            f'NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus}{node_gres} State=UNKNOWN',
            f'PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP{over}',
            f'PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP{over}',
            '',
        ]))
        ssh = root / 'ssh'
        (ssh / 'sshd_config').write_text('\n'.join([
            f'Port {self.ssh_port}',
            'ListenAddress 127.0.0.1',
            f'HostKey {ssh / "host_key"}',
            f'PidFile {ssh / "sshd.pid"}',
            f'AuthorizedKeysFile {ssh / "authorized_keys"}',
            'PermitRootLogin prohibit-password',
            'PubkeyAuthentication yes',
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'StrictModes no',
            'UsePAM no',
            'MaxStartups 100:30:200',
            'MaxSessions 100',
            'Subsystem sftp internal-sftp',
            f'SetEnv SLURM_CONF={self.slurm_conf}',
            '',
        ]))

    def _check_programs(self) -> None:
        missing = sorted({PACKAGES[name] for name in PACKAGES if _which(name) is None})
        if missing:
            raise ClusterError(f'programs missing for the local cluster; install the Debian packages: '
                               f'apt-get install {" ".join(missing)}')
        if os.geteuid() != 0:
            raise ClusterError('the local cluster must be started as root (slurmd starts the jobs as their user)')

    def _prepare(self) -> None:
        root = self.root
        for sub in ('state', 'spool', 'log', 'ssh', 'gpu', 'munge', 'munge-run', 'work'):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):
            (root / 'gpu' / f'gpu{i}').touch()
        key = root / 'munge' / 'munge.key'
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        for path, mode in ((root / 'munge', 0o700), (key, 0o400), (root / 'munge-run', 0o755)):
            os.chmod(path, mode)
        ssh = root / 'ssh'
        for name in ('host_key', 'client_key'):
            if not (ssh / name).exists():
                self._run([_which('ssh-keygen'), '-q', '-t', 'ed25519', '-N', '', '-C', f'mlcampaign-{name}',
                           '-f', str(ssh / name)])
        shutil.copyfile(ssh / 'client_key.pub', ssh / 'authorized_keys')
        host_key = ' '.join((ssh / 'host_key.pub').read_text().split()[:2])
        (ssh / 'known_hosts').write_text(f'[127.0.0.1]:{self.ssh_port} {host_key}\n')
        self.ssh_config.write_text('\n'.join([
            f'Host {self.ssh_alias}',
            '  HostName 127.0.0.1',
            f'  Port {self.ssh_port}',
            f'  User {self.username}',
            f'  IdentityFile {self.key_file}',
            '  IdentitiesOnly yes',
            '  StrictHostKeyChecking yes',
            f'  UserKnownHostsFile {ssh / "known_hosts"}',
            '  LogLevel ERROR',
            '',
        ]))
        self._write_config()
        pathlib.Path('/run/sshd').mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------------------------------------- start/stop
    def start(self, timeout: float = 60) -> LocalCluster:
        """Start munged, slurmctld, slurmd and sshd (those not running yet); wait until the node is idle and SSH
        logs in. Raises :class:`ClusterError` naming the part that failed and its log."""
        self._check_programs()
        self._prepare()
        self._save()
        status = self.status()
        if not status['munged']:
            self._start_munged()
        self._wait(lambda: (self.root / 'munge-run' / 'munge.socket').exists(), 10, 'munged',
                   self.root / 'munge' / 'munged.log')
        if not status['slurmctld']:
            self._run([_which('slurmctld'), '-f', str(self.slurm_conf)], env=self.env())
        if not status['slurmd']:
            self._run([_which('slurmd'), '-f', str(self.slurm_conf)], env=self.env())
        self.start_ssh()
        self._wait(self._node_ready, timeout, 'slurmctld/slurmd', self.log_dir / 'slurmctld.log')
        self._wait(self.ssh_ready, timeout, 'sshd', self.log_dir / 'sshd.log')
        return self

    def _start_munged(self) -> None:
        """munged as the cluster's own user (``--force``: it prefers a ``munge`` user, which could not read a
        private folder such as pytest's), with its own key and socket."""
        args = [_which('munged'), '--force', f'--key-file={self.root / "munge" / "munge.key"}',
                f'--socket={self.root / "munge-run" / "munge.socket"}',
                f'--pid-file={self.root / "munge-run" / "munged.pid"}',
                f'--log-file={self.root / "munge" / "munged.log"}',
                f'--seed-file={self.root / "munge" / "munged.seed"}']
        self._run(args)

    def start_ssh(self) -> None:
        """Start the login node's sshd (again): the end of an 'unreachable cluster' fault."""
        if not self.status()['sshd']:
            self._run([_which('sshd'), '-f', str(self.root / 'ssh' / 'sshd_config'),
                       '-E', str(self.log_dir / 'sshd.log')])

    def stop_ssh(self) -> None:
        """Stop the login node's sshd: the cluster becomes unreachable, its jobs go on running."""
        self._kill('sshd')

    def stop(self) -> None:
        """Stop every daemon of this cluster (jobs still running are killed with slurmd)."""
        if self.status()['slurmctld']:  # cancel what is left, so that no job outlives its cluster
            subprocess.run([_which('scancel') or 'scancel', '--user', self.username], env=self.env(),
                           capture_output=True, check=False, timeout=30)
        for daemon in ('sshd', 'slurmd', 'slurmctld', 'munged'):
            self._kill(daemon)

    def _kill(self, daemon: str, timeout: float = 20) -> None:
        pid = self._pid(daemon)
        if not _alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    # --------------------------------------------------------------------------------------------- queries
    def squeue(self) -> list[dict]:
        """The cluster's jobs now: ``[{job_id, partition, name, state, user}]`` (from ``squeue``)."""
        result = subprocess.run([_which('squeue'), '-h', '-o', '%i|%P|%j|%T|%u'], env=self.env(),
                                capture_output=True, text=True, check=False, timeout=30)
        if result.returncode:
            raise ClusterError(f'squeue failed: {result.stderr.strip()}')
        jobs = []
        for line in result.stdout.splitlines():
            job_id, partition, name, state, user = line.split('|')
            jobs.append({'job_id': job_id, 'partition': partition, 'name': name, 'state': state, 'user': user})
        return jobs

    def scontrol_job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (SLURM keeps finished jobs for ``MinJobAge`` seconds)."""
        result = subprocess.run([_which('scontrol'), '-o', 'show', 'job', str(job_id)], env=self.env(),
                                capture_output=True, text=True, check=False, timeout=30)
        if result.returncode:
            return {}
        return dict(item.split('=', 1) for item in result.stdout.split() if '=' in item)

    def _node_ready(self) -> bool:
        result = subprocess.run([_which('sinfo'), '-h', '-o', '%P %t'], env=self.env(), capture_output=True,
                                text=True, check=False, timeout=30)
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return result.returncode == 0 and {'cpu*', 'gpu'} <= set(states) and all(
            state in ('idle', 'mix', 'alloc') for state in states.values())

    def ssh_ready(self) -> bool:
        """Whether SSH logs in and ``sinfo`` answers from there."""
        try:
            result = subprocess.run([*self.ssh_command(), 'sinfo -h -o %P'], capture_output=True, text=True,
                                    check=False, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0 and 'gpu' in result.stdout

    # --------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _run(args, env=None) -> None:
        result = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode:
            raise ClusterError(f'{" ".join(map(str, args[:1]))} failed ({result.returncode}): '
                               f'{(result.stderr or result.stdout).strip()[-500:]}')

    def _wait(self, ready, timeout: float, what: str, log: pathlib.Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.3)
        tail = ''
        if log.exists():
            tail = '\n'.join(log.read_text(errors='replace').splitlines()[-8:])
        raise ClusterError(f'{what} of the local cluster in {self.root} not ready after {timeout:.0f} s; '
                           f'last lines of {log}:\n{tail}')
