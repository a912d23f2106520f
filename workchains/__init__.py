"""Work chains: DFT labelling and AIMD (``mlcampaign.dft.*``)."""
