"""Experiment configs: defaults and presets, their checks, and the algorithm they build."""
