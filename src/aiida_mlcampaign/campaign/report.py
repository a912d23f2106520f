"""The numbers of a campaign, in one plain dict (AiiDA-free: the ``report`` calcfunction stores what this returns).

Why a function of its own: the headline numbers of the study (each family's errors on the same test set, RDF and
VDOS overlap with DFT, D(T) and Ea, the speed ratio) are spread over a dozen analysis outputs with different
layouts. Gathered here once, the report page, ``campaign status`` and a user's script read one schema:

``campaign``, ``species``, ``labels`` (frames trained on / held out), ``families`` (per family: test and train
RMSE, iterations, labels added), ``errors`` (compare_errors as computed), ``rdf_overlap`` (per MD run, total and
per pair, against the AIMD at the same temperature), ``vdos_overlap`` (per temperature: each family against the
reference), ``diffusion`` (per MD run: D per species with its error and whether the run was diffusive),
``arrhenius`` (per family: Ea ± error), ``speed`` (atom-steps/s and the statements), ``warnings``.
"""

from __future__ import annotations

import typing as t

__all__ = ('summarize',)


def _family_rows(results: dict, families: list[str]) -> dict:
    rows = {}
    for family in families:
        row: dict[str, t.Any] = {}
        summary = results.get(f'al_{family}') or []
        if summary:
            last = summary[-1]
            row.update(iterations=len(summary), labels_added=sum(r.get('labels_added') or 0 for r in summary),
                       last_candidate_fraction=last.get('candidate_fraction'))
        final = results.get(f'final_{family}') or {}
        source = final or (summary[-1] if summary else {})
        for key in ('train_force_rmse', 'train_energy_rmse_per_atom', 'test_force_rmse', 'test_energy_rmse_per_atom'):
            row[key] = source.get(key)
        errors = (results.get('errors') or {}).get(family)
        if errors:
            row['test_errors'] = errors
        rows[family] = row
    return rows


def summarize(config: dict, results: dict, warnings: list[str], pool: dict) -> dict:
    """``results``: the campaign's analysis outputs as plain values, keyed as the campaign passes them
    (``errors``, ``final_<family>``, ``al_<family>``, ``rdf_<family>_<T>K``, ``vdos_<T>K``, ``diffusion_<family>_<T>K``,
    ``arrhenius_<family>[_<species>]``, ``speed``)."""
    learning = (config.get('stages') or {}).get('active_learning') or {}
    families = learning.get('order') or [name for name in ('mtp', 'nep') if learning.get(name) is not None]
    report: dict[str, t.Any] = {
        'campaign': (config.get('campaign') or {}).get('name'),
        'species': pool.get('species'),
        'labels': {'training_frames': pool.get('frames'), 'test_frames': pool.get('test_frames')},
        'families': _family_rows(results, families),
        'errors': results.get('errors') or {},
        'rdf_overlap': {},
        'vdos_overlap': {},
        'diffusion': {},
        'arrhenius': {},
        'speed': results.get('speed') or {},
        'warnings': list(warnings),
    }
    for key, value in results.items():
        if key.startswith('rdf_'):
            report['rdf_overlap'][key[4:]] = value.get('overlap', value)
        elif key.startswith('vdos_'):
            labels, matrix = value.get('labels') or [], value.get('overlap') or []
            if labels and matrix:
                reference = labels[0]
                report['vdos_overlap'][key[5:]] = {'reference': reference, **{
                    label: matrix[0][i] for i, label in enumerate(labels) if i}}
        elif key.startswith('diffusion_'):
            report['diffusion'][key[10:]] = value
        elif key.startswith('arrhenius_'):
            report['arrhenius'][key[10:]] = value
    return report
