"""The GPUMD replay stand-in refuses bad input the way gpumd does (an ``Input Error:`` block on stderr, status 1).

Its normal, walltime and blow-up paths are exercised through the engine in ``tests/workchains/test_gpumd_base.py``.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from ase.build import bulk

from aiida_mlcampaign.formats.gpumd import read_gpumd_stdout
from aiida_mlcampaign.formats.gpumd_model import model_xyz

TESTS = pathlib.Path(__file__).parent.parent
STANDIN = TESTS / 'standins' / 'gpumd_replay.py'
NEP = TESTS / 'fixtures' / 'gpumd' / 'nep' / 'pbte_train_master' / 'nep.txt'
REPLAY = TESTS / 'fixtures' / 'gpumd' / 'md' / 'carbon_nve_thermo_v5.6'


def run_standin(folder: pathlib.Path, run_in: str, atoms) -> subprocess.CompletedProcess:
    shutil.copy(NEP, folder / 'nep.txt')
    (folder / 'run.in').write_text(run_in)
    (folder / 'model.xyz').write_text(model_xyz(atoms.get_chemical_symbols(), atoms.cell[:], atoms.positions))
    environment = {**os.environ, 'MLCAMPAIGN_GPUMD_REPLAY_DIR': str(REPLAY)}
    return subprocess.run([sys.executable, str(STANDIN)], cwd=folder, env=environment, capture_output=True, text=True,
                          check=False)


def test_input_errors_and_a_clean_run(tmp_path):
    pbte = bulk('PbTe', 'rocksalt', a=6.46, cubic=True)
    (tmp_path / 'a').mkdir()
    bad = run_standin(tmp_path / 'a', 'potential nep.txt\nensemble nvt_nhc 300\nrun 10\n', pbte)
    assert bad.returncode == 1
    assert read_gpumd_stdout(bad.stderr)['errors'][0]['kind'] == 'Input Error'
    (tmp_path / 'b').mkdir()
    aluminium = bulk('Al', 'fcc', a=4.05, cubic=True)
    alien = run_standin(tmp_path / 'b', 'potential nep.txt\nensemble nve\nrun 10\n', aluminium)
    assert alien.returncode == 1 and "species ['Al'] are not in the potential" in alien.stderr
    (tmp_path / 'c').mkdir()
    protocol = 'potential nep.txt\nensemble nve\ndump_thermo 10\ndump_restart 50\nrun 100\n'
    good = run_standin(tmp_path / 'c', protocol, pbte)
    assert good.returncode == 0, good.stderr
    parsed = read_gpumd_stdout(good.stdout)
    assert parsed['finished'] and parsed['version'] == '5.6' and len(parsed['runs']) == 1
    assert (tmp_path / 'c' / 'restart.xyz').is_file()
    rows = [line for line in (tmp_path / 'c' / 'thermo.out').read_text().splitlines() if not line.startswith('#')]
    assert len(rows) == 10
