"""The campaign file ``campaign.yaml``: a pydantic schema, errors naming the YAML path and line, the plan.

AiiDA-free (``tests/test_layers.py``): ``aiida-mlcampaign campaign validate`` checks a file with
:func:`load_config` alone; the AiiDA-side preflight (codes, computers, pseudopotentials) is
``aiida_mlcampaign.setup.campaign_preflight``. The fields are documented in ``docs/campaign.md``.
"""

from aiida_mlcampaign.campaign.config import (
    FAMILIES,
    CampaignConfig,
    ConfigError,
    PlanRow,
    Problem,
    load_config,
    parse_config,
)

__all__ = ('FAMILIES', 'CampaignConfig', 'ConfigError', 'PlanRow', 'Problem', 'load_config', 'parse_config')
