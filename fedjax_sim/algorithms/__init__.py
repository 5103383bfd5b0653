"""Federated and centralized training algorithms as factories of pure functions."""
