"""Moment Tensor Potential (MTP) tools that need neither AiiDA nor the mlip-2 binaries.

* :mod:`.selection` - pure numpy: mlip-2-style MaxVol active set with the regularising
  ``init_threshold * identity`` start, extrapolation grades, ``mlp select-add`` emulation,
  threshold masks for exploration frames and a minimum-distance filter.
* :mod:`.engine` - motep-based (0.2.0) training, evaluation, energy Jacobians, grading and
  selection, with workarounds for the motep 0.2.0 defects listed in the shared
  ``docs/mtp-formats.md`` section 7. Import it explicitly; it imports motep.

The CalcJob/WorkChain drivers call these functions; nothing here touches the AiiDA database.
"""
