r"""Asynchronous SGD with a parameter server on LocalSGD's digits setting (K = 8 workers, H = 8
SGD-momentum steps of B = 16 per job): each job's duration is lognormal (sigma 0.5, mean 1),
the server adds every delta (from the model the worker pulled) as it arrives at server
learning rate 0.25, scaled by (1 + staleness)^-0.5 (FedAsync's polynomial staleness function);
56 rounds of K arrivals each = 40 epochs,
as configs/localsgd_digits.py. At server learning rate 1 (each arrival's whole delta; the
mean staleness is K - 1 = 7) the run diverges without the scaling and reaches 0.74 with it
in 20 epochs; 1/K (K arrivals move as far as one synchronous average) needs no scaling.

  python -m fedjax_sim --config configs/async_digits.py --workdir runs/async_digits

Stragglers instead: --config.speed.model=straggler --config.speed.straggler_fraction=0.25
--config.speed.slowdown=4; measured speeds: --config.speed.model=given
--config.speed.durations=1,1,1,1,1,1,2,4. No staleness scaling:
--config.asynchronous.staleness_scaling=none. FedAsync's own rule (Xie et al. 2019: x <-
(1 - a) x + a x_new, a = mixing * s(staleness)): --config.asynchronous.rule=fedasync
--config.asynchronous.mixing=0.6 --config.server.learning_rate=1.
The synchronous baseline under the same speeds: configs/localsgd_digits.py with the same
--config.speed.* (a round then waits for its slowest worker: the ledger's simulated time).
Smoke: --config configs/async_digits.py:smoke
"""

from fedjax_sim.config.presets import digits_workers


def get_config(arg=None):
    config = digits_workers("asyncsgd", arg)
    config.localsgd.sync_momentum = "keep"
    config.speed.model = "lognormal"
    config.asynchronous.staleness_scaling = "polynomial"
    config.server.learning_rate = 0.25
    return config
