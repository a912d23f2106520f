"""neppo, a PyTorch trainer of NEPs with GPUMD's file contract: what it does with each ``nep.in`` keyword; its log.

Pure functions (no AiiDA), written from neppo 1.0 (``neppo.nep_in``, MPL-2.0; read, not copied). ``neppo train
DIR`` reads GPUMD's ``nep.in``, ``train.xyz`` and ``test.xyz`` and writes ``nep.txt``, ``loss.out`` and the
``*_train.out``/``*_test.out`` parity files in GPUMD's formats, so :mod:`aiida_mlcampaign.formats.nep` writes its
input and reads its files. What differs, and is handled here:

* **Optimiser.** AdamW steps instead of SNES generations: ``generation`` is the number of steps (several values
  make training stages), ``batch`` the structures per step (default 32, GPUMD's 1000). The SNES keywords
  ``population``, ``sigma0``, ``initial_para`` and ``save_potential``/``import_q_scaler`` are *ignored* by neppo
  with a warning: they are refused here (:data:`REFUSED`), because a setting that silently does nothing is a
  wrong result waiting to happen. ``fine_tune``, ``atomic_v``, ``output_descriptor``, ``force_delta``,
  ``charge_vdw`` 1, ``charge_mode``'s flip flag and ``batch N 1`` (full batch) are not supported by neppo.
* **Keywords GPUMD does not have** (:data:`KEYWORDS`): ``seed`` (initial parameters and batches; a committee needs
  a different one per member), ``optimizer`` (``adamw`` only), ``learning_rate`` (start and end of a cosine
  decay, per stage if wanted), ``weight_decay`` and ``loss_form`` (``mse``, neppo's default, or ``rmse``,
  GPUMD's). ``lambda_*`` and ``learning_rate``/``weight_decay`` may take one value per stage.
* **Regularisation.** GPUMD adds L1/L2 terms with automatic weights when ``lambda_1``/``lambda_2`` are absent;
  neppo adds them only when given. With ``loss_form rmse`` and both given the loss equals GPUMD's.
* **No resume.** neppo saves no optimiser state (no ``nep.restart``); a run stopped at its walltime leaves the
  ``nep.txt`` of its last report, which is kept, but cannot be continued exactly.
* **Outputs.** ``*_train.out`` rows follow ``train.xyz`` (GPUMD reorders them by batches); ``loss.out`` names its
  columns in ``# columns`` header lines (one header per stage); the log (stdout) is neppo's own.
"""

from __future__ import annotations

import re

from .frames import FormatError, checked_float, checked_int

__all__ = ['DEFAULTS', 'KEYWORDS', 'REFUSED', 'STAGE_KEYWORDS', 'canonical_neppo_value', 'neppo_stages',
           'read_neppo_stdout']

#: Keywords neppo reads that GPUMD's ``nep`` does not have, in the order :func:`~.nep.nep_in` writes them.
KEYWORDS = ('seed', 'optimizer', 'learning_rate', 'weight_decay', 'loss_form')

_SNES = ('a setting of GPUMD\'s evolution strategy (SNES); neppo optimises with AdamW and would ignore it '
         '(use learning_rate and weight_decay)')
#: GPUMD keywords neppo ignores or cannot run, refused before submission: keyword -> why.
REFUSED = {
    'population': _SNES,
    'sigma0': _SNES,
    'initial_para': _SNES,
    'save_potential': ('neppo would ignore it: it rewrites nep.txt at every output_interval (and the best model '
                       'to nep_best.txt) instead of keeping numbered copies'),
    'import_q_scaler': 'neppo would ignore it: it fits q_scaler to the training set',
    'fine_tune': 'neppo 1.0 cannot fine-tune a foundation model; use GPUMD\'s nep for that',
    'atomic_v': 'not supported by neppo 1.0',
    'output_descriptor': 'not supported by neppo 1.0',
    'force_delta': 'not supported by neppo 1.0',
}

#: neppo's defaults for what it reads differently from GPUMD (``neppo.nep_in``): used to record the settings run.
DEFAULTS = {
    'batch': 32,
    'generation': 100000,
    'seed': 42,
    'optimizer': 'adamw',
    'learning_rate': [1e-2, 1e-4],
    'weight_decay': 0.0,
    'loss_form': 'mse',
}

#: Keywords that take one value for all stages or one per stage (``learning_rate``: two per stage).
STAGE_KEYWORDS = {'lambda_1': 1, 'lambda_2': 1, 'lambda_e': 1, 'lambda_f': 1, 'lambda_v': 1, 'lambda_shear': 1,
                  'lambda_q': 1, 'lambda_z': 1, 'learning_rate': 2, 'weight_decay': 1}


def _number(key: str, value, *, positive: bool = False) -> float:
    number = checked_float(key, value, low=0)
    if positive and number == 0:
        raise FormatError(f'{key}: must be positive, got {value!r}')
    return number


def _integer(key: str, value) -> int:
    return checked_int(key, value.strip() if isinstance(value, str) else value)


def neppo_stages(settings: dict) -> int:
    """Number of training stages: the number of ``generation`` values (1 when absent or a single value)."""
    generation = settings.get('generation')
    return len(generation) if isinstance(generation, (list, tuple)) else 1


def canonical_neppo_value(key: str, values: list, n_stages: int):
    """The canonical value of a keyword as neppo reads it, for the keywords whose reading differs from GPUMD's.

    ``values`` is the flat list of tokens or numbers; returns a scalar (one value) or a list (several, for
    stages). Raises :class:`FormatError` naming the keyword.
    """
    if key in REFUSED:
        raise FormatError(f'{key}: {REFUSED[key]}')
    if key == 'generation':
        steps = [_integer(key, v) for v in values]
        if not steps or any(s < 1 for s in steps):
            raise FormatError(f'{key}: neppo takes a positive number of AdamW steps per stage, got {values}')
        return steps[0] if len(steps) == 1 else steps
    if key == 'seed':
        _one(key, values)
        return _integer(key, values[0])
    if key == 'optimizer':
        _one(key, values)
        if str(values[0]) != 'adamw':
            raise FormatError(f'{key}: neppo supports only adamw, got {values[0]!r}')
        return 'adamw'
    if key == 'loss_form':
        _one(key, values)
        if str(values[0]) not in ('mse', 'rmse'):
            raise FormatError(f'{key}: expected mse or rmse, got {values[0]!r}')
        return str(values[0])
    if key == 'batch':
        if len(values) == 2 and _integer(f'{key} (use_full_batch)', values[1]) != 0:
            raise FormatError(f'{key}: neppo has no full-batch mode (batch N 1); give the batch size alone')
        size = _integer(key, values[0])
        if size < 1:
            raise FormatError(f'{key}: must be >= 1, got {size}')
        return size
    if key == 'charge_vdw':
        _one(key, values)
        if _integer(key, values[0]) != 0:
            raise FormatError(f'{key}: neppo supports only charge_vdw 0')
        return 0
    if key == 'charge_mode' and len(values) == 2 and _integer(f'{key} (flip)', values[1]) != 0:
        raise FormatError(f'{key}: neppo does not support flip_charge (the second value must be 0)')
    if key in STAGE_KEYWORDS:
        size = STAGE_KEYWORDS[key]
        if len(values) not in {size, size * n_stages}:
            allowed = f'{size}' if n_stages == 1 else f'{size} (all stages) or {size * n_stages} (one per stage)'
            raise FormatError(f'{key}: expected {allowed} value(s), got {len(values)}')
        numbers = [_number(key, v, positive=key == 'learning_rate') for v in values]
        return numbers[0] if len(numbers) == 1 else numbers
    raise KeyError(key)  # read as GPUMD reads it


def _one(key: str, values: list) -> None:
    if len(values) != 1:
        raise FormatError(f'{key}: expected one value, got {len(values)}')


# ================================================================================================ the log
_BANNER = re.compile(r'^=+ neppo (\S+) =+\s*$')
_BLOCK = re.compile(r'^=+ (\S.*?) =+\s*$')
_ROW = re.compile(r'^(\w[\w ()/.,-]*?)\s*: (.*)$')
_EXCEPTION = re.compile(r'^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt))(?:: (.*))?$')
_WARNING = re.compile(r'(\w*Warning): (.*)$')


def _seconds(text: str) -> float | None:
    match = re.match(r'^(\d+):(\d\d):(\d\d)', text.strip())
    if match is None:
        return None
    hours, minutes, seconds = (int(g) for g in match.groups())
    return float(3600 * hours + 60 * minutes + seconds)


def read_neppo_stdout(stdout: str, stderr: str = '') -> dict:
    """What ``neppo train`` logs (stdout) and, on failure, its Python traceback (stderr).

    Returns, with the keys of :func:`~.nep.read_nep_stdout` where they mean the same: ``version`` (neppo's,
    from the banner), ``torch_version``, ``device``, ``cpu_threads``, ``stages_started`` (``Training`` blocks),
    ``stages_finished`` (``Summary`` blocks), ``prediction_finished``, ``last_generation`` (step of the last
    progress row), ``progress_rows``, ``time_training_s`` (sum of the stages' wall times, whole seconds as
    logged), ``num_batches``, ``batch_size``, ``warnings`` (e.g. an ignored keyword) and ``errors`` (the
    exception that ended the run: ``kind``, ``text``).
    """
    result = {
        'version': None, 'torch_version': None, 'device': None, 'cpu_threads': None, 'stages_started': 0,
        'stages_finished': 0, 'prediction_finished': False, 'last_generation': None, 'progress_rows': 0,
        'time_initialization_s': None, 'time_training_s': None, 'time_predicting_s': None, 'num_devices': None,
        'num_batches': None, 'batch_size': None, 'warnings': [], 'errors': [],
    }
    block = None
    in_table = False
    for line in (stdout or '').splitlines():
        if (match := _BANNER.match(line)) is not None:
            result['version'], block, in_table = match.group(1), 'neppo', False
            continue
        if (match := _BLOCK.match(line)) is not None:
            block, in_table = match.group(1), False
            if block == 'Training':
                result['stages_started'] += 1
            elif block == 'Summary':
                result['stages_finished'] += 1
            continue
        if line.startswith('='):
            block, in_table = None, False
            continue
        tokens = line.split()
        if tokens[:2] == ['step', 'epoch']:
            in_table = True
            continue
        if in_table and tokens and tokens[0].isdigit():
            result['last_generation'] = int(tokens[0])
            result['progress_rows'] += 1
            continue
        match = _ROW.match(line)
        if match is None or block is None:
            continue
        label, value = match.group(1).strip(), match.group(2).strip()
        if block == 'System':
            if label == 'PyTorch':
                result['torch_version'] = value
            elif label == 'device':
                result['device'] = value
            elif label == 'CPU threads':
                result['cpu_threads'] = int(value.split()[0]) if value.split()[0].isdigit() else None
        elif block == 'Training':
            if label == 'epochs' and (found := re.search(r'of (\d+) batches', value)):
                result['num_batches'] = int(found.group(1))
            elif label == 'batch size' and value.isdigit():
                result['batch_size'] = int(value)
        elif block == 'Summary' and label == 'wall time':
            seconds = _seconds(value)
            if seconds is not None:
                result['time_training_s'] = (result['time_training_s'] or 0.0) + seconds
        elif block == 'Prediction' and label == 'finished':
            result['prediction_finished'] = True
    for line in (stderr or '').splitlines():
        if (match := _WARNING.search(line)) is not None:
            result['warnings'].append(f'{match.group(1)}: {match.group(2).strip()}')
    lines = [line.rstrip() for line in (stderr or '').splitlines() if line.strip()]
    if any(line.startswith('Traceback') for line in lines):
        for line in reversed(lines):
            if (match := _EXCEPTION.match(line)) is not None:
                result['errors'].append({'kind': match.group(1), 'text': (match.group(2) or '').strip()})
                break
        else:
            result['errors'].append({'kind': 'Traceback', 'text': lines[-1]})
    return result
