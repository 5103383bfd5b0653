"""Experiments: one run from a config, its seeds, sweeps of runs and their reports."""
