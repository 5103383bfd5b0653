"""Models as `fedjax_sim.models.model.Model` pairs of pure functions over variables:
``init(rng) -> {"params", "state"}`` and ``apply(variables, x, *, train, rng, mask) -> (logits,
new_state)``; `fedjax_sim.models.registry.build` makes each one from ``config.model``."""
