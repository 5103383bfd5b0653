"""Kept for config files written before issue 30 moved this module to `fedjax_sim.config.presets`
(``from fedjax_sim.config_presets import digits_workers`` still works); new code imports
`fedjax_sim.config.presets`."""

from fedjax_sim.config.presets import (
    cifar100_federated,
    cifar100_workers,
    digits_federated,
    digits_workers,
    shakespeare_main_job,
)

__all__ = [
    "cifar100_federated",
    "cifar100_workers",
    "digits_federated",
    "digits_workers",
    "shakespeare_main_job",
]
