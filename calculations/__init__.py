"""Calcfunctions and CalcJobs: structures and training sets with provenance."""
