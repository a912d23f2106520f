"""NEP evaluation on the CPU (calorine) against finite differences, on recorded GPUMD models.

Models (fixtures/gpumd/SOURCES.md): the PbTe NEP4 of GPUMD's ``examples/nep_train`` (master), the PbTe NEP4 of
the v3.9.5 training example (another architecture, same species ``Te Pb``) and GPUMD's water NEP4 (``O H``).
Structures are tiny rattled cells, so every evaluation takes milliseconds.
"""

import pathlib

import numpy as np
import pytest

pytest.importorskip('calorine')

from ase import Atoms
from ase.build import bulk

from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.nep import cpu
from aiida_mlcampaign.nep.committee import max_force_deviation

NEP_DIR = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'nep'
PBTE = NEP_DIR / 'pbte_train_master' / 'nep.txt'
PBTE_LEGACY = NEP_DIR / 'pbte_train_legacy_v3.9.5' / 'nep.txt'
WATER = NEP_DIR / 'models' / 'nep4_water_OH.txt'
DIPOLE = NEP_DIR / 'models' / 'nep4_dipole_water.txt'


def pbte(seed=0, amplitude=0.08, cubic=False):
    atoms = bulk('PbTe', 'rocksalt', a=6.46, cubic=cubic)
    atoms.rattle(amplitude, seed=seed)
    return atoms


def water():
    """Two water molecules in a slightly skewed periodic box (not orthorhombic: off-diagonal virials matter)."""
    atoms = Atoms('OH2OH2', positions=[
        [0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
        [2.9, 2.8, 2.7], [3.86, 2.8, 2.7], [2.66, 3.73, 2.7],
    ], cell=[[6.2, 0.0, 0.0], [0.4, 6.0, 0.0], [0.0, 0.3, 6.1]], pbc=True)
    atoms.rattle(0.03, seed=3)
    return atoms


MODELS = [(PBTE, pbte), (PBTE_LEGACY, pbte), (WATER, water)]


def _energy(model, atoms) -> float:
    return cpu.evaluate(model, [atoms])['energies'][0]


@pytest.mark.parametrize('model, make', MODELS, ids=['pbte', 'pbte_legacy', 'water'])
def test_energy_finite_and_forces_are_minus_the_energy_gradient(model, make):
    atoms = make()
    result = cpu.evaluate(model, [atoms])
    assert result['natoms'].tolist() == [len(atoms)]
    assert np.isfinite(result['energies']).all() and np.isfinite(result['forces']).all()
    assert np.abs(result['forces']).max() > 0.05  # rattled: forces are not trivially zero
    h = 1e-4
    for atom, axis in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        derivative = (_energy(model, plus) - _energy(model, minus)) / (2 * h)
        assert result['forces'][atom, axis] == pytest.approx(-derivative, abs=2e-4)


@pytest.mark.parametrize('model, make', MODELS, ids=['pbte', 'pbte_legacy', 'water'])
def test_virial_is_minus_the_strain_derivative(model, make):
    # GPUMD's sign: W = -dE/d(strain), positive when compressed; stress = -W/V (ASE's sign)
    atoms = make()
    result = cpu.evaluate(model, [atoms])
    virial, stress = result['virials'][0], result['stresses'][0]
    h = 1e-5

    def strained(a, b, amount):
        strain = np.zeros((3, 3))
        strain[a, b] += amount / (2 if a != b else 1)
        strain[b, a] += amount / 2 if a != b else 0
        copy = atoms.copy()
        copy.set_cell(atoms.cell @ (np.eye(3) + strain).T, scale_atoms=True)
        return copy

    symmetric = 0.5 * (virial + virial.T)
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]:
        derivative = (_energy(model, strained(a, b, h)) - _energy(model, strained(a, b, -h))) / (2 * h)
        assert symmetric[a, b] == pytest.approx(-derivative, abs=1e-4)
    np.testing.assert_allclose(stress, -virial / atoms.get_volume())
    # the same convention as Frame / TrainingSetData: Frame.virial of the predicted stress is the virial
    frame = Frame(symbols=atoms.get_chemical_symbols(), cell=atoms.cell, positions=atoms.positions, stress=stress)
    np.testing.assert_allclose(frame.virial, virial, atol=1e-10)


def test_streams_frames_and_per_atom_quantities_add_up():
    frames = (pbte(seed) if seed % 2 else Frame.from_ase(pbte(seed, cubic=True)) for seed in range(4))
    result = cpu.evaluate(PBTE, frames, per_atom=True)  # a generator of Frames and Atoms
    assert result['natoms'].tolist() == [8, 2, 8, 2]
    assert result['forces'].shape == (20, 3) and result['virials'].shape == (4, 3, 3)
    offsets = np.concatenate([[0], np.cumsum(result['natoms'])])
    for i in range(4):
        lo, hi = offsets[i], offsets[i + 1]
        assert result['atomic_energies'][lo:hi].sum() == pytest.approx(result['energies'][i])
        np.testing.assert_allclose(result['atomic_virials'][lo:hi].sum(axis=0), result['virials'][i], atol=1e-10)
    # a supercell has the same energy per atom (the small cell's periodic images are counted)
    small, large = pbte(amplitude=0), pbte(amplitude=0).repeat(2)
    assert _energy(PBTE, large) / 16 == pytest.approx(_energy(PBTE, small) / 2, abs=1e-8)


def test_refusals_name_the_problem():
    copper = pbte()
    copper[1].symbol = 'Cu'
    with pytest.raises(ValueError, match=r"frame 1: species \['Cu'\] are not in the model's species \['Te', 'Pb'\]"):
        cpu.evaluate(PBTE, [pbte(), copper])
    slab = pbte()
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match='frame 0: pbc: .* not periodic in all directions'):
        cpu.evaluate(PBTE, [slab])
    with pytest.raises(ValueError, match='model nep4_dipole_water.txt: a dipole model'):
        cpu.evaluate(DIPOLE, [water()])
    with pytest.raises(FileNotFoundError, match='model: .* does not exist'):
        cpu.evaluate(NEP_DIR / 'missing.txt', [pbte()])


def test_committee_forces_and_deviation():
    frames = [pbte(1), pbte(2, cubic=True)]
    stacks = cpu.committee_forces([PBTE, PBTE_LEGACY], frames)
    assert [s.shape for s in stacks] == [(2, 2, 3), (2, 8, 3)]
    for frame, stack in zip(frames, stacks, strict=True):
        np.testing.assert_allclose(stack[0], cpu.evaluate(PBTE, [frame])['forces'])
        np.testing.assert_allclose(stack[1], cpu.evaluate(PBTE_LEGACY, [frame])['forces'])
    deviations = cpu.committee_deviations([PBTE, PBTE_LEGACY], frames)
    assert deviations == pytest.approx([max_force_deviation(s) for s in stacks])
    assert (deviations > 0).all()
    # the same model twice agrees with itself
    assert cpu.committee_deviations([PBTE, PBTE], frames) == pytest.approx([0.0, 0.0], abs=1e-12)
    committee = cpu.NepCommittee([PBTE, PBTE_LEGACY])
    given = committee.forces(frames[0], first=stacks[0][0])
    np.testing.assert_allclose(given, stacks[0])

    with pytest.raises(ValueError, match="potentials: nep4_water_OH.txt has species \\['O', 'H'\\]"):
        cpu.NepCommittee([PBTE, WATER])
    with pytest.raises(ValueError, match='potentials: a committee needs at least 2 models'):
        cpu.NepCommittee([PBTE])
