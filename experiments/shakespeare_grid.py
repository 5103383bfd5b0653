r"""The course's experiment grid on LEAF Shakespeare (real data, offline): local steps J with
J x rounds constant under LEAF's natural (non-IID) split and an IID reshuffle, participation,
skewed participation, FedSeq, personalization and robustness, each study one sweep.

  python experiments/shakespeare_grid.py --workdir runs/shakespeare_grid \
      --out experiments/results/shakespeare_grid [--only local_steps,participation] [--smoke]

Every cell is configs/fedavg_shakespeare.py (the main job: the 100 clients, 10 per round,
J = 4 SGD steps of B = 10, client lr 1, server SGD lr 1, evaluated on 1,989 test samples of
LEAF's per-client split) with 100 rounds (J x rounds = 400) and the study's changes. Each
study runs with `fedjax_sim.sweep.run_sweep` in WORKDIR/<study> (resumable per cell; a
finished cell is only read back). Writes OUT.md (a table per study: every cell's last
evaluation, the per-client mean and worst 10% on LEAF's split, rounds to 0.3) and
OUT_<study>.png (test accuracy against rounds; against epochs for the local-steps study).
``--smoke`` runs every study on the smoke config (seconds a cell), for testing the script.
"""

from __future__ import annotations

import argparse
import os
import sys

from fedjax_sim.xla_flags import apply_xla_flags

apply_xla_flags("auto", "lstm")  # before JAX starts: the LSTM's measured best on CPU

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fedjax_sim import config_files, outputs  # noqa: E402
from fedjax_sim.sweep import load_sweep, run_sweep  # noqa: E402
from fedjax_sim.sweep_report import cells_table, plot_sweep  # noqa: E402

ROUNDS = 100
TARGET = 0.3

# study -> (what it asks, the sweep, the fields every cell of it changes, the plot's x axis)
STUDIES = {
    "local_steps": (
        "J in {4, 8, 16} with J x rounds = 400, LEAF's natural split against an IID reshuffle",
        "data.partition=natural,iid;client.local_steps+rounds=4:100,8:50,16:25",
        {},
        "ledger_epochs",
    ),
    "participation": (
        "clients per round C in {5, 20} of the 100 (the C = 10 reference is local_steps' "
        "natural J = 4 cell), and C = 10 drawn with skewed probabilities p ~ Dirichlet(0.3)",
        "clients_per_round+selection.name+selection.gamma=5:uniform:1.0,20:uniform:1.0,"
        "10:skewed:0.3",
        {},
        "round",
    ),
    "fedseq": (
        "FedSeq: 2 superclients of 5 clients a round (greedy KL on the next-character "
        "histograms), each member J = 4 steps, at client lr 1 and 0.5",
        "client.learning_rate=1.0,0.5",
        {"algorithm": "fedseq", "clients_per_round": 2, "fedseq.max_clients": 5},
        "round",
    ),
    "personalization": (
        "FedAvg, Ditto (lambda 0.1) and FedPer (the output layer local); every client's model "
        "also fine-tuned for 4 local steps at each evaluation",
        "algorithm=fedavg,ditto,fedper",
        {"finetune.steps": 4, "eval_every": 10, "checkpoint_every": 10},
        "round",
    ),
    "robustness": (
        "20% of the clients send sign-flipped updates: the mean, the coordinate median and "
        "the noise-aware (FedGW-style) aggregator",
        "robust.aggregator=mean,median,noise_aware",
        {"robust.attack": "sign_flip", "robust.bad_fraction": 0.2},
        "round",
    ),
}
SMOKE_SWEEPS = {  # the same fields, fewer and shorter cells
    "local_steps": "data.partition=natural,iid;client.local_steps+rounds=2:4,4:2",
    "participation": "clients_per_round+selection.name+selection.gamma=2:uniform:1.0,3:skewed:0.3",
    "fedseq": "client.learning_rate=1.0",
    "personalization": "algorithm=fedavg,fedper",
    "robustness": "robust.aggregator=mean,noise_aware",
}


def study_config(study: str, smoke: bool):
    """The config of one study's sweep."""
    _, sweep, changes, _ = STUDIES[study]
    config = config_files.load_config("configs/fedavg_shakespeare.py" + (":smoke" if smoke else ""))
    if not smoke:
        config.rounds = ROUNDS
        config.eval_every = config.checkpoint_every = 5
    config_files.with_overrides(config, changes)
    if smoke and study == "fedseq":
        config.fedseq.max_clients = 2
    if smoke:
        config.eval_every = config.checkpoint_every = 2
    config.sweep = SMOKE_SWEEPS[study] if smoke else sweep
    return config


def report(workdir: str, out: str, studies) -> str:
    """Writes OUT.md (a section per study that has run) and OUT_<study>.png; returns the
    Markdown."""
    parts = ["# The course grid on LEAF Shakespeare", "",
             f"Every cell: configs/fedavg_shakespeare.py, {ROUNDS} rounds unless swept "
             "(J x rounds = 400). Test accuracy on 1,989 test samples of LEAF's split; "
             "client mean / worst 10%: the per-client accuracies on it."]  # fmt: skip
    for study in studies:
        question, _, changes, x = STUDIES[study]
        path = os.path.join(workdir, study)
        if not os.path.exists(os.path.join(path, "sweep.json")):
            continue
        summary, histories = load_sweep(path)
        fixed = ", ".join(f"{k}={v}" for k, v in changes.items())
        parts += ["", f"## {study}", "", question + (f" ({fixed})." if fixed else "."), "",
                  cells_table(summary, histories, TARGET),
                  "", f"![{study}]({os.path.basename(out)}_{study}.png)"]  # fmt: skip
        plot_sweep(f"{out}_{study}.png", summary, histories, "test_accuracy", x)
    text = "\n".join(parts) + "\n"
    outputs.write_bytes_atomic(out + ".md", text.encode())
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default="", help=f"comma-separated of {list(STUDIES)}")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    studies = [s for s in args.only.split(",") if s] or list(STUDIES)
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        parser.error(f"--only: unknown studies {unknown}; allowed: {list(STUDIES)}")
    for study in studies:
        print(f"study {study}: {STUDIES[study][0]}", flush=True)
        run_sweep(study_config(study, args.smoke), os.path.join(args.workdir, study),
                  progress=False)  # fmt: skip
        report(args.workdir, args.out, list(STUDIES))
    print(report(args.workdir, args.out, list(STUDIES)))


if __name__ == "__main__":
    main()
