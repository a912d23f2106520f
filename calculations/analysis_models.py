"""Comparing models as calcfunctions: label errors with a parity figure, and MD speed per model.

The numbers come from :mod:`aiida_mlcampaign.analysis.errors` and :mod:`aiida_mlcampaign.analysis.speed`;
these functions only move data between nodes and them. Model names are the keyword names, so they
become the link labels of the inputs (``compare_errors(reference=dft, mtp=..., nep=...)``).
"""

from __future__ import annotations

import json

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.analysis import errors as error_analysis
from aiida_mlcampaign.analysis import speed as speed_analysis
from aiida_mlcampaign.calculations.analysis_common import array_node, figure_node
from aiida_mlcampaign.data.training_set import TrainingSetData

__all__ = ('compare_errors', 'compare_speed')

_LAYOUT = ('natoms', 'cells', 'pbc', 'energies', 'stresses', 'species_index', 'positions', 'forces')


def _arrays(node: TrainingSetData) -> dict:
    arrays = {name: node.get_array(name) for name in _LAYOUT}
    arrays['species'] = node.species
    return arrays


@calcfunction
def compare_errors(reference: TrainingSetData, **predictions) -> dict:
    """Errors of each model's predictions against the reference labels, and a parity figure.

    :param reference: the labelled frames (e.g. the DFT test set).
    :param predictions: one ``TrainingSetData`` per model (keyword = model name) with the *same* frames and
        the model's labels — ``MotepEvaluateCalculation.outputs.predictions``, ``evaluate_nep(...).predictions``.

    Outputs ``errors`` (Dict {model: {energy/force/virial RMSE, MAE, max; force RMSE per element; counts}};
    the unit is in every key: meV/atom for energy and virial per atom — virial = −V·stress / natoms, components
    xx yy zz yz xz xy — and meV/Å per force component), ``parity`` (ArrayData of reference and predicted
    values in eV/atom and eV/Å, units in its ``units`` attribute) and ``figure`` (PNG, ``parity.png``).
    Frames are checked to be the same (atom counts, elements, cells, positions) before any error is computed.
    """
    if not isinstance(reference, TrainingSetData):
        raise ValueError(f'reference: expected a TrainingSetData, got {type(reference).__name__}')
    if not predictions:
        raise ValueError('predictions: give at least one model, e.g. compare_errors(reference=..., mtp=...)')
    models = {}
    for model, node in predictions.items():
        if not isinstance(node, TrainingSetData):
            raise ValueError(f'{model}: expected a TrainingSetData of predictions, got {type(node).__name__}')
        models[model] = _arrays(node)
    ref = _arrays(reference)
    metrics = {model: error_analysis.error_metrics(ref, arrays, model) for model, arrays in models.items()}
    parity = error_analysis.parity_arrays(ref, models)
    parity_node = array_node(**parity)
    units = {name: 'eV/Angstrom' if name.endswith('eV_per_A') else 'eV/atom' for name in parity}
    units['force_element_index'] = 'index into the species attribute'
    parity_node.base.attributes.set('units', units)
    parity_node.base.attributes.set('species', reference.species)
    parity_node.base.attributes.set('models', list(models))
    return {
        'errors': orm.Dict(metrics),
        'parity': parity_node,
        'figure': figure_node(error_analysis.parity_figure(parity, list(models), metrics), 'parity.png'),
    }


def _record(model: str, node) -> dict:
    """A speed record from a Dict, or from a text file (GPUMD stdout, LAMMPS log, exploration summary.json)."""
    if isinstance(node, orm.Dict):
        return node.get_dict()
    if isinstance(node, orm.SinglefileData):
        text = node.get_content()
        if 'atom*step/second' in text:
            return {'gpumd_stdout': text}
        if 'Loop time of' in text:
            return {'lammps_log': text}
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(
                f'{model}: {node.filename} is neither a GPUMD stdout, a LAMMPS log nor an exploration summary.json'
            ) from None
    raise ValueError(f'{model}: expected a Dict or a SinglefileData, got {type(node).__name__}')


@calcfunction
def compare_speed(**runs) -> dict:
    """MD speed of each model in atom-steps/s, ratios to the slowest, and a bar figure.

    :param runs: one input per model (keyword = model name): a ``Dict`` — ``{'atom_steps_per_s': x}``, an
        exploration ``statistics`` Dict (``summary.json``), ``{'gpumd_stdout': text}``, ``{'lammps_log': text}``
        or a parsed ``runs`` list; optional ``run`` (index of the run to use, default all), ``label`` and
        ``hardware`` — or a ``SinglefileData`` of a GPUMD stdout, LAMMPS log or ``summary.json``.

    Output ``table`` (Dict: models fastest first, ``atom_steps_per_s``, ``ratio_to_slowest``, ``statements``
    like "NEP 41.0x faster than MTP", and per-model ``details``) and ``figure`` (PNG).
    """
    if not runs:
        raise ValueError('runs: give at least one model, e.g. compare_speed(nep=..., mtp=...)')
    details = {}
    for model, node in runs.items():
        record = _record(model, node)
        run = record.pop('run', None) if isinstance(record, dict) else None
        try:
            details[model] = speed_analysis.speed_from_record(record, run)
        except ValueError as exception:
            raise ValueError(f'{model}: {exception}') from None
        details[model].pop('runs', None)
    table = speed_analysis.compare_speeds({model: d['atom_steps_per_s'] for model, d in details.items()})
    table['details'] = details
    table['units'] = {'atom_steps_per_s': 'atom-steps per second (atoms x MD steps / wall time)'}
    labels = {model: d.get('hardware') or d.get('label') or '' for model, d in details.items()}
    return {
        'table': orm.Dict(table),
        'figure': figure_node(speed_analysis.speed_figure(table, labels), 'speed.png'),
    }
