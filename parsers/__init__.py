"""Parsers of the plugin's CalcJobs (thin layers over the plain readers in ``aiida_mlcampaign.formats``)."""
