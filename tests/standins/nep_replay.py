#!/usr/bin/env python3
"""STAND-IN for GPUMD's ``nep`` that REPLAYS RECORDED REAL OUTPUTS; it trains nothing. For tests only (no GPU here).

It runs like ``nep`` (no arguments, in the job directory) and checks its input like ``nep`` does:

* ``nep.in`` is read with ``aiida_mlcampaign.formats.nep.read_nep_in`` and ``train.xyz``/``test.xyz`` with
  ``formats.extxyz.read_extxyz`` (energy and forces on every frame, species among ``type``). Problems are reported
  as GPUMD does: an ``Input Error:`` block on stderr and exit status 1.
* Training (``prediction 0``): a recorded real run is taken from the folder named by the environment variable
  ``MLCAMPAIGN_NEP_REPLAY_DIR``: a ``nep.txt`` and ``loss.out`` (and optionally ``nep.restart``) written by real
  ``nep``, or subfolders ``member_0``, ``member_1``, ... holding one recorded run each (a committee). Members are
  dealt in turn: the replay folder keeps a counter file ``replay_counter`` (incremented under an exclusive
  ``flock``, so concurrent jobs are safe) and job ``j`` replays member ``j mod n``; ``nep.in`` stays plain GPUMD
  input. The recorded ``nep.txt`` must have exactly the species of ``type``, in order, or the job is refused. An
  architecture in ``nep.in`` that differs from the recorded model is only reported in stdout (the replay returns
  the recorded model). ``nep.txt``, ``loss.out`` and, if recorded, ``nep.restart`` are copied to the job folder.
* Prediction (``prediction 1``): the ``nep.txt`` in the job folder is used; only ``*_train.out`` are written.
* Parity files are not replayed but computed: the model is evaluated on the CPU with calorine's ``CPUNEP`` on the
  actual ``train.xyz`` (and ``test.xyz``) and written in GPUMD's layout (doc §4.4): ``energy`` (eV/atom),
  ``force`` (eV/Å), ``virial`` (eV/atom) and ``stress`` (GPa, positive = compressed), ``xx yy zz xy yz zx``,
  prediction then target, ``%g``, a missing virial/stress target as -1e6 (GPUMD ≥ v4.9.1). ``*_train.out`` rows
  follow GPUMD's batch order (energy-sorted, dealt round-robin) when ``batch`` < number of frames.
* stdout imitates ``nep``: banner with ``version``, batch lines, the progress table (the recorded ``loss.out``
  rows), the timing lines and ``Finished running nep.``.

``MLCAMPAIGN_NEP_REPLAY_STOP=walltime`` imitates a job killed by the scheduler: only the first half of the
recorded ``loss.out`` rows, ``nep.txt`` and ``nep.restart`` are written, no parity files and no finish line, exit
status 143. When the recorded run has no ``nep.restart`` (or one that does not fit the model), it is synthesised
from the recorded ``nep.txt`` (``mu`` = the parameters, ``sigma`` = 1e-3) so that it can be resumed;
``MLCAMPAIGN_NEP_REPLAY_VERSION`` sets the version printed in the banner (default 5.6).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
import sys
import time

import numpy as np

GPa_PER_EV_A3 = 160.21766208
MISSING = -1.0e6


class InputError(Exception):
    """Reported like GPUMD's PRINT_INPUT_ERROR."""


def input_error(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write('Input Error:\n    File:       nep_replay.py\n    Line:       0\n'
                     f'    Error text: {text}\n')
    sys.exit(1)


def line_1():
    print('---------------------------------------------------------------')


def read_frames(path: pathlib.Path, species: list[str]):
    from aiida_mlcampaign.formats.extxyz import read_extxyz
    from aiida_mlcampaign.formats.frames import FormatError

    try:
        frames = list(read_extxyz(path))
    except FormatError as error:
        raise InputError(f'{path.name}: {error}') from None
    for index, frame in enumerate(frames):
        unknown = sorted(set(frame.symbols) - set(species))
        if unknown:
            raise InputError(f'There is atom in train.xyz or test.xyz that are not in nep.in ({path.name} frame '
                             f'{index}: {unknown}).')
        if frame.energy is None:
            raise InputError(f"'energy' is missing in the second line of a frame ({path.name} frame {index}).")
        if frame.forces is None:
            raise InputError(f"'force' or 'forces' is missing in properties ({path.name} frame {index}).")
    print(f'Number of configurations = {len(frames)}.')
    return frames


def choose_recording(species: list[str]) -> pathlib.Path:
    root = os.environ.get('MLCAMPAIGN_NEP_REPLAY_DIR')
    if not root or not pathlib.Path(root).is_dir():
        raise InputError('MLCAMPAIGN_NEP_REPLAY_DIR must name a folder of recorded nep runs (stand-in).')
    root = pathlib.Path(root)
    members = sorted((p for p in root.glob('member_*') if p.is_dir()), key=lambda p: int(p.name.split('_')[1]))
    if not members:
        chosen = root
    else:
        with open(root / 'replay_counter', 'a+', encoding='utf-8') as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read().strip()
            job = int(text) if text else 0
            handle.seek(0)
            handle.truncate()
            handle.write(f'{job + 1}\n')
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
        chosen = members[job % len(members)]
    for name in ('nep.txt', 'loss.out'):
        if not (chosen / name).is_file():
            raise InputError(f'recorded run {chosen.name}: {name} is missing (stand-in).')
    return chosen


def check_model(header: dict, settings: dict, what: str) -> None:
    from aiida_mlcampaign.formats.nep import architecture_from_header, fill_nep_defaults

    if header['species'] != settings['type']:
        raise InputError(f'{what} has species {header["species"]} but nep.in type is {settings["type"]} '
                         '(same species in the same order needed).')
    wanted = fill_nep_defaults(settings)
    for key, value in architecture_from_header(header).items():
        given = wanted.get(key)
        if given is not None and given != value and not (key == 'charge_mode' and not value and not given):
            print(f'Warning (stand-in): nep.in {key} {given} differs from the replayed model\'s {value}.')


def model_parameters(text: str, header: dict) -> np.ndarray:
    body = [line for line in text.splitlines()[header['n_header_lines']:] if line.strip()]
    return np.array([float(v) for v in body[:header['n_parameters']]])


def synthesised_restart(text: str, header: dict) -> str:
    return ''.join(f'{mu:15.7e} {1e-3:15.7e}\n' for mu in model_parameters(text, header))


def evaluate(model: pathlib.Path, frames) -> list[dict]:
    from calorine.calculators import CPUNEP

    calculator = CPUNEP(str(model))
    results = []
    for frame in frames:
        atoms = frame.to_ase()
        atoms.calc = calculator
        n = len(atoms)
        volume = frame.volume
        stress = atoms.get_stress(voigt=False)  # eV/Å^3, tension positive
        virial = -stress * volume
        results.append({
            'energy': atoms.get_potential_energy() / n,
            'forces': atoms.get_forces(),
            'virial': virial,
            'n': n,
            'volume': volume,
        })
    return results


def six(matrix) -> list[float]:
    """GPUMD's component order in virial/stress files: xx yy zz xy yz zx."""
    m = np.asarray(matrix)
    return [m[0, 0], m[1, 1], m[2, 2], m[0, 1], m[1, 2], m[2, 0]]


def write_parity(split: str, frames, results, order) -> None:
    lines = {kind: [] for kind in ('energy', 'force', 'virial', 'stress')}
    for i in order:
        frame, result = frames[i], results[i]
        n, volume = result['n'], result['volume']
        lines['energy'].append(f'{result["energy"]:g} {frame.energy / n:g}')
        for f_pred, f_ref in zip(result['forces'], frame.forces, strict=True):
            lines['force'].append(' '.join(f'{v:g}' for v in (*f_pred, *f_ref)))
        v_pred = six(result['virial'])
        s_pred = [v / volume * GPa_PER_EV_A3 for v in v_pred]
        if frame.virial is not None:
            v_ref = six(frame.virial)
            s_ref = [v / volume * GPa_PER_EV_A3 for v in v_ref]
            v_ref = [v / n for v in v_ref]
        else:
            v_ref = s_ref = [MISSING] * 6
        lines['virial'].append(' '.join(f'{v:g}' for v in ([v / n for v in v_pred] + v_ref)))
        lines['stress'].append(' '.join(f'{v:g}' for v in (s_pred + s_ref)))
    for kind, rows in lines.items():
        pathlib.Path(f'{kind}_{split}.out').write_text('\n'.join(rows) + '\n', encoding='utf-8')


def main() -> int:
    from aiida_mlcampaign.formats.frames import FormatError
    from aiida_mlcampaign.formats.nep import gpumd_batch_order, read_loss, read_nep_header, read_nep_in, \
        read_nep_restart

    start = time.time()
    version = os.environ.get('MLCAMPAIGN_NEP_REPLAY_VERSION', '5.6')
    print('\n***************************************************************')
    print('*                 Welcome to use GPUMD                        *')
    print(f'*                     version {version:<32}*')
    print('*   This is a STAND-IN replaying recorded nep outputs         *')
    print('***************************************************************\n')
    line_1()
    print('Started running nep.')
    line_1()
    try:
        if not pathlib.Path('nep.in').is_file():
            raise InputError('Failed to open nep.in.')
        try:
            settings = read_nep_in('nep.in')
        except FormatError as error:
            raise InputError(str(error)) from None
        species = settings['type']
        prediction = bool(settings.get('prediction', 0))
        if not pathlib.Path('train.xyz').is_file():
            raise InputError('Failed to open train.xyz.')
        print('Started reading train.xyz')
        train = read_frames(pathlib.Path('train.xyz'), species)
        test = read_frames(pathlib.Path('test.xyz'), species) if pathlib.Path('test.xyz').is_file() else None

        if prediction:
            if not pathlib.Path('nep.txt').is_file():
                raise InputError('Failed to open nep.txt.')
            recording = None
        else:
            if 'fine_tune' in settings:
                for name in settings['fine_tune']:
                    if not pathlib.Path(name).is_file():
                        raise InputError(f'Failed to open {name} (fine_tune).')
            recording = choose_recording(species)
            print(f'Replaying the recorded run {recording.name} (stand-in).')
        model = pathlib.Path('nep.txt') if prediction else recording / 'nep.txt'
        model_text = model.read_text(encoding='utf-8')
        try:
            header = read_nep_header(model_text)
        except FormatError as error:
            raise InputError(f'nep.txt: {error}') from None
        check_model(header, settings, 'nep.txt' if prediction else f'the recorded model ({recording.name})')
        if not prediction and pathlib.Path('nep.restart').is_file() and 'fine_tune' not in settings:
            try:
                count = read_nep_restart('nep.restart')['n_parameters']
            except FormatError as error:
                raise InputError(str(error)) from None
            if count != header['n_parameters']:
                raise InputError(f'nep.restart holds {count} parameters, the model needs {header["n_parameters"]}.')
    except InputError as error:
        input_error(str(error))

    batch = settings.get('batch', 1000)
    batch = batch[0] if isinstance(batch, list) else batch
    n_batches = 1 if prediction else (len(train) - 1) // batch + 1
    print('Number of devices = 1')
    print(f'Number of batches = {n_batches}')
    line_1()
    print(f'Time used for initialization = {time.time() - start:f} s.')
    line_1()

    if prediction:
        line_1()
        print('Started predicting.')
        line_1()
        write_parity('train', train, evaluate(pathlib.Path('nep.txt'), train), range(len(train)))
        line_1()
        print(f'Time used for predicting = {time.time() - start:f} s.')
        line_1()
        line_1()
        print('Finished running nep.')
        line_1()
        return 0

    shutil.copyfile(recording / 'nep.txt', 'nep.txt')
    loss_lines = [line for line in (recording / 'loss.out').read_text(encoding='utf-8').splitlines()
                  if line.strip() and not line.lstrip().startswith('#')]
    read_loss(recording / 'loss.out')  # a broken recording is a broken test, not a replay
    stop = os.environ.get('MLCAMPAIGN_NEP_REPLAY_STOP', '')
    if stop == 'walltime':
        loss_lines = loss_lines[:max(1, len(loss_lines) // 2)]
    line_1()
    print('Started training.')
    line_1()
    print('Step    Total-Loss L1Reg-Loss L2Reg-Loss RMSE-E-Train RMSE-F-Train RMSE-V-Train RMSE-E-Test  RMSE-F-Test  '
          'RMSE-V-Test')
    for line in loss_lines:
        print(line.rstrip())
    pathlib.Path('loss.out').write_text('\n'.join(loss_lines) + '\n', encoding='utf-8')
    restart = recording / 'nep.restart'
    try:
        usable = restart.is_file() and read_nep_restart(restart)['n_parameters'] == header['n_parameters']
    except FormatError:
        usable = False
    if usable:
        shutil.copyfile(restart, 'nep.restart')
    else:
        pathlib.Path('nep.restart').write_text(synthesised_restart(model_text, header), encoding='utf-8')
    if stop == 'walltime':
        sys.stdout.flush()
        sys.stderr.write('slurmstepd: error: *** JOB CANCELLED DUE TO TIME LIMIT (stand-in) ***\n')
        return 143

    order = gpumd_batch_order([f.energy / f.natoms for f in train], batch)
    write_parity('train', train, evaluate(pathlib.Path('nep.txt'), train), order)
    if test is not None:
        write_parity('test', test, evaluate(pathlib.Path('nep.txt'), test), range(len(test)))
    line_1()
    print(f'Time used for training = {time.time() - start:f} s.')
    line_1()
    line_1()
    print('Finished running nep.')
    line_1()
    return 0


if __name__ == '__main__':
    sys.exit(main())
