"""Vibrational analyses as calcfunctions: VDOS from MD, harmonic phonon DOS, DOS comparison.

Entry points (group ``aiida.calculations``):

* ``mlcampaign.analysis.vdos`` -> :func:`compute_vdos`: mass-weighted VACF (all time origins, FFT,
  streamed) and VDOS per species from a trajectory (``TrainingSetData``, GPUMD ``dump.xyz``, any
  ASE-readable file), or GPUMD's ``mvac.out`` (``SinglefileData``, or an ``ArrayData`` with
  ``time_ps`` and ``mvac``).
* ``mlcampaign.analysis.phonon_dos`` -> :func:`phonon_dos_from_forces`: phonopy DOS from the forces
  of displaced supercells.
* ``mlcampaign.analysis.dos_compare`` -> :func:`compare_dos`: overlap matrix of any number of DOS
  and one figure.

:func:`generate_displacements`, :func:`potential_forces` and :func:`collect_dft_forces` are the
steps of ``mlcampaign.analysis.phonons`` (``PhononDosWorkChain``), calcfunctions so every displaced
supercell and every force array sits in the provenance graph.

Every DOS output is an ``ArrayData`` with the same names, so any of them can go into
:func:`compare_dos`: ``frequency_THz`` (ordinary frequency, THz), ``dos_per_THz`` (total, 1/THz),
``partial_dos_per_THz`` (species x frequency); attribute ``species`` and ``units``. Parameters
are checked by port validators (the message names the field) before the function runs; all
the numbers come from :mod:`aiida_mlcampaign.analysis.vibrations` and
:mod:`aiida_mlcampaign.analysis.phonons`.
"""

from __future__ import annotations

import itertools
import math
import tempfile

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.analysis import phonons as _phonons
from aiida_mlcampaign.analysis import vibrations as _vibrations
from aiida_mlcampaign.calculations.analysis_common import array_node, figure_node

__all__ = [
    'collect_dft_forces',
    'compare_dos',
    'compute_vdos',
    'generate_displacements',
    'phonon_dos_from_forces',
    'potential_forces',
]

DOS_UNITS = {
    'frequency_THz': 'THz (ordinary frequency nu, not angular)',
    'dos_per_THz': '1/THz; integral over nu = 3 x number of atoms',
    'partial_dos_per_THz': '1/THz per species; integral over nu = 3 x atoms of that species',
}

# --------------------------------------------------------------------------------------- validation

VDOS_DEFAULTS = {
    'timestep_fs': None,
    'max_lag': 256,
    'window': 'hann',
    'frequency_max_THz': None,
    'num_frequencies': None,
    'velocity_source': 'auto',
    'skip_frames': 0,
    'num_atoms': 1,
    'species': None,
    'block': 0,
}

PHONON_DEFAULTS = {'mesh': [12, 12, 12], 'frequency_pitch_THz': 0.02, 'sigma_THz': None}


def _positive_number(name, value, integer=False, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f'{name}: expected a number, got {value!r}'
    if integer and int(value) != value:
        return f'{name}: expected an integer, got {value!r}'
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        return f'{name}: must be {"non-negative" if allow_zero else "positive"}, got {value!r}'
    return None


def vdos_parameters_problem(parameters: dict) -> str | None:
    """Why ``parameters`` of :func:`compute_vdos` are unusable (None if fine); names the field."""
    unknown = sorted(set(parameters) - set(VDOS_DEFAULTS))
    if unknown:
        return f'parameters: unknown key(s) {unknown}; allowed: {sorted(VDOS_DEFAULTS)}'
    checks = {
        'timestep_fs': {}, 'frequency_max_THz': {}, 'max_lag': {'integer': True},
        'num_frequencies': {'integer': True}, 'skip_frames': {'integer': True, 'allow_zero': True},
        'block': {'integer': True, 'allow_zero': True},
        'num_atoms': {'integer': True},
    }
    for key, options in checks.items():
        if parameters.get(key) is not None:
            problem = _positive_number(f'parameters.{key}', parameters[key], **options)
            if problem:
                return problem
    if parameters.get('max_lag') is not None and parameters['max_lag'] < 2:
        return f'parameters.max_lag: at least 2 lags are needed, got {parameters["max_lag"]}'
    if parameters.get('num_frequencies') is not None and parameters['num_frequencies'] < 2:
        return f'parameters.num_frequencies: must be >= 2, got {parameters["num_frequencies"]}'
    if parameters.get('window', 'hann') not in _vibrations.WINDOWS:
        return f'parameters.window: expected one of {list(_vibrations.WINDOWS)}, got {parameters["window"]!r}'
    if parameters.get('velocity_source', 'auto') not in ('auto', 'velocities', 'positions'):
        return (f"parameters.velocity_source: expected 'auto', 'velocities' or 'positions', "
                f'got {parameters["velocity_source"]!r}')
    species = parameters.get('species')
    if species is not None and (not isinstance(species, list) or not all(isinstance(s, str) for s in species)):
        return f'parameters.species: expected a list of element symbols, got {species!r}'
    return None


def phonon_parameters_problem(parameters: dict) -> str | None:
    """Why ``parameters`` of :func:`phonon_dos_from_forces` are unusable (None if fine)."""
    unknown = sorted(set(parameters) - set(PHONON_DEFAULTS))
    if unknown:
        return f'parameters: unknown key(s) {unknown}; allowed: {sorted(PHONON_DEFAULTS)}'
    for key in ('frequency_pitch_THz', 'sigma_THz'):
        if parameters.get(key) is not None:
            problem = _positive_number(f'parameters.{key}', parameters[key])
            if problem:
                return problem
    if 'mesh' in parameters:
        try:
            _phonons._mesh(parameters['mesh'], np.eye(3))
        except (ValueError, TypeError) as exception:
            return f'parameters.{exception}'
    return None


def _validate_vdos_parameters(value, _):
    if value is not None:
        return vdos_parameters_problem(value.get_dict())


def _validate_phonon_parameters(value, _):
    if value is not None:
        return phonon_parameters_problem(value.get_dict())


def _validate_trajectory(value, _):
    from aiida_mlcampaign.data.training_set import TrainingSetData

    if isinstance(value, (TrainingSetData, orm.SinglefileData)):
        return None
    if isinstance(value, orm.ArrayData):
        names = set(value.get_arraynames())
        if not {'time_ps', 'mvac'} <= names:
            return f'trajectory: an ArrayData needs the arrays time_ps and mvac (GPUMD mvac.out), has {sorted(names)}'
        return None
    return f'trajectory: expected TrainingSetData, SinglefileData or ArrayData, got {type(value).__name__}'


def _validate_forces(value, _):
    if value is not None and 'forces' not in value.get_arraynames():
        return (f'forces: the ArrayData needs an array "forces" (n_displacements, n_atoms, 3), '
                f'has {value.get_arraynames()}')


def _validate_dataset(value, _):
    if value is not None:
        data = value.get_dict()
        missing = [k for k in ('natom', 'first_atoms', 'supercell_matrix') if k not in data]
        if missing:
            return f'displacement_dataset: missing key(s) {missing}'
        try:
            _phonons.supercell_matrix_3x3(data['supercell_matrix'])
        except ValueError as exception:
            return f'displacement_dataset.{exception}'


def _attach(function, **validators):
    spec = function.process_class.spec()
    for name, validator in validators.items():
        spec.inputs[name].validator = validator


# ----------------------------------------------------------------------------------- compute_vdos


def _sniff(node: orm.SinglefileData) -> str:
    """'mvac' for a 4-column numeric table, 'xyz' for an (extended) XYZ file, else 'ase'."""
    try:
        with node.open(mode='r') as handle:
            for line in handle:
                tokens = line.split()
                if not tokens or tokens[0].startswith('#'):
                    continue
                if len(tokens) == 1 and tokens[0].isdigit():
                    return 'xyz'
                try:
                    [float(x) for x in tokens]
                except ValueError:
                    return 'ase'
                return 'mvac' if len(tokens) == 4 else 'ase'
    except UnicodeDecodeError:
        return 'ase'
    return 'ase'


def _vdos_from_frames(frames, settings: dict) -> dict:
    frames = itertools.islice(frames, int(settings['skip_frames']), None)
    vacf = _vibrations.vacf_from_frames(
        frames, max_lag=int(settings['max_lag']), timestep_fs=settings['timestep_fs'],
        velocity_source=settings['velocity_source'], species=settings['species'],
    )
    dos = _vibrations.vdos_from_vacf(
        vacf['time_ps'], vacf['vacf'], vacf['num_atoms'], window=settings['window'],
        frequency_max_THz=settings['frequency_max_THz'], num_frequencies=settings['num_frequencies'],
    )
    total = vacf['vacf'].sum(axis=2)
    return {
        **dos, 'time_ps': vacf['time_ps'], 'vacf': vacf['vacf'], 'vacf_normalised': total / total[0],
        'num_atoms': vacf['num_atoms'], 'temperature_K': vacf['temperature_K'],
        'attributes': {
            'source': 'trajectory', 'species': vacf['species'], 'timestep_fs': vacf['timestep_fs'],
            'num_frames': vacf['num_frames'], 'num_velocity_frames': vacf['num_velocity_frames'],
            'velocity_source': vacf['velocity_source'], 'max_lag': int(len(vacf['time_ps'])),
        },
    }


def _vdos_from_mvac(time_ps, mvac, settings: dict, max_lag: int | None) -> dict:
    if max_lag is not None:  # GPUMD already chose N_c; shorten only on request
        time_ps, mvac = time_ps[:max_lag], mvac[:max_lag]
    dos = _vibrations.vdos_from_mvac(
        time_ps, mvac, num_atoms=int(settings['num_atoms']), window=settings['window'],
        frequency_max_THz=settings['frequency_max_THz'], num_frequencies=settings['num_frequencies'],
    )
    return {
        **dos, 'time_ps': time_ps, 'vacf': mvac, 'vacf_normalised': (mvac / mvac[0]).mean(axis=1)[:, None],
        'num_atoms': np.array([int(settings['num_atoms'])]),
        'attributes': {
            'source': 'gpumd_mvac', 'species': ['all'], 'timestep_fs': float(time_ps[1] - time_ps[0]) * 1000.0,
            'velocity_source': 'gpumd', 'max_lag': int(len(time_ps)),
        },
    }


@calcfunction
def compute_vdos(trajectory: orm.Data, parameters: orm.Dict | None = None):
    """Mass-weighted VACF and vibrational DOS per species, with a figure.

    Velocities come from the frames when they carry them (GPUMD dump ``vel`` column, Å/fs; ASE
    momenta), otherwise from forward differences of the (possibly wrapped) positions; the output
    attribute ``velocity_source`` says which. The VDOS is the Hann-windowed cosine transform of the
    VACF (GPUMD's window), frequencies in THz (ordinary), each species normalised to 3 N_s.

    Args:
        trajectory: TrainingSetData (AIMD frames in time order), SinglefileData (GPUMD dump.xyz,
            an ASE-readable trajectory, or GPUMD mvac.out) or ArrayData with arrays time_ps and
            mvac (GPUMD mvac.out as parsed).
        parameters: optional settings: timestep_fs (time between frames; required when the frames
            carry no time), max_lag (correlation points, default 256), window ('hann' or 'none'),
            frequency_max_THz (default Nyquist), num_frequencies, velocity_source ('auto',
            'velocities', 'positions'), skip_frames (equilibration frames to drop), species (order),
            num_atoms (atoms behind a GPUMD mvac, default 1 = per atom), block (which appended
            group/run of a GPUMD mvac, default 0).

    Returns:
        dos (ArrayData: frequency_THz, dos_per_THz, partial_dos_per_THz, time_ps, vacf,
        vacf_normalised, num_atoms, temperature_K for trajectories) and figure (PNG).
    """
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.formats.gpumd import iter_dump_xyz, read_mvac

    given = parameters.get_dict() if parameters is not None else {}
    problem = vdos_parameters_problem(given)
    if problem:
        raise ValueError(problem)
    settings = {**VDOS_DEFAULTS, **given}

    if isinstance(trajectory, TrainingSetData):
        result = _vdos_from_frames(trajectory.iter_frames(), settings)
        result['attributes']['trajectory_type'] = 'TrainingSetData'
    elif isinstance(trajectory, orm.SinglefileData):
        kind = _sniff(trajectory)
        if kind == 'mvac':
            with trajectory.open(mode='r') as handle:
                table = read_mvac(handle)
            rows = _block_rows(table['block_starts'], len(table['time_ps']), settings['block'])
            result = _vdos_from_mvac(table['time_ps'][rows], table['mvac'][rows], settings, given.get('max_lag'))
        elif kind == 'xyz':
            with trajectory.open(mode='r') as handle:
                result = _vdos_from_frames(iter_dump_xyz(handle), settings)
        else:
            import ase.io

            with trajectory.as_path() as path:
                result = _vdos_from_frames(ase.io.iread(str(path), index=':'), settings)
        result['attributes']['trajectory_type'] = f'SinglefileData ({kind})'
    elif isinstance(trajectory, orm.ArrayData):
        time_ps = trajectory.get_array('time_ps')
        starts = trajectory.get_array('block_starts') if 'block_starts' in trajectory.get_arraynames() else [0]
        rows = _block_rows(starts, len(time_ps), settings['block'])
        result = _vdos_from_mvac(time_ps[rows], trajectory.get_array('mvac')[rows], settings, given.get('max_lag'))
        result['attributes']['trajectory_type'] = 'ArrayData (mvac)'
    else:
        raise ValueError(_validate_trajectory(trajectory, None))

    attributes = result.pop('attributes')
    node = array_node(**{k: v for k, v in result.items() if isinstance(v, np.ndarray)})
    attributes.update({
        'window': settings['window'],
        'nyquist_THz': float(result['nyquist_THz']),
        'integral_per_species': [float(x) for x in result['integral']],
        'units': {
            **DOS_UNITS,
            'time_ps': 'ps',
            'vacf': ('amu*Å^2/ps^2, sum over the atoms of each species of m <v(0).v(t)> per component'
                     if attributes['source'] == 'trajectory' else 'dimensionless (GPUMD, normalised per component)'),
            'temperature_K': 'K, from C_s(0) = 3 N_s k_B T',
        },
    })
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    png = _vibrations.plot_vdos(
        result['time_ps'], result['vacf_normalised'], result['frequency_THz'], result['partial_dos_per_THz'],
        attributes['species'], title=f'VDOS ({attributes["velocity_source"]} velocities, {settings["window"]} window)',
    )
    return {'dos': node, 'figure': figure_node(png, 'vdos.png')}


def _block_rows(block_starts, length: int, block: int) -> slice:
    """Rows of one group/run of a GPUMD table: appended blocks are separate spectra, never one."""
    edges = [int(x) for x in block_starts] + [length]
    if not 0 <= block < len(edges) - 1:
        raise ValueError(f'parameters.block: {block} out of range, the table has {len(edges) - 1} block(s)')
    return slice(edges[block], edges[block + 1])


_attach(compute_vdos, trajectory=_validate_trajectory, parameters=_validate_vdos_parameters)


# ---------------------------------------------------------------------------------- phonon DOS


def _structure_arrays(structure: orm.StructureData):
    atoms = structure.get_ase()
    if not all(atoms.pbc):
        raise ValueError('structure: must be periodic in all three directions for phonons')
    return atoms.get_chemical_symbols(), np.array(atoms.cell), atoms.get_scaled_positions(wrap=False)


@calcfunction
def generate_displacements(structure: orm.StructureData, supercell_matrix: orm.List,
                           amplitude: orm.Float | None = None):
    """Displaced supercells (phonopy, symmetry-reduced) of a unit cell.

    Args:
        structure: the unit cell (used as the primitive cell).
        supercell_matrix: three diagonal entries or a 3x3 integer matrix.
        amplitude: displacement in Å (default 0.01).

    Returns:
        displacement_dataset (Dict, phonopy's dataset with supercell_matrix, amplitude_A, symprec),
        supercell_NNNN (StructureData, one per displacement, in dataset order) and
        reference_supercell (the undisplaced supercell).
    """
    symbols, cell, scaled = _structure_arrays(structure)
    dataset, supercells, reference = _phonons.displaced_supercells(
        symbols, cell, scaled, supercell_matrix.get_list(), amplitude=amplitude.value if amplitude else 0.01,
    )
    outputs = {'displacement_dataset': orm.Dict(dataset), 'reference_supercell': _structure_node(reference)}
    for index, supercell in enumerate(supercells):
        outputs[f'supercell_{index:04d}'] = _structure_node(supercell)
    return outputs


def _structure_node(supercell: dict) -> orm.StructureData:
    node = orm.StructureData(cell=np.asarray(supercell['cell']).tolist(), pbc=(True, True, True))
    for symbol, position in zip(supercell['symbols'], supercell['positions']):
        node.append_atom(position=np.asarray(position).tolist(), symbols=symbol)
    return node


def _supercell_dict(structure: orm.StructureData) -> dict:
    atoms = structure.get_ase()
    return {'symbols': atoms.get_chemical_symbols(), 'cell': np.array(atoms.cell), 'positions': atoms.get_positions()}


@calcfunction
def potential_forces(potential: orm.SinglefileData, **supercells):
    """Forces of supercells from a NEP (calorine CPUNEP) or MTP (motep) potential, in key order.

    Args:
        potential: NepPotentialData or MtpPotentialData.
        supercells: StructureData keyed ``supercell_NNNN`` (and optionally ``reference``, the undisplaced cell).

    Returns:
        forces (ArrayData: forces (n, n_atoms, 3) eV/Å for the supercell_* keys in sorted order,
        reference_forces (n_atoms, 3) when a reference was given).
    """
    from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
    from aiida_mlcampaign.data.nep_potential import NepPotentialData

    keys = sorted(k for k in supercells if k != 'reference')
    cells = [_supercell_dict(supercells[k]) for k in keys]
    if 'reference' in supercells:
        cells.append(_supercell_dict(supercells['reference']))
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(potential, NepPotentialData):
            path = potential.write(folder)
            forces = _phonons.nep_forces(path, cells)
            engine = 'calorine CPUNEP'
        elif isinstance(potential, MtpPotentialData):
            path = potential.write(folder)
            forces = _phonons.mtp_forces(path, potential.species, cells)
            engine = 'motep'
        else:
            raise ValueError(
                f'potential: expected NepPotentialData or MtpPotentialData, got {type(potential).__name__}')
    arrays = {'forces': forces[:len(keys)]}
    if 'reference' in supercells:
        arrays['reference_forces'] = forces[-1]
    node = array_node(**arrays)
    node.base.attributes.set('keys', keys)
    node.base.attributes.set('engine', engine)
    node.base.attributes.set('units', {'forces': 'eV/Å', 'reference_forces': 'eV/Å'})
    return {'forces': node}


@calcfunction
def collect_dft_forces(**trajectories):
    """Forces of the last step of each pw.x run, keyed ``supercell_NNNN`` (and ``reference``).

    Args:
        trajectories: output_trajectory (TrajectoryData, forces in eV/Å) of each PwBaseWorkChain.

    Returns:
        forces (ArrayData as from :func:`potential_forces`).
    """
    keys = sorted(k for k in trajectories if k != 'reference')
    forces = np.array([trajectories[k].get_array('forces')[-1] for k in keys], dtype=float)
    arrays = {'forces': forces}
    if 'reference' in trajectories:
        arrays['reference_forces'] = np.array(trajectories['reference'].get_array('forces')[-1], dtype=float)
    node = array_node(**arrays)
    node.base.attributes.set('keys', keys)
    node.base.attributes.set('engine', 'pw.x')
    node.base.attributes.set('units', {'forces': 'eV/Å', 'reference_forces': 'eV/Å'})
    return {'forces': node}


@calcfunction
def phonon_dos_from_forces(structure: orm.StructureData, displacement_dataset: orm.Dict, forces: orm.ArrayData,
                           parameters: orm.Dict | None = None):
    """Harmonic phonon DOS (phonopy, tetrahedron method) and partial DOS per species, with a figure.

    Args:
        structure: the unit cell the displacements were generated from.
        displacement_dataset: the dataset from generate_displacements (phonopy natom, first_atoms,
            supercell_matrix, symprec).
        forces: ArrayData with forces (n_displacements, n_supercell_atoms, 3) in eV/Å in dataset
            order, and optionally reference_forces (n_supercell_atoms, 3), subtracted when present.
        parameters: optional mesh (three integers or a length in Å, default 12x12x12),
            frequency_pitch_THz (default 0.02) and sigma_THz (Gaussian smearing instead of the
            tetrahedron method; use it for small supercells with nearly flat bands).

    Returns:
        dos (ArrayData: frequency_THz, dos_per_THz, partial_dos_per_THz, gamma_frequencies_THz,
        num_atoms, force_constants; attributes species, min_frequency_THz, mesh, units) and
        figure (PNG).
    """
    given = parameters.get_dict() if parameters is not None else {}
    problem = phonon_parameters_problem(given)
    if problem:
        raise ValueError(problem)
    settings = {**PHONON_DEFAULTS, **given}
    symbols, cell, scaled = _structure_arrays(structure)
    reference = forces.get_array('reference_forces') if 'reference_forces' in forces.get_arraynames() else None
    result = _phonons.dos_from_forces(
        symbols, cell, scaled, displacement_dataset.get_dict(), forces.get_array('forces'),
        mesh=settings['mesh'], frequency_pitch_THz=settings['frequency_pitch_THz'], sigma_THz=settings['sigma_THz'],
        reference_forces=reference,
    )
    node = array_node(**{k: result[k] for k in (
        'frequency_THz', 'dos_per_THz', 'partial_dos_per_THz', 'gamma_frequencies_THz', 'num_atoms',
        'force_constants')})
    attributes = {
        'source': 'harmonic_phonons',
        'species': result['species'],
        'mesh': result['mesh'],
        'frequency_pitch_THz': float(settings['frequency_pitch_THz']),
        'dos_method': 'tetrahedron' if settings['sigma_THz'] is None else f'gaussian sigma {settings["sigma_THz"]} THz',
        'min_frequency_THz': result['min_frequency_THz'],
        'max_frequency_THz': result['max_frequency_THz'],
        'integral_per_species': [float(x) for x in result['integral']],
        'subtracted_reference_forces': reference is not None,
        'units': {**DOS_UNITS, 'gamma_frequencies_THz': 'THz (negative = imaginary)',
                  'force_constants': 'eV/Å^2, supercell atoms x supercell atoms x 3 x 3'},
    }
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    png = _phonons.plot_phonon_dos(result, title=f'{structure.get_formula()} harmonic DOS, mesh {result["mesh"]}')
    return {'dos': node, 'figure': figure_node(png, 'phonon_dos.png')}


_attach(phonon_dos_from_forces, displacement_dataset=_validate_dataset, forces=_validate_forces,
        parameters=_validate_phonon_parameters)


# ---------------------------------------------------------------------------------- comparison


def _curve(label: str, node: orm.ArrayData) -> tuple[np.ndarray, np.ndarray]:
    names = node.get_arraynames()
    if 'frequency_THz' in names and 'dos_per_THz' in names:
        return node.get_array('frequency_THz'), node.get_array('dos_per_THz')
    if 'omega_THz' in names and 'dos_per_THz' in names:  # GPUMD dos.out: angular THz, three columns
        omega, dos = node.get_array('omega_THz'), node.get_array('dos_per_THz')
        if 'block_starts' in names:  # appended groups/runs: the first one
            rows = _block_rows(node.get_array('block_starts'), len(omega), 0)
            omega, dos = omega[rows], dos[rows]
        return omega / (2 * np.pi), dos.sum(axis=1) if dos.ndim == 2 else dos
    raise ValueError(f'dos.{label}: needs arrays frequency_THz and dos_per_THz (or GPUMD omega_THz), has {names}')


def _validate_dos_namespace(value, _):
    if not value:
        return 'dos: give at least two DOS to compare'
    if len(value) < 2:
        return f'dos: give at least two DOS to compare, got only {list(value)}'
    for label, node in value.items():
        if not isinstance(node, orm.ArrayData):
            return f'dos.{label}: expected an ArrayData, got {type(node).__name__}'
        names = set(node.get_arraynames())
        if not ({'frequency_THz', 'dos_per_THz'} <= names or {'omega_THz', 'dos_per_THz'} <= names):
            return f'dos.{label}: needs arrays frequency_THz and dos_per_THz (or GPUMD omega_THz), has {sorted(names)}'


def _reference_first(labels):
    labels = sorted(labels)
    return (['dft'] + [x for x in labels if x != 'dft']) if 'dft' in labels else labels


@calcfunction
def compare_dos(**dos):
    """Overlap of densities of states (e.g. DFT vs MTP vs NEP, or VDOS vs harmonic DOS), one figure.

    Each DOS is put on a common grid and normalised to unit area; the overlap S_ab = ∫ min(g_a, g_b) dν
    is 1 for identical shapes and 0 for disjoint ones. The reference (first row, first curve) is the
    key ``dft`` if present, otherwise the first key alphabetically.

    Args:
        dos: ArrayData keyed by label, each with frequency_THz and dos_per_THz (any DOS output of
            this module) or GPUMD's omega_THz and dos_per_THz columns.

    Returns:
        overlap (ArrayData: overlap (n, n), mean_frequency_THz (n,), frequency_THz and
        normalised_dos (n, grid); attribute labels) and figure (PNG).
    """
    problem = _validate_dos_namespace(dos, None)
    if problem:
        raise ValueError(problem)
    labels = _reference_first(dos)
    curves = {label: _curve(label, dos[label]) for label in labels}
    grid, normalised = _phonons.normalised_on_grid(curves)
    labels, matrix, mean = _phonons.dos_overlap(grid, normalised)
    node = array_node(overlap=matrix, mean_frequency_THz=mean, frequency_THz=grid,
                      normalised_dos=np.array([normalised[label] for label in labels]))
    node.base.attributes.set('labels', labels)
    node.base.attributes.set('units', {
        'overlap': 'dimensionless, ∫ min(g_a, g_b) dν of unit-area DOS (1 = identical)',
        'mean_frequency_THz': 'THz, first moment of the unit-area DOS',
        'frequency_THz': 'THz', 'normalised_dos': '1/THz, unit area',
    })
    png = _phonons.plot_dos_comparison(grid, normalised, labels, matrix, title='DOS comparison')
    return {'overlap': node, 'figure': figure_node(png, 'dos_comparison.png')}


def _validate_compare_inputs(inputs, _):
    return _validate_dos_namespace({k: v for k, v in inputs.items() if k != 'metadata'}, None)


compare_dos.process_class.spec().inputs.validator = _validate_compare_inputs
