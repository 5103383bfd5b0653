"""Running rounds: the simulate loop, checkpoints, evaluation, the ledger and the outputs."""
