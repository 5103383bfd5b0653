"""Kept for config files written before issue 30 moved this module to `fedjax_sim.config.defaults`
(``from fedjax_sim.config_defaults import base_config, variant`` still works); new code imports
`fedjax_sim.config.defaults`."""

from fedjax_sim.config.defaults import VARIANTS, base_config, variant

__all__ = [
    "VARIANTS",
    "base_config",
    "variant",
]
