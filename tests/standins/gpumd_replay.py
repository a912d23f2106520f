#!/usr/bin/env python3
"""Stand-in for GPUMD's ``gpumd`` that REPLAYS RECORDED REAL GPUMD OUTPUTS (there is no GPU here).

It does no molecular dynamics. It checks its inputs the way ``gpumd`` would refuse them, then writes the output
files that the ``run.in`` asks for by copying real files recorded from GPUMD runs, so that the CalcJob, the parser
and the restart work chain are exercised end to end on genuine file contents:

* ``run.in`` is read with ``aiida_mlcampaign.formats.gpumd_run.read_run_in`` (current grammar, then the legacy one);
  ``model.xyz`` with ``read_restart_xyz``; its species must be in ``nep.txt``'s header. A refusal is printed to
  stderr as GPUMD's ``Input Error:`` block, exit status 1.
* Recorded outputs come from the folder named by the environment variable ``MLCAMPAIGN_GPUMD_REPLAY_DIR``.
  ``thermo.out``: the recorded header block and data rows are replayed for every ``run`` with ``dump_thermo``,
  as many rows as ``run // dump_thermo`` (recorded rows are reused cyclically when the recording is shorter).
  ``compute_*`` outputs (msd.out, sdc.out, rdf.out, dos.out + mvac.out, hac.out, kappa.out, shc.out,
  viscosity.out) and the ``dump_xyz`` file are appended/copied from the recording once per run that asks for
  them; a requested output without a recording is an error (exit status 2).
* ``restart.xyz`` (``dump_restart``) is model.xyz rewritten in GPUMD's restart layout (mass and velocity columns;
  zero velocities when model.xyz has none) with the positions unchanged, written only if a dump step is reached.
* stdout is GPUMD-like: a banner with ``version 5.6``, per run ``Time used for this run = ... second.`` and
  ``Speed of this run = ... atom*step/second.`` (synthetic numbers: 1 ms per step), then
  ``Finished running GPUMD.``.

``MLCAMPAIGN_GPUMD_REPLAY_STOP`` simulates failures:

* ``walltime``: the job stops at half of its total steps (thermo.out up to that step, restart.xyz as of the last
  dump before it, no finish line, exit status 143 as after SIGTERM) -- but only when model.xyz has no ``vel``
  column, i.e. a fresh start. A continuation starts from a restart.xyz, which always carries velocities, so the
  second job of a restart work chain runs to the end: no state is kept between jobs.
* ``blowup``: every thermo row from half of the total steps on has NaN temperature and energies; the run finishes
  normally, as GPUMD does (it does not stop on NaN).
"""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import sys

OUTPUTS = {
    'compute_msd': ('msd.out',), 'compute_sdc': ('sdc.out',), 'compute_rdf': ('rdf.out',),
    'compute_dos': ('dos.out', 'mvac.out'), 'compute_hac': ('hac.out',), 'compute_hnemd': ('kappa.out',),
    'compute_shc': ('shc.out',), 'compute_viscosity': ('viscosity.out',),
}


def input_error(text: str) -> None:
    sys.stderr.write(f'\nInput Error:\n    File:       run.in (replay stand-in)\n    Line:       0\n'
                     f'    Error text: {text}\n')
    sys.exit(1)


def read_inputs():
    from aiida_mlcampaign.formats.frames import FormatError
    from aiida_mlcampaign.formats.gpumd import read_restart_xyz
    from aiida_mlcampaign.formats.gpumd_run import read_run_in
    from aiida_mlcampaign.formats.nep import read_nep_header

    try:
        text = pathlib.Path('run.in').read_text()
    except OSError as exception:
        input_error(f'cannot read run.in: {exception}')
    try:
        parsed = read_run_in(text)
    except FormatError:
        try:
            parsed = read_run_in(text, legacy=True)
        except FormatError as exception:
            input_error(str(exception))
    potential = parsed['potential'].split()[0]
    try:
        species = read_nep_header(pathlib.Path(potential).read_text())['species']
    except (OSError, FormatError) as exception:
        input_error(f'potential {potential}: {exception}')
    try:
        model = read_restart_xyz('model.xyz')
    except (OSError, FormatError) as exception:
        input_error(f'model.xyz: {exception}')
    unknown = sorted(set(model['species']) - set(species))
    if unknown:
        input_error(f'model.xyz: species {unknown} are not in the potential ({species})')
    return parsed['stages'], model


def recorded(replay: pathlib.Path, name: str) -> pathlib.Path:
    path = replay / name
    if not path.is_file():
        sys.stderr.write(f'replay: no recorded {name} in {replay}\n')
        sys.exit(2)
    return path


def thermo_recording(replay: pathlib.Path) -> tuple[list[str], list[str]]:
    """The header lines before the first data row, and all data rows, of the recorded thermo.out."""
    header, rows = [], []
    for line in recorded(replay, 'thermo.out').read_text().splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith('#'):
            if not rows:
                header.append(line)
            continue
        rows.append(line)
    return header, rows


def nan_row(row: str) -> str:
    values = row.split()
    return ' '.join(['nan', 'nan', 'nan', *values[3:]])


def restart_text(model: dict) -> str:
    from ase.data import atomic_masses, atomic_numbers

    species = model['species']
    masses = model['masses'] if model['masses'] is not None else [atomic_masses[atomic_numbers[s]] for s in species]
    velocities = model['velocities'] if model['velocities'] is not None else [[0.0, 0.0, 0.0]] * len(species)
    groups = model['groups']
    properties = 'species:S:1:pos:R:3:mass:R:1:vel:R:3' + (f':group:I:{groups.shape[1]}' if groups is not None else '')
    lattice = ' '.join(f'{v:g}' for v in model['cell'].reshape(9))
    pbc = ' '.join('T' if p else 'F' for p in model['pbc'])
    lines = [str(len(species)), f'pbc="{pbc}" Lattice="{lattice}" Properties={properties}']
    for i, symbol in enumerate(species):
        tokens = [symbol, *(f'{v:g}' for v in model['positions'][i]), f'{masses[i]:g}',
                  *(f'{v:g}' for v in velocities[i])]
        if groups is not None:
            tokens.extend(str(int(g)) for g in groups[i])
        lines.append(' '.join(tokens))
    return '\n'.join(lines) + '\n'


def main() -> int:
    stages, model = read_inputs()
    replay = pathlib.Path(os.environ.get('MLCAMPAIGN_GPUMD_REPLAY_DIR', ''))
    if not os.environ.get('MLCAMPAIGN_GPUMD_REPLAY_DIR') or not replay.is_dir():
        sys.stderr.write('replay: set MLCAMPAIGN_GPUMD_REPLAY_DIR to a folder of recorded GPUMD outputs\n')
        return 2
    mode = os.environ.get('MLCAMPAIGN_GPUMD_REPLAY_STOP', '').strip().lower()
    total = sum(stage['run'] for stage in stages if 'run' in stage)
    stop_at = total // 2 if mode == 'walltime' and model['velocities'] is None else None
    nan_from = total // 2 if mode == 'blowup' else None
    natoms = len(model['species'])

    print('***************************************************************')
    print('*                 Welcome to use GPUMD                        *')
    print('*                      Version 5.6                            *')
    print('*      (replay stand-in: recorded outputs, no dynamics)       *')
    print('***************************************************************')
    thermo_rows = None
    done = 0
    total_time = 0.0
    for stage in stages:
        if 'run' not in stage:
            continue
        steps = stage['run']
        executed = steps if stop_at is None else max(0, min(steps, stop_at - done))
        interval = stage.get('dump_thermo')
        if interval:
            if thermo_rows is None:
                header, rows = thermo_recording(replay)
                thermo_rows = (header, itertools.cycle(rows))
            header, rows = thermo_rows
            with open('thermo.out', 'a') as handle:
                for line in header:
                    handle.write(line + '\n')
                for row in range(1, executed // interval + 1):
                    line = next(rows)
                    if nan_from is not None and done + row * interval > nan_from:
                        line = nan_row(line)
                    handle.write(line + '\n')
        restart = stage.get('dump_restart')
        if restart and executed >= restart:
            pathlib.Path('restart.xyz').write_text(restart_text(model))
        if executed < steps:
            sys.stdout.flush()
            sys.stderr.write(f'replay: stopped at step {done + executed} of {total} (walltime stand-in)\n')
            return 143
        for keyword, names in OUTPUTS.items():
            if keyword in stage:
                for name in names:
                    with open(recorded(replay, name)) as source, open(name, 'a') as target:
                        shutil.copyfileobj(source, target)
        dumps = stage.get('dump_xyz')
        for dump in dumps if isinstance(dumps, list) else [dumps] if dumps else []:
            shutil.copyfile(recorded(replay, 'dump.xyz'), dump['file'])
        time_used = 1e-3 * steps
        total_time += time_used
        print(f'Time used for this run = {time_used:g} second.')
        print(f'Speed of this run = {natoms * steps / time_used:g} atom*step/second.')
        done += steps
    print('Finished executing the commands in run.in.')
    print(f'Time used = {total_time:f} s.')
    print('Finished running GPUMD.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
