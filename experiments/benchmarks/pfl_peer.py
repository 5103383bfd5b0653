r"""The pfl-research peer of bench_peers.py: a FedAvg round as a pfl user writes it (Apple's
``pfl``: ``FederatedAveraging`` over a ``PyTorchModel`` in a ``SimulatedBackend``), on the bench's
workloads.

  /path/to/peer-venv/bin/python experiments/benchmarks/pfl_peer.py \
      --spec '{"model": "lstm", ...}'

Runs in a separate virtualenv holding pfl (``pip install torch==2.13.0 numpy pfl==0.6.0``;
neither is a dependency of fedjax-sim). It imports torch_peer.py's ``build`` (this folder), so the
models (LEAF's 2x256 LSTM with embedding 8, the course CNN, MLP 64-128-10) and the synthetic data
are literally the PyTorch peer's, wrapped in the ``loss``/``metrics`` methods pfl's
``PyTorchModel`` calls (cross-entropy on the logits). The round is pfl's FedAvg with no DP, no
evaluation and no metrics output: a ``FederatedDataset`` of the ``clients`` users sampled
``minimize_reuse`` (pfl's recommended sampler: C distinct users per round), each user exactly
J local SGD steps (``local_num_steps=J``, batch size B, learning rate ``lr``, no momentum), the
deltas averaged with pfl's default weight 1 per user (equal client sizes: plain FedAvg) and
applied by the central optimizer, SGD at lr 1. A user's dataset for the round is J batches of B
examples drawn as torch_peer.py draws them (B distinct examples per step), built in pfl's
``make_dataset_fn`` when the user is sampled: pfl's ``Dataset`` iterates a user's data in order
and ``local_num_steps`` stops at the end of it, so the user's full 500 examples would give the
CNN (J=8, B=64) a last step of 52, not 64.

It runs one warm-up round (pfl's iteration 0, which also evaluates each user before and after
training: pfl evaluates at every iteration divisible by ``evaluation_frequency``, which is set
past any run), prints ``ready <seconds> pfl <version> torch <version> threads <n>``, then serves:
for every line read on stdin it runs one round (one central iteration) and prints its seconds,
so that bench_peers.py can alternate its rounds with ours. A round is one call of
pfl's own training loop, ``FederatedAveraging.run``, with ``central_num_iterations`` set one past
the algorithm's current iteration: ``run`` resumes from the algorithm's iteration counter (as its
docstring says of a second call), runs that one iteration (sample the cohort, train every user,
sum, average, central step) and stops. Threads: all cores (``torch.get_num_threads()``,
PyTorch's default), as a user would run it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import pfl
import torch
import torch.nn.functional as F  # noqa: N812
from pfl.aggregate.simulate import SimulatedBackend
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
from pfl.data import FederatedDataset, get_user_sampler
from pfl.data.pytorch import PyTorchTensorDataset
from pfl.hyperparam import NNTrainHyperParams
from pfl.metrics import Weighted
from pfl.model.pytorch import PyTorchModel
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import build  # noqa: E402


class PflModule(nn.Module):
    """torch_peer.py's model with the ``loss`` and ``metrics`` methods pfl's PyTorchModel calls."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def loss(self, x, y):
        self.train()
        return F.cross_entropy(self(x), y)

    @torch.no_grad()
    def metrics(self, x, y):  # only pfl's evaluation at iteration 0 (the warm-up) calls it
        self.eval()
        return {"loss": Weighted(F.cross_entropy(self(x), y, reduction="sum").item(), len(y))}


def federated_dataset(x, y, spec, rng):
    """pfl's FederatedDataset of ``spec["clients"]`` users, user k holding (x[k], y[k])."""
    n, b, j = spec["examples"], spec["B"], spec["J"]

    def make_dataset_fn(user_id):  # the user's J batches of B for this round, as torch_peer.py
        idx = torch.from_numpy(np.concatenate([rng.choice(n, b, replace=False) for _ in range(j)]))
        return PyTorchTensorDataset((x[user_id, idx], y[user_id, idx]), user_id=user_id)

    sampler = get_user_sampler("minimize_reuse", list(range(spec["clients"])))
    return FederatedDataset(make_dataset_fn, sampler)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the bench workload as JSON")
    args = parser.parse_args()
    spec = json.loads(args.spec)
    np.random.seed(0)  # pfl's algorithm, backend and dataset draw their seeds from numpy's
    torch.manual_seed(0)
    net, x, y = build(spec)
    module = PflModule(net)
    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )
    training_data = federated_dataset(x, y, spec, np.random.default_rng(1))
    backend = SimulatedBackend(training_data=training_data, val_data=None)
    model_train_params = NNTrainHyperParams(
        local_learning_rate=spec["lr"],
        local_num_epochs=None,
        local_num_steps=spec["J"],
        local_batch_size=spec["B"],
    )
    algorithm_params = NNAlgorithmParams(
        central_num_iterations=0,  # set per round below
        evaluation_frequency=sys.maxsize,  # evaluates at iteration 0 only (the warm-up)
        train_cohort_size=spec["C"],
        val_cohort_size=None,
    )
    algorithm = FederatedAveraging()

    def one_round():
        # pfl's own loop, one central iteration at a time: `run` starts from the algorithm's
        # iteration counter (kept between calls), so a budget of counter + 1 iterations runs
        # exactly one (cohort, local training, aggregation, central step) and returns; the model
        # and its central optimizer carry over. No metrics to stdout (the protocol's channel).
        params = dataclasses.replace(
            algorithm_params, central_num_iterations=algorithm._current_central_iteration + 1
        )
        start = time.perf_counter()
        algorithm.run(
            algorithm_params=params,
            backend=backend,
            model=model,
            model_train_params=model_train_params,
            send_metrics_to_platform=False,
        )
        return time.perf_counter() - start

    seconds = one_round()
    print(f"ready {seconds:.3f} pfl {pfl.__version__} torch {torch.__version__} "
          f"threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    for _ in sys.stdin:
        print(f"{one_round():.6f}", flush=True)


if __name__ == "__main__":
    main()
