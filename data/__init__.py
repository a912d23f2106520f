"""AiiDA node types of the plugin (entry points ``mlcampaign.*`` in ``aiida.data``).

``TrainingSetData`` (frames with energies, forces, virials and their provenance), ``MtpPotentialData`` (an
``.mtp`` file with its species and checksum; untrained templates in ``aiida_mlcampaign.mtp``) and ``NepPotentialData``
(``nep.txt``). The file formats they store are read and written by :mod:`aiida_mlcampaign.formats`.
"""
