"""Real pw.x on this machine: the localhost computer and code as ``aiida-mlcampaign setup`` makes them."""

import pytest
from ase import Atoms

from tests.helpers import local_codes, require_executable


#: Nodes made once per storage: ``aiida_profile_clean`` (used by tests in other folders that pytest-xdist may run
#: on the same worker in between) resets the storage, and a node kept from before points to a closed one.
_PER_STORAGE: dict = {}


def once_per_storage(key: str, make):
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    cached = _PER_STORAGE.get(key)
    if cached is None or cached[0] is not storage:
        _PER_STORAGE[key] = (storage, make())
    return _PER_STORAGE[key][1]


@pytest.fixture(scope='session')
def _workchain_scratch(tmp_path_factory):
    return tmp_path_factory.mktemp('workchain-scratch')


@pytest.fixture
def pw_code(aiida_profile, tmp_path_factory):
    return once_per_storage('pw.x', lambda: local_codes(tmp_path_factory, 'pw.x')['pw.x'])


@pytest.fixture
def pseudo_family(aiida_profile, _workchain_scratch):
    require_executable('ld1.x')
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family

    return once_per_storage('CuPS', lambda: install_pseudo_family(
        label='mlcampaign-test-CuPS', elements=['Cu', 'P', 'S'], cache_dir=_workchain_scratch / 'pseudo-cache'))


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
