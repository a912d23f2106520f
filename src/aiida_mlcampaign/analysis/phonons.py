"""Harmonic phonon DOS by finite displacements (phonopy), and comparing densities of states.

The same three steps serve DFT and every potential, so their DOS can be compared like for like:

1. :func:`displaced_supercells` — phonopy's symmetry-reduced displacements of one unit cell
   (treated as the primitive cell) in a supercell; the dataset is returned as plain lists so it can
   be stored in a ``Dict`` node and handed back unchanged.
2. forces of the displaced supercells — from pw.x, or here from a potential:
   :func:`calculator_forces` (any ASE calculator), :func:`nep_forces` (calorine ``CPUNEP``) and
   :func:`mtp_forces` (motep, through :mod:`aiida_mlcampaign.mtp.engine`).
3. :func:`dos_from_forces` — force constants (symmetrised, which also imposes the acoustic sum
   rule so acoustic modes go to zero at Γ), a Γ-centred mesh without mesh symmetry and the
   tetrahedron method; the partial DOS of each species integrates to ``3 N_s`` per unit cell and
   their sum to ``3 N``. Frequencies are ordinary frequencies in THz (phonopy's unit).

:func:`dos_overlap` scores two DOS on a common grid, each normalised to unit area:
``S = ∫ min(g_a, g_b) dν`` is 1 for identical shapes and 0 for disjoint ones.

No AiiDA import; phonopy, calorine and motep are imported lazily.
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = [
    'calculator_forces',
    'displaced_supercells',
    'dos_from_forces',
    'dos_overlap',
    'mtp_forces',
    'nep_forces',
    'normalised_on_grid',
    'plot_dos_comparison',
    'plot_phonon_dos',
    'supercell_matrix_3x3',
]


def supercell_matrix_3x3(value) -> np.ndarray:
    """A 3x3 integer matrix from three diagonal entries or nine numbers; refuses singular or non-integer ones."""
    array = np.asarray(value, dtype=float)
    if array.size == 3:
        array = np.diag(array.reshape(3))
    elif array.size == 9:
        array = array.reshape(3, 3)
    else:
        raise ValueError(f'supercell_matrix: expected 3 diagonal entries or 3x3 integers, got {array.size} numbers')
    if not np.allclose(array, np.round(array)):
        raise ValueError(f'supercell_matrix: entries must be integers, got {array.tolist()}')
    matrix = np.round(array).astype(int)
    if round(np.linalg.det(matrix)) < 1:
        raise ValueError(
            f'supercell_matrix: determinant must be >= 1 (a right-handed supercell), got {matrix.tolist()}')
    return matrix


def _unitcell(symbols, cell, scaled_positions):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=list(symbols), cell=np.asarray(cell, float),
                        scaled_positions=np.asarray(scaled_positions, float))


def _phonopy(symbols, cell, scaled_positions, supercell_matrix, symprec: float):
    from phonopy import Phonopy

    return Phonopy(_unitcell(symbols, cell, scaled_positions), supercell_matrix=supercell_matrix_3x3(supercell_matrix),
                   primitive_matrix=None, symprec=symprec)


def displaced_supercells(symbols, cell, scaled_positions, supercell_matrix, amplitude: float = 0.01,
                         symprec: float = 1e-5) -> tuple[dict, list[dict], dict]:
    """Symmetry-reduced single displacements of ``amplitude`` Å (phonopy's default 0.01 Å).

    Returns ``(dataset, supercells, reference)``: ``dataset`` (JSON-ready) holds phonopy's
    ``natom`` and ``first_atoms`` (``number``, ``displacement`` in Å) plus ``supercell_matrix``,
    ``amplitude_A`` and ``symprec``; each supercell is ``{'symbols', 'cell', 'positions'}`` (Å),
    the displaced atom already moved; ``reference`` is the undisplaced supercell.
    """
    if not amplitude > 0:
        raise ValueError(f'amplitude: must be positive (Å), got {amplitude}')
    phonon = _phonopy(symbols, cell, scaled_positions, supercell_matrix, symprec)
    phonon.generate_displacements(distance=float(amplitude))
    dataset = {
        'natom': int(phonon.dataset['natom']),
        'first_atoms': [
            {'number': int(entry['number']), 'displacement': [float(x) for x in entry['displacement']]}
            for entry in phonon.dataset['first_atoms']
        ],
        'supercell_matrix': supercell_matrix_3x3(supercell_matrix).tolist(),
        'amplitude_A': float(amplitude),
        'symprec': float(symprec),
    }
    supercells = [_as_dict(cell_) for cell_ in phonon.supercells_with_displacements]
    return dataset, supercells, _as_dict(phonon.supercell)


def _as_dict(atoms) -> dict:
    return {'symbols': list(atoms.symbols), 'cell': np.array(atoms.cell), 'positions': np.array(atoms.positions)}


def _to_ase(supercell: dict):
    from ase import Atoms

    return Atoms(supercell['symbols'], positions=supercell['positions'], cell=supercell['cell'], pbc=True)


def calculator_forces(supercells: t.Sequence[dict], calculator_factory: t.Callable[[], t.Any]) -> np.ndarray:
    """Forces (n_cells, n_atoms, 3) in eV/Å from an ASE calculator made by ``calculator_factory``."""
    forces = []
    for supercell in supercells:
        atoms = _to_ase(supercell)
        atoms.calc = calculator_factory()
        forces.append(np.array(atoms.get_forces(), dtype=float))
    return np.array(forces)


def nep_forces(nep_path, supercells: t.Sequence[dict]) -> np.ndarray:
    """Forces from a NEP ``nep.txt`` on the CPU (calorine ``CPUNEP``)."""
    from calorine.calculators import CPUNEP

    path = str(nep_path)
    return calculator_forces(supercells, lambda: CPUNEP(path))


def mtp_forces(mtp_path, species: t.Sequence[str], supercells: t.Sequence[dict]) -> np.ndarray:
    """Forces from a trained ``.mtp`` (motep engine; ``species`` in type order)."""
    from aiida_mlcampaign.mtp.engine import evaluate

    result = evaluate(mtp_path, [_to_ase(s) for s in supercells], list(species))
    return np.array(result.forces, dtype=float)


def _mesh(value, cell) -> list[int]:
    """Three mesh numbers, or a length (Å) turned into ``max(1, round(length * |b_i|))`` per axis."""
    try:
        array = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f'mesh: three positive integers or one positive length (Å) expected, got {value!r}') from None
    if array.size == 3:
        if (array < 1).any() or not np.allclose(array, np.round(array)):
            raise ValueError(f'mesh: three positive integers expected, got {array.tolist()}')
        return [int(x) for x in np.round(array)]
    if array.size == 1 and array[0] > 0:
        reciprocal = np.linalg.norm(np.linalg.inv(np.asarray(cell, float)).T, axis=1)
        return [max(1, int(round(array[0] * b))) for b in reciprocal]
    raise ValueError(f'mesh: three positive integers or one positive length (Å) expected, got {array.tolist()}')


def dos_from_forces(symbols, cell, scaled_positions, dataset: dict, forces, *, mesh=(12, 12, 12),
                    frequency_pitch_THz: float = 0.05, sigma_THz: float | None = None,
                    reference_forces=None) -> dict:
    """Harmonic DOS of the unit cell from the forces of the displaced supercells.

    ``forces`` (n_displacements, n_supercell_atoms, 3) eV/Å in the order of ``dataset['first_atoms']``;
    ``reference_forces`` (n_supercell_atoms, 3), the forces of the undisplaced supercell, are
    subtracted when given (residual forces of a cell not exactly at equilibrium). ``mesh`` is three
    numbers or a length in Å (phonopy's convention: mesh_i = length · |b_i|). The DOS uses the
    tetrahedron method unless ``sigma_THz`` asks for Gaussian smearing: tetrahedra cannot represent
    a (nearly) flat band, whose delta-like peak is then lost between the sampled frequencies (seen
    with small supercells), while smearing keeps ``∫ = 3 N`` at the price of a broadened DOS.

    Returns ``frequency_THz`` (n,), ``dos_per_THz`` (n,) per unit cell (``∫ = 3 N``),
    ``partial_dos_per_THz`` (S, n) per species, ``species`` (S), ``num_atoms`` (S,) per unit cell,
    ``integral`` (S,), ``gamma_frequencies_THz`` (3 N,), ``min_frequency_THz`` over the mesh
    (negative = imaginary mode), ``mesh``, ``force_constants`` (N_sc, N_sc, 3, 3) eV/Å².
    """
    first_atoms = dataset.get('first_atoms') if isinstance(dataset, dict) else None
    if not first_atoms:
        raise ValueError('displacement_dataset: no "first_atoms" entries')
    forces = np.asarray(forces, dtype=float)
    natom = int(dataset['natom'])
    if forces.shape != (len(first_atoms), natom, 3):
        raise ValueError(f'forces: expected shape ({len(first_atoms)}, {natom}, 3) for the displacement dataset, '
                         f'got {forces.shape}')
    if not np.isfinite(forces).all():
        raise ValueError('forces: NaN or infinite values')
    if reference_forces is not None:
        reference = np.asarray(reference_forces, dtype=float)
        if reference.shape != (natom, 3):
            raise ValueError(f'reference_forces: expected shape ({natom}, 3), got {reference.shape}')
        forces = forces - reference[None]
    if not frequency_pitch_THz > 0:
        raise ValueError(f'frequency_pitch_THz: must be positive, got {frequency_pitch_THz}')
    if sigma_THz is not None and not sigma_THz > 0:
        raise ValueError(f'sigma_THz: must be positive, got {sigma_THz}')

    phonon = _phonopy(symbols, cell, scaled_positions, dataset['supercell_matrix'], dataset.get('symprec', 1e-5))
    if len(phonon.supercell.symbols) != natom:
        raise ValueError(f'displacement_dataset: natom {natom} does not match the supercell of the structure '
                         f'({len(phonon.supercell.symbols)} atoms)')
    phonon.dataset = {
        'natom': natom,
        'first_atoms': [{'number': int(e['number']), 'displacement': np.asarray(e['displacement'], float)}
                        for e in first_atoms],
    }
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()

    mesh_numbers = _mesh(mesh, cell)
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = np.array(phonon.qpoints.frequencies[0], dtype=float)
    phonon.run_mesh(mesh_numbers, with_eigenvectors=True, is_mesh_symmetry=False, is_gamma_center=True)
    mesh_frequencies = np.asarray(phonon.mesh.frequencies, dtype=float)
    low, high = float(mesh_frequencies.min()), float(mesh_frequencies.max())
    pitch = float(frequency_pitch_THz)
    margin = 5 * max(pitch, sigma_THz or 0.0)
    phonon.run_projected_dos(freq_min=min(0.0, low) - margin, freq_max=high + margin, freq_pitch=pitch,
                             sigma=sigma_THz, use_tetrahedron_method=sigma_THz is None)
    frequency = np.asarray(phonon.projected_dos.frequency_points, dtype=float)
    per_atom = np.asarray(phonon.projected_dos.projected_dos, dtype=float)  # (N_unit, n)

    symbols = list(symbols)
    species = sorted(set(symbols), key=symbols.index)
    partial = np.array([per_atom[[i for i, s in enumerate(symbols) if s == name]].sum(axis=0) for name in species])
    return {
        'frequency_THz': frequency,
        'dos_per_THz': partial.sum(axis=0),
        'partial_dos_per_THz': partial,
        'species': species,
        'num_atoms': np.array([symbols.count(name) for name in species]),
        'integral': np.trapezoid(partial, frequency, axis=1),
        'gamma_frequencies_THz': gamma,
        'min_frequency_THz': low,
        'max_frequency_THz': high,
        'mesh': mesh_numbers,
        'force_constants': np.asarray(phonon.force_constants, dtype=float),
    }


# ------------------------------------------------------------------------------------- comparison


def normalised_on_grid(curves: t.Mapping[str, tuple[np.ndarray, np.ndarray]], num_points: int = 2001):
    """All curves on one grid spanning their union (zero outside each), each with unit area.

    Negative DOS values (ringing of a windowed VDOS) are clipped to 0 before normalising.
    """
    if not curves:
        raise ValueError('dos: nothing to compare')
    low = min(float(np.min(f)) for f, _ in curves.values())
    high = max(float(np.max(f)) for f, _ in curves.values())
    grid = np.linspace(low, high, num_points)
    result = {}
    for label, (frequency, dos) in curves.items():
        frequency = np.asarray(frequency, float)
        dos = np.clip(np.asarray(dos, float), 0.0, None)
        if frequency.ndim != 1 or frequency.shape != dos.shape or len(frequency) < 2:
            raise ValueError(f'dos.{label}: frequency_THz and dos_per_THz must be 1-D of equal length >= 2')
        if not (np.diff(frequency) > 0).all():
            raise ValueError(f'dos.{label}: frequency_THz must increase')
        values = np.interp(grid, frequency, dos, left=0.0, right=0.0)
        area = np.trapezoid(values, grid)
        if not area > 0:
            raise ValueError(f'dos.{label}: the DOS has no positive weight')
        result[label] = values / area
    return grid, result


def dos_overlap(grid, normalised: t.Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(labels, S, mean_frequency)``: overlap matrix ``S_ab = ∫ min(g_a, g_b) dν`` and ``∫ ν g dν``."""
    labels = list(normalised)
    matrix = np.ones((len(labels), len(labels)))
    for i, a in enumerate(labels):
        for j in range(i + 1, len(labels)):
            value = np.trapezoid(np.minimum(normalised[a], normalised[labels[j]]), grid)
            matrix[i, j] = matrix[j, i] = value
    mean = np.array([np.trapezoid(grid * normalised[label], grid) for label in labels])
    return labels, matrix, mean


# ------------------------------------------------------------------------------------- figures


def plot_phonon_dos(result: dict, title: str = '') -> bytes:
    """PNG: total harmonic DOS and its partial DOS per species."""
    from .figures import new_figure, to_png

    figure, axes = new_figure()
    frequency = result['frequency_THz']
    axes.plot(frequency, result['dos_per_THz'], color='k', label='total')
    if len(result['species']) > 1:
        for name, partial in zip(result['species'], result['partial_dos_per_THz']):
            axes.plot(frequency, partial, label=name)
    axes.axvline(0.0, color='0.6', lw=0.6)
    axes.set_xlabel('frequency ν (THz)')
    axes.set_ylabel('g(ν) (1/THz per unit cell; ∫g dν = 3N)')
    axes.set_ylim(bottom=0.0)
    axes.legend(fontsize='small')
    if title:
        axes.set_title(title)
    return to_png(figure)


def plot_dos_comparison(grid, normalised: t.Mapping[str, np.ndarray], labels, matrix, title: str = '') -> bytes:
    """PNG: every DOS normalised to unit area on one grid, with the overlap to the first one in the legend."""
    from .figures import new_figure, to_png

    figure, axes = new_figure(width=6.0, height=4.0)
    for i, label in enumerate(labels):
        text = label if i == 0 else f'{label} (overlap with {labels[0]}: {matrix[0, i]:.3f})'
        axes.plot(grid, normalised[label], label=text)
    axes.set_xlabel('frequency ν (THz)')
    axes.set_ylabel('DOS g(ν) (1/THz, normalised to unit area)')
    axes.set_ylim(bottom=0.0)
    axes.legend(fontsize='small')
    if title:
        axes.set_title(title)
    return to_png(figure)
