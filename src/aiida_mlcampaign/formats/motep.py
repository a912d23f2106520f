"""motep 0.2.0's settings files (TOML, written) and its stdout (read). No AiiDA import.

motep prints, per training step, the loss after every optimiser iteration and an error table; the last
table is the training error of the final potential. These readers turn that into plain dicts so the
parser stays thin.
"""

from __future__ import annotations

import ast
import re

from ase.data import atomic_numbers

#: Level2MTP -> LLS -> BFGS -> LLS: scipy's L-BFGS-B stops at once on small losses (its ``tol`` is a relative
#: decrease), BFGS converges on the gradient (measured: level 08 Cu, 874 iterations, 0.19 meV/atom).
DEFAULT_STEPS = (
    {'method': 'Level2MTP', 'optimized': ['radial_coeffs']},
    {'method': 'LLS', 'optimized': ['species_coeffs', 'moment_coeffs']},
    {'method': 'BFGS', 'optimized': ['species_coeffs', 'radial_coeffs', 'moment_coeffs'],
     'kwargs': {'jac': True, 'options': {'maxiter': 1000}}},
    {'method': 'LLS', 'optimized': ['species_coeffs', 'moment_coeffs']},
)

TRAIN_DEFAULTS = {
    'seed': 42,
    'engine': 'cext',
    'max_iter': 1000,
    'energy_weight': 1.0,
    'forces_weight': 0.01,
    'stress_weight': 0.001,
}
ENGINES = ('cext', 'numpy', 'numba', 'jax')


def check_train_settings(settings: dict) -> dict:
    """Complete ``settings`` with the defaults; raise ValueError naming the bad key."""
    unknown = sorted(set(settings) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f'settings: unknown key(s) {unknown}; known: {sorted(TRAIN_DEFAULTS)}')
    merged = {**TRAIN_DEFAULTS, **settings}
    for key in ('energy_weight', 'forces_weight', 'stress_weight'):
        if not isinstance(merged[key], (int, float)) or merged[key] < 0:
            raise ValueError(f'settings.{key}: must be a number >= 0, got {merged[key]!r}')
    if not isinstance(merged['max_iter'], int) or merged['max_iter'] < 1:
        raise ValueError(f"settings.max_iter: must be an integer >= 1, got {merged['max_iter']!r}")
    if not isinstance(merged['seed'], int):
        raise ValueError(f"settings.seed: must be an integer, got {merged['seed']!r}")
    if merged['engine'] not in ENGINES:
        raise ValueError(f"settings.engine: {merged['engine']!r} is not one of {ENGINES}")
    return merged


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_toml_value(v) for v in value) + ']'
    return repr(value)


def train_toml(species: list[str], settings: dict, training: str = 'training.cfg', initial: str = 'initial.mtp',
               final: str = 'final.mtp') -> str:
    """``motep train`` settings: our cfg types follow ``species``, which motep needs as atomic numbers."""
    settings = check_train_settings(settings)
    numbers = [atomic_numbers[symbol] for symbol in species]
    lines = [
        '[common]',
        f"seed = {settings['seed']}",
        f"engine = {_toml_value(settings['engine'])}",
        f'species = {_toml_value(numbers)}',
        '',
        '[configurations]',
        f'training = {_toml_value(training)}',
        '',
        '[potentials]',
        f'initial = {_toml_value(initial)}',
        f'final = {_toml_value(final)}',
        '',
        '[loss]',
        *(f'{key} = {_toml_value(float(settings[key]))}'
          for key in ('energy_weight', 'forces_weight', 'stress_weight')),
    ]
    for step in DEFAULT_STEPS:
        lines += ['', '[[steps]]', f"method = {_toml_value(step['method'])}",
                  f"optimized = {_toml_value(step['optimized'])}"]
        if 'kwargs' in step:
            lines += ['[steps.kwargs]', 'jac = true', '[steps.kwargs.options]', f"maxiter = {settings['max_iter']}"]
    return '\n'.join(lines) + '\n'


def evaluate_toml(species: list[str], potential: str = 'potential.mtp', initial: str = 'frames.cfg',
                  final: str = 'predictions.cfg', engine: str = 'cext') -> str:
    numbers = [atomic_numbers[symbol] for symbol in species]
    return '\n'.join([
        '[common]', f'engine = {_toml_value(engine)}', f'species = {_toml_value(numbers)}', '',
        '[configurations]', f'initial = {_toml_value(initial)}', f'final = {_toml_value(final)}', '',
        '[potentials]', f'final = {_toml_value(potential)}',
    ]) + '\n'


_SECTION = re.compile(r'^(Energy \(eV\)|Energy per atom \(eV/atom\)|Forces per component \(eV/angstrom\)|'
                      r'Stress per component \(GPa\)):\s*$')
_SECTION_KEYS = {
    'Energy (eV)': 'energy',
    'Energy per atom (eV/atom)': 'energy_per_atom',
    'Forces per component (eV/angstrom)': 'forces',
    'Stress per component (GPa)': 'stress',
}
_LOSS = re.compile(r'^loss (\d+): (\S+)$')
_STEP_TIME = re.compile(r'^Time \(step (\d+): (\w+)\): (\S+) \(s\)$')
_TOTAL_TIME = re.compile(r'^Time \(total\): (\S+) \(s\)$')
_ERROR = re.compile(r'^\s+(MAX|ABS|RMS) error: (\S+)$')
_COUNT = re.compile(r'^\s+Errors checked for (\d+) (configurations|atoms)$')


def read_motep_log(text: str) -> dict:
    """Steps (method, losses, time, error tables), the final error table and the total time of a motep run.

    The error dict uses keys like ``energy_per_atom_rmse`` (eV/atom), ``forces_rmse`` (eV/Å), ``stress_rmse`` (GPa)
    and ``*_mae``/``*_max``. Raises ValueError if the text holds no error table (not a finished run).
    """
    steps: list[dict] = []
    current = None
    section = None
    header: list[str] | None = None
    for line in text.splitlines():
        if header is not None or (line.startswith('{') and current_is_closed(current)):
            # A step starts with its settings, pretty-printed as a Python dict over one or more lines.
            header = (header or []) + [line]
            if line.rstrip().endswith('}') and _balanced(''.join(header)):
                step = ast.literal_eval(' '.join(header))
                current = {'method': step.get('method'), 'losses': [], 'errors': {},
                           'optimizer': step.get('kwargs', {}).get('method', step.get('method')),
                           'maxiter': step.get('kwargs', {}).get('options', {}).get('maxiter')}
                steps.append(current)
                section, header = None, None
        elif current is not None and (match := _LOSS.match(line)):
            current['losses'].append(float(match.group(2)))
        elif match := _SECTION.match(line):
            section = _SECTION_KEYS[match.group(1)]
            if current is None:  # `motep evaluate` prints tables without a step header
                current = {'method': 'evaluate', 'losses': [], 'errors': {}}
                steps.append(current)
        elif section and current is not None and (match := _ERROR.match(line)):
            name = {'MAX': 'max', 'ABS': 'mae', 'RMS': 'rmse'}[match.group(1)]
            current['errors'][f'{section}_{name}'] = float(match.group(2))
        elif section and current is not None and (match := _COUNT.match(line)):
            current['errors'][f'{section}_count'] = int(match.group(1))
        elif current is not None and (match := _STEP_TIME.match(line)):
            current['time'] = float(match.group(3))
            section = None
    total = next((float(m.group(1)) for m in map(_TOTAL_TIME.match, text.splitlines()) if m), None)
    with_errors = [step for step in steps if step['errors']]
    if not with_errors:
        raise ValueError('motep output: no error table found; the run did not finish')
    return {'steps': steps, 'errors': with_errors[-1]['errors'], 'total_time': total}


def current_is_closed(step) -> bool:
    """A new step header may only start once the previous step printed its time (or before any step)."""
    return step is None or 'time' in step or step['method'] == 'evaluate'


def _balanced(text: str) -> bool:
    return text.count('{') == text.count('}') and text.count('[') == text.count(']')


def optimiser_iterations(log: dict) -> tuple[int, int | None] | None:
    """(iterations, maxiter) of the gradient-optimiser step (motep logs BFGS as ``minimize``), None without one."""
    for step in log['steps']:
        if step['method'] in ('minimize', 'BFGS', 'L-BFGS-B'):
            return max(len(step['losses']) - 1, 0), step.get('maxiter')
    return None
