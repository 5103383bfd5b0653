r"""The PyTorch peer of bench_round.py and bench_peers.py: a FedAvg round as the plain
per-client loop a researcher writes by hand (copy the global model, J SGD steps on the client's
batches, average the weighted deltas, server SGD at lr 1), on the bench's workloads.

  /path/to/torch-venv/bin/python experiments/benchmarks/torch_peer.py \
      --spec '{"model": "lstm", ...}'

Runs in a separate virtualenv holding PyTorch (``pip install torch==2.13.0 numpy``; PyTorch is
not a dependency of fedjax-sim). It builds the workload's model (the same shapes as
fedjax_sim's: LEAF's 2x256 LSTM with embedding 8, the course CNN, MLP 64-128-10) and synthetic
data of the bench's shapes, runs one warm-up round, prints ``ready <seconds>``, then serves: for
every line read on stdin it runs one round and prints its seconds, so that the bench can
alternate its rounds with its own formulations. Threads: all cores (``torch.get_num_threads()``,
PyTorch's default), as a user would run it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch
from torch import nn


class LeafLSTM(nn.Module):
    def __init__(self, vocab=80, embed=8, hidden=256, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        return self.out(h[:, -1])


def course_cnn(classes):
    return nn.Sequential(
        nn.Conv2d(3, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(1600, 384), nn.ReLU(), nn.Linear(384, 192), nn.ReLU(), nn.Linear(192, classes),
    )  # fmt: skip


def build(spec, seed=0):
    """(model, per-client inputs list, per-client labels list) of the bench's shapes."""
    rng = np.random.default_rng(seed)
    k, n = spec["clients"], spec["examples"]
    if spec["model"] == "lstm":
        x = torch.from_numpy(rng.integers(0, spec["classes"], (k, n, 80))).long()
        model = LeafLSTM(spec["classes"])
    elif spec["model"] == "cnn":  # NCHW, scaled to [0, 1] as a loader would
        x = torch.from_numpy(rng.integers(0, 256, (k, n, 3, 32, 32)).astype(np.float32) / 255)
        model = course_cnn(spec["classes"])
    else:
        x = torch.from_numpy(rng.integers(0, 17, (k, n, 64)).astype(np.float32))
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, spec["classes"]))
    y = torch.from_numpy(rng.integers(0, spec["classes"], (k, n))).long()
    return model, x, y


def fedavg_round(model, x, y, spec, rng):
    """One FedAvg round in place on ``model``: C sampled clients one after another."""
    global_params = [p.detach().clone() for p in model.parameters()]
    deltas = [torch.zeros_like(p) for p in global_params]
    loss_fn = nn.CrossEntropyLoss()
    sampled = rng.choice(spec["clients"], spec["C"], replace=False)
    for client in sampled:
        local = copy.deepcopy(model)
        opt = torch.optim.SGD(local.parameters(), lr=spec["lr"])
        for _ in range(spec["J"]):
            batch = torch.from_numpy(rng.choice(spec["examples"], spec["B"], replace=False))
            opt.zero_grad(set_to_none=True)
            loss_fn(local(x[client, batch]), y[client, batch]).backward()
            opt.step()
        with torch.no_grad():  # equal client sizes: equal weights
            for d, p, g in zip(deltas, local.parameters(), global_params, strict=True):
                d += (p - g) / spec["C"]
    with torch.no_grad():  # server SGD at lr 1 on the averaged delta
        for p, d in zip(model.parameters(), deltas, strict=True):
            p += d


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the bench workload as JSON")
    args = parser.parse_args()
    spec = json.loads(args.spec)
    torch.manual_seed(0)
    model, x, y = build(spec)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    fedavg_round(model, x, y, spec, rng)
    print(f"ready {time.perf_counter() - start:.3f} torch {torch.__version__} "
          f"threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    for _ in sys.stdin:
        start = time.perf_counter()
        fedavg_round(model, x, y, spec, rng)
        print(f"{time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
