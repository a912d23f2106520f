"""Real pw.x on this machine: the localhost computer and code as ``aiida-mlcampaign setup`` makes them."""

import pytest
from ase import Atoms

from tests.helpers import local_codes, require_executable


@pytest.fixture(scope='session')
def pw_code(aiida_profile, tmp_path_factory):
    return local_codes(tmp_path_factory, 'pw.x')['pw.x']


@pytest.fixture(scope='session')
def pseudo_family(aiida_profile, tmp_path_factory):
    require_executable('ld1.x')
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family

    return install_pseudo_family(label='mlcampaign-test-CuPS', elements=['Cu', 'P', 'S'],
                                 cache_dir=tmp_path_factory.mktemp('pseudo-cache'))


def cu2s2(rattle=0.0, seed=0, a=4.1, shift=None):
    """A 4-atom Cu2S2 cell: the smallest cell with two of the model case's elements, seconds of pw.x."""
    atoms = Atoms('Cu2S2', scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                  cell=[a, a, a], pbc=True)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    if shift is not None:
        atoms.positions[1] = atoms.positions[0] + shift
    return atoms


#: Cheap but real settings for tests: 20/160 Ry and a Γ-centred 1x1x1..2x2x2 mesh.
TEST_OVERRIDES = {'dft': {'kpoints_distance': 1.0,
                          'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}}
TEST_OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600}
