"""Calcfunctions that give a work chain's bookkeeping outputs a creator in the provenance graph.

Why: a node that a work chain stores itself and returns has no creator: the graph cannot say where a stop reason
or a settings record came from, and a query from a result back to its inputs stops there. aiida-core's rule is
that work chains return and calculations create; these functions take what the work chain decided, as input
nodes, and create the outputs from them. Each is run with ``CrashSafeSteps.run_once`` under its own call link
label, so a restart reuses it.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ('dft_settings_record', 'failed_structures', 'iteration_statistics', 'loop_summary')


@calcfunction
def dft_settings_record(record: orm.Dict) -> orm.Dict:
    """The DFT settings every labelled frame shares (code, family, cutoffs, k-points, convergence), as stored on
    the training set's producer."""
    return orm.Dict(record.get_dict())


@calcfunction
def failed_structures(keys: orm.List) -> orm.List:
    """The keys of the structures whose DFT calculation failed and that were left out, sorted."""
    return orm.List(sorted(keys.get_list()))


@calcfunction
def loop_summary(summary: orm.List, stop_reason: orm.Str, last_iteration: orm.Int) -> dict:
    """An active-learning loop's record: one row per iteration, why it stopped, and its last iteration."""
    return {'summary': orm.List(summary.get_list()), 'stop_reason': orm.Str(stop_reason.value),
            'last_iteration': orm.Int(last_iteration.value)}


@calcfunction
def iteration_statistics(statistics: orm.Dict) -> orm.Dict:
    """A family's figures of one active-learning iteration (the keys of ``workchains.al_family.STATISTICS_KEYS``)."""
    return orm.Dict(statistics.get_dict())
