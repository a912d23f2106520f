"""Profiles, computers, codes and pseudopotentials: everything ``aiida-mlcampaign setup`` creates."""
