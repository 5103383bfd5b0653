"""Models as pure ``init(rng) -> params`` / ``apply(params, x) -> logits`` pairs."""
