"""The compiled round and its parts: tasks, local steps, aggregation, optimizers, the engine."""
