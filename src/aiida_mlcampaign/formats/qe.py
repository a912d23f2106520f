"""Plain readers for what pw.x produces and aiida-quantumespresso does not parse, and unit conversions.

aiida-quantumespresso's ``output_trajectory`` holds positions, forces (eV/Å), energies (eV) and
stress (GPa, QE's sign: positive = compressed) of every SCF; the MD temperature, kinetic energy and
conserved energy exist only in stdout, so they are read here. No AiiDA import.
"""

from __future__ import annotations

import re

import numpy as np

from aiida_mlcampaign.formats.frames import Frame

EV_PER_ANG3_IN_GPA = 160.21766208
RY_IN_EV = 13.605693122994
BOHR_IN_ANG = 0.529177210903
#: pw.x uses Rydberg atomic units of time for ``dt``: 2 * hbar / E_h = 4.8378e-17 s.
RY_TIME_IN_FS = 4.8377686e-2
#: 1 amu in Rydberg atomic units of mass (2 m_e), as pw.x uses internally.
AMU_IN_RY_MASS = 911.44424310865645
#: eV/Å / amu expressed in Å/fs^2.
EV_ANG_AMU_IN_ANG_FS2 = 9.648533212e-3

_THERMO_PATTERNS = {
    'kinetic_energy': re.compile(r'kinetic energy \(Ekin\)\s*=\s*(\S+)\s*Ry'),
    'temperature': re.compile(r'^\s*temperature\s*=\s*(\S+)\s*K', re.MULTILINE),
    'conserved_energy': re.compile(r'Ekin \+ Etot \(const\)\s*=\s*(\S+)\s*Ry'),
}


def read_md_thermo(stdout: str) -> dict[str, np.ndarray]:
    """Temperature (K), ionic kinetic energy and ``Ekin + Etot`` (eV) of every MD step in pw.x stdout.

    pw.x prints these three lines once per ionic step, right after the SCF at that step, so entry i
    belongs to the i-th SCF geometry, i.e. to frame i of aiida-quantumespresso's ``output_trajectory``.
    """
    values = {key: [float(v) for v in pattern.findall(stdout)] for key, pattern in _THERMO_PATTERNS.items()}
    return {
        'temperature': np.array(values['temperature']),
        'kinetic_energy': np.array(values['kinetic_energy']) * RY_IN_EV,
        'conserved_energy': np.array(values['conserved_energy']) * RY_IN_EV,
    }


def qe_stress_gpa_to_ase(stress_gpa) -> np.ndarray:
    """QE reports stress in GPa with compression positive; ASE uses eV/Å^3 with tension positive."""
    return -np.asarray(stress_gpa, dtype=float) / EV_PER_ANG3_IN_GPA


def frames_from_pw_trajectory(
    symbols,
    positions,
    cells,
    energies,
    forces,
    stresses_gpa=None,
    pbc=(True, True, True),
    info: dict | None = None,
    temperatures=None,
    indices=None,
) -> list[Frame]:
    """Turn the per-SCF arrays of one pw.x run into labelled frames.

    ``indices`` picks frames (default all); positions, forces and energies of one index belong to the
    same SCF, which is what training needs.
    """
    positions = np.asarray(positions, dtype=float)
    nframes = len(positions)
    cells = np.asarray(cells, dtype=float)
    if cells.ndim == 2:
        cells = np.broadcast_to(cells, (nframes, 3, 3))
    energies = np.asarray(energies, dtype=float).ravel()
    forces = np.asarray(forces, dtype=float)
    if len(energies) != nframes or len(forces) != nframes:
        raise ValueError(
            f'trajectory: {nframes} geometries but {len(energies)} energies and {len(forces)} force sets'
        )
    stresses = None
    if stresses_gpa is not None and len(stresses_gpa) == nframes:
        stresses = qe_stress_gpa_to_ase(stresses_gpa)
    frames = []
    for i in range(nframes) if indices is None else indices:
        frame_info = dict(info or {})
        frame_info['scf_index'] = int(i)
        if temperatures is not None and i < len(temperatures):
            frame_info['temperature'] = float(temperatures[i])
        frames.append(
            Frame(
                symbols=list(symbols),
                cell=cells[i],
                positions=positions[i],
                pbc=pbc,
                energy=float(energies[i]),
                forces=forces[i],
                stress=None if stresses is None else stresses[i],
                info=frame_info,
            )
        )
    return frames


def continuation_velocities(last_scf_positions, next_positions, last_scf_forces, masses_amu, dt_ry) -> np.ndarray:
    """Velocities (Bohr per Rydberg time unit, pw.x's ``ATOMIC_VELOCITIES`` unit) to continue an MD run.

    pw.x's Verlet run ends with the geometry *after* its last move (``next_positions``), which has no
    SCF yet. Starting the next segment there with v = (r_N - r_{N-1})/dt + a_{N-1} dt/2 reproduces the
    uninterrupted trajectory to O(dt^3): measured on an 4-atom cell, the first continued SCF energy
    matched to 1e-8 Ry and the second to 7e-7 Ry.
    """
    dt_fs = dt_ry * RY_TIME_IN_FS
    displacement = np.asarray(next_positions, float) - np.asarray(last_scf_positions, float)
    acceleration = np.asarray(last_scf_forces, float) / np.asarray(masses_amu, float)[:, None] * EV_ANG_AMU_IN_ANG_FS2
    velocity_ang_fs = displacement / dt_fs + 0.5 * acceleration * dt_fs
    return velocity_ang_fs / BOHR_IN_ANG * RY_TIME_IN_FS
