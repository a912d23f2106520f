"""AiiDA plugin for machine-learned-potential campaigns.

One layer rule (``tests/test_layers.py``): this folder, ``src/aiida_mlcampaign/``, is the AiiDA-free science
library, importable and testable without a profile:

* :mod:`.formats` - readers and writers of every file the codes read or write (extxyz, pw.x, GPUMD, NEP,
  neppo, mlip-2/motep, SLURM), with line-numbered errors;
* :mod:`.analysis` - RDF, MSD and diffusion, VDOS and phonon DOS, thermal conductivity, model errors, speed;
* :mod:`.mtp` - MTP engine on motep (training, Jacobians, grades) and MaxVol selection;
* :mod:`.nep` - NEP evaluation on the CPU (calorine) and committees;
* :mod:`.structures` - structure builders (the argyrodite family) and rattled/strained variants;
* :mod:`.exploration` - the exploration MD driver of both families (console script ``mlcampaign-explore``).

The plugin, everything that imports ``aiida``, lives in the repository's top-level folders and is mapped into
this package by ``package-dir``: ``aiida_mlcampaign.workchains`` (``workchains/``), ``.calculations``
(``calculations/``), ``.parsers`` (``parsers/``), ``.setup`` (``setup/``), ``.data`` (``data/``, node types)
and ``.cli`` (``cli/``, the ``aiida-mlcampaign`` command).
"""

__version__ = "0.1.0"
