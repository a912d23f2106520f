"""A ``nep`` run that starts from an existing model: ``nep.restart`` and the architecture the run must keep.

``nep`` reads the parameters of ``nep.restart`` (resume) or ``nep.txt`` (prediction) by the counts that ``nep.in``
implies and does not check them, so a mismatch is found only after the GPU queue, if at all. Pure functions (no
AiiDA), following ``shared/docs/gpumd-formats.md`` §2 and §4.2-4.3:

* :func:`read_nep_restart` counts the ``mu sigma`` pairs of a ``nep.restart`` and :func:`expected_parameter_count`
  says how many the settings imply (resume checks);
* :func:`apply_architecture` completes settings with the architecture of an existing model
  (:func:`~.nep_model.architecture_from_header`) and refuses any keyword that differs (prediction and resume).

Used by the ``mlcampaign.nep.train`` CalcJob before submission. Errors are
:class:`~aiida_mlcampaign.formats.frames.FormatError` naming the keyword or the line.
"""

from __future__ import annotations

import math

from .frames import FormatError
from .nep_common import _MODEL_TYPES, _read_text, parse_gpumd_version
from .nep_in import _check_settings, _same, fill_nep_defaults
from .nep_model import nep_parameter_count

__all__ = [
    'apply_architecture',
    'expected_parameter_count',
    'read_nep_restart',
]

#: Architecture keywords a prediction run or a resume takes from an existing model (doc §2, §4.2).
_MODEL_KEYWORDS = ('version', 'model_type', 'charge_mode', 'zbl', 'use_typewise_cutoff_zbl', 'cutoff', 'n_max',
                   'basis_size', 'l_max', 'neuron')


def apply_architecture(settings: dict, architecture: dict, source: str, version='5.6',
                       engine: str = 'gpumd') -> dict:
    """``settings`` (with ``type``) checked and completed with the architecture of an existing model.

    ``nep`` reads the parameters of ``nep.txt`` (prediction) or ``nep.restart`` (resume) by the counts that
    ``nep.in`` implies, so every architecture keyword must equal the model's: missing ones are taken from
    ``architecture`` (:func:`~.nep_model.architecture_from_header`), a given one that differs raises
    :class:`FormatError` naming the keyword and ``source`` (e.g. ``'the potential'``).
    """
    ver = parse_gpumd_version(version)
    checked = _check_settings(settings, ver, engine)
    out = dict(checked)
    for key in _MODEL_KEYWORDS:
        expected = architecture.get(key)
        given = checked.get(key)
        if key == 'charge_mode':
            given = given[0] if isinstance(given, list) else given
            given = given or None
            expected = expected or None
        if given is None:
            if expected is not None:
                out[key] = expected
            continue
        if expected is None or not _same(given, expected):
            raise FormatError(f'{key}: {given!r} does not match {source}\'s {expected!r} (the architecture keywords '
                              f'must equal those of {source})')
    return _check_settings(out, ver, engine)


def expected_parameter_count(settings: dict, version='5.6', engine: str = 'gpumd') -> int | None:
    """Trainable parameters (= lines of ``nep.restart``) of the model ``settings`` define; None if unknown."""
    full = fill_nep_defaults(settings, version, engine)
    charge = full.get('charge_mode', 0)
    charge = charge[0] if isinstance(charge, list) else charge
    counts = nep_parameter_count(full['version'], len(full['type']), full['n_max'], full['basis_size'],
                                 full['l_max'], full['neuron'], _MODEL_TYPES[full['model_type']], charge)
    return counts['n_parameters']


def read_nep_restart(text_or_path) -> dict:
    """``nep.restart`` (doc §4.3): one ``mu sigma`` pair per trainable parameter, no header.

    Returns ``{'n_parameters'}``; a line that is not two finite numbers raises :class:`FormatError` with its
    number, so a truncated or foreign file is refused before a GPU job reads garbage from it.
    """
    text = _read_text(text_or_path, 'nep.restart')
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise FormatError(f'nep.restart line {number}: expected two numbers (mu sigma), got {line.strip()[:60]!r}')
        try:
            values = [float(v) for v in tokens]
        except ValueError:
            raise FormatError(f'nep.restart line {number}: expected two numbers (mu sigma), '
                              f'got {line.strip()[:60]!r}') from None
        if not all(math.isfinite(v) for v in values):
            raise FormatError(f'nep.restart line {number}: not finite ({line.strip()!r})')
        count += 1
    if not count:
        raise FormatError('nep.restart: empty file')
    return {'n_parameters': count}
