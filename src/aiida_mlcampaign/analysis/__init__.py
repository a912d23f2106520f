"""Analysis of trajectories, potentials and GPUMD outputs: plain numpy functions, no AiiDA import.

The calcfunctions ``mlcampaign.analysis.*`` (``calculations/analysis_*.py``) wrap these so every
result is a node in the provenance graph; the functions here stay usable on any laptop.
"""
