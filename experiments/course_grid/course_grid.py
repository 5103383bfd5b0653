r"""The course's experiment grid, each study one sweep: local steps J with J x rounds constant,
heterogeneity (LEAF's natural split or an IID reshuffle; CIFAR-100's Nc classes per client and
Dirichlet alpha), participation and skewed participation, the algorithms (FedSeq; on CIFAR-100
also FedProx, SCAFFOLD, FedDyn, FedAvgM, FedAdam, FedYogi), architectures, personalization and
robustness.

  python experiments/course_grid/course_grid.py --data shakespeare --workdir runs/shakespeare_grid \
      --out experiments/course_grid/shakespeare_grid [--only local_steps,participation] [--smoke]
  python experiments/course_grid/course_grid.py --data cifar100 --workdir runs/cifar100_grid \
      --out experiments/course_grid/cifar100_grid --set 'data.data_dir=DIR'  # DIR: the archive's

Shakespeare (real data, offline): every cell is configs/fedavg_shakespeare.py (the main job:
100 clients, 10 per round, J = 4 SGD steps of B = 10, client lr 1, server SGD lr 1, evaluated
on 1,989 test samples of LEAF's per-client split) with 100 rounds (J x rounds = 400) and the
study's changes; its other algorithms are experiments/shakespeare/shakespeare_algorithms.py's.
CIFAR-100: configs/fedavg_cifar100.py (K = 100, C = 0.1, J = 8 of B = 64, Dirichlet(0.5)) with 1,000
rounds (J x rounds = 8,000). Each study runs with `fedjax_sim.experiment.sweep.run_sweep` in
WORKDIR/<study> (resumable per cell; a finished cell is only read back). Writes OUT.md (a
table per study: every cell's last evaluation, the per-client mean and worst 10%, rounds to the
target) and OUT_<study>.png (test accuracy against rounds; against epochs for local steps).
``--smoke`` runs every study on the smoke config (seconds a cell; CIFAR-100's on synthetic
CIFAR-shaped data), for testing the script.
"""

from __future__ import annotations

import argparse
import os

from fedjax_sim.experiment.script import run_script

# study -> (what it asks, the sweep, its smoke sweep, the fields every cell changes, plot's x)
PARTICIPATION = (
    "clients per round C in {5, 20} of the 100 (the C = 10 reference is local_steps' first "
    "cell), and C = 10 drawn with skewed probabilities p ~ Dirichlet(0.3)",
    "clients_per_round+selection.name+selection.gamma=5:uniform:1.0,20:uniform:1.0,10:skewed:0.3",
    "clients_per_round+selection.name+selection.gamma=2:uniform:1.0,3:skewed:0.3",
    {},
    "round",
)
ROBUSTNESS = (
    "20% of the clients send sign-flipped updates: the mean, the coordinate median and the "
    "noise-aware (FedGW-style) aggregator",
    "robust.aggregator=mean,median,noise_aware",
    "robust.aggregator=mean,noise_aware",
    {"robust.attack": "sign_flip", "robust.bad_fraction": 0.2},
    "round",
)
SHAKESPEARE = {
    "local_steps": (
        "J in {4, 8, 16} with J x rounds = 400, LEAF's natural split against an IID reshuffle",
        "data.partition=natural,iid;client.local_steps+rounds=4:100,8:50,16:25",
        "data.partition=natural,iid;client.local_steps+rounds=2:4,4:2",
        {},
        "ledger_epochs",
    ),
    "participation": PARTICIPATION,
    "fedseq": (
        "FedSeq: 2 superclients of 5 clients a round (greedy KL on the next-character "
        "histograms), each member J = 4 steps, at client lr 1 and 0.5",
        "client.learning_rate=1.0,0.5",
        "client.learning_rate=1.0",
        {"algorithm": "fedseq", "clients_per_round": 2, "fedseq.max_clients": 5},
        "round",
    ),
    "personalization": (
        "FedAvg, Ditto (lambda 0.1) and FedPer (the output layer local); every client's model "
        "also fine-tuned for 4 local steps at each evaluation (every 50 rounds: fine-tuning "
        "all 100 clients is the slow part of an evaluation)",
        "algorithm=fedavg,ditto,fedper",
        "algorithm=fedavg,fedper",
        {"finetune.steps": 4, "eval_every": 50, "checkpoint_every": 50},
        "round",
    ),
    "robustness": ROBUSTNESS,
}
CIFAR100 = {
    "local_steps": (
        "J in {4, 8, 16} with J x rounds = 8,000",
        "client.local_steps+rounds=4:2000,8:1000,16:500",
        "client.local_steps+rounds=2:2,4:1",
        {},
        "ledger_epochs",
    ),
    "heterogeneity": (
        "IID, Nc in {1, 5, 10, 50} classes per client (shards), Dirichlet alpha in {0.1, 1}",
        "data.partition+data.classes_per_client+data.alpha=iid:10:0.5,shards:1:0.5,"
        "shards:5:0.5,shards:10:0.5,shards:50:0.5,dirichlet:10:0.1,dirichlet:10:1.0",
        "data.partition+data.classes_per_client+data.alpha=iid:10:0.5,shards:5:0.5",
        {},
        "round",
    ),
    "participation": PARTICIPATION,
    "algorithms": (
        "FedAvg, FedProx (mu 0.01), SCAFFOLD (II), FedDyn (alpha 0.01), FedAvgM (server lr "
        "0.3, momentum 0.9), FedAdam and FedYogi (server lr 0.01, eps 1e-3), and FedSeq (2 "
        "superclients of 5)",
        "algorithm+clients_per_round+server.optimizer+server.learning_rate+server.momentum"
        "+server.eps=fedavg:10:sgd:1.0:0.0:None,fedprox:10:sgd:1.0:0.0:None,"
        "scaffold:10:sgd:1.0:0.0:None,feddyn:10:sgd:1.0:0.0:None,fedavg:10:sgd:0.3:0.9:None,"
        "fedavg:10:adam:0.01:0.0:1e-3,fedavg:10:yogi:0.01:0.0:1e-3,fedseq:2:sgd:1.0:0.0:None",
        "algorithm+clients_per_round=scaffold:2,fedseq:1",
        {},
        "round",
    ),
    "architectures": (
        "the course CNN, ResNet-20 with BatchNorm, GroupNorm and LayerNorm, and the ViT at "
        "Dirichlet alpha 100, 0.5 and 0.1",
        "model.name+model.norm+client.learning_rate=cnn:batch:0.05,resnet20:batch:0.05,"
        "resnet20:group:0.05,resnet20:layer:0.05,vit:batch:0.01;data.alpha=100,0.5,0.1",
        "model.name+model.norm=resnet20:group,vit:batch",
        {},
        "round",
    ),
    "personalization": (
        "FedAvg, FedPer, FedRep, Ditto and APFL with 50 test examples per client drawn with "
        "its own label distribution; every client's model also fine-tuned for 5 steps",
        "algorithm=fedavg,fedper,fedrep,ditto,apfl",
        "algorithm=fedavg,ditto",
        {"data.test_per_client": 50, "finetune.steps": 5},
        "round",
    ),
    "robustness": ROBUSTNESS,
}
GRIDS = {  # data -> (config file, rounds, eval every, target accuracy, studies)
    "shakespeare": ("configs/fedavg_shakespeare.py", 100, 5, 0.25, SHAKESPEARE),
    "cifar100": ("configs/fedavg_cifar100.py", 1000, 50, 0.3, CIFAR100),
}


def study_config(data: str, study: str, smoke: bool, settings: str = ""):
    """The config of one study's sweep, with ``settings`` (``"field=value;other=value"``, the
    sweep's syntax with one value each: where the data are, say) set in every cell."""
    from fedjax_sim.config import files as config_files
    from fedjax_sim.config.checks import ConfigError
    from fedjax_sim.experiment.sweep import parse_sweep

    config_file, rounds, eval_every, _, studies = GRIDS[data]
    _, sweep, smoke_sweep, changes, _ = studies[study]
    config = config_files.load_config(config_file + (":smoke" if smoke else ""))
    if smoke:
        config_files.with_overrides(config, {k: v for k, v in changes.items()
                                             if not k.endswith("_every")})  # fmt: skip
        config.fedseq.max_clients = 2
        if config.data.test_per_client and config.data.source == "synthetic":
            config.data.synthetic_test = 1000  # every class in the test split, to draw from
    else:
        config.rounds = rounds
        config.eval_every = config.checkpoint_every = eval_every
        config_files.with_overrides(config, changes)
    for fields, rows in parse_sweep(settings, config) if settings else ():
        if len(rows) != 1:
            raise ConfigError(f"--set takes one value a field, got {len(rows)} for {fields}")
        config_files.with_overrides(config, dict(zip(fields, rows[0], strict=True)))
    config.sweep = smoke_sweep if smoke else sweep
    return config


def report(data: str, workdir: str, out: str) -> str:
    """Writes OUT.md (a section per study that has run) and OUT_<study>.png; returns the
    Markdown."""
    from fedjax_sim.experiment.sweep import load_sweep
    from fedjax_sim.experiment.sweep_report import sweep_section
    from fedjax_sim.runtime import outputs

    config_file, rounds, _, target, studies = GRIDS[data]
    parts = [f"# The course grid on {data}", "",
             f"Every cell: {config_file}, {rounds} rounds unless swept; test accuracy on the "
             "test split; client mean / worst 10%: the per-client accuracies."]  # fmt: skip
    for study, (question, _, _, changes, x) in studies.items():
        path = os.path.join(workdir, study)
        if not os.path.exists(os.path.join(path, "sweep.json")):
            continue
        summary, histories = load_sweep(path)
        fixed = ", ".join(f"{k}={v}" for k, v in changes.items())
        png = f"{out}_{study}.png"
        section = sweep_section(png, summary, histories, "test_accuracy", x, target)
        parts += ["", f"## {study}", "", question + (f" ({fixed})." if fixed else "."), "",
                  section]  # fmt: skip
    text = "\n".join(parts) + "\n"
    outputs.write_bytes_atomic(out + ".md", text.encode())
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, choices=list(GRIDS))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default="", help="comma-separated studies (default: all)")
    parser.add_argument("--set", default="", help="e.g. 'data.data_dir=/data/cifar100'")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    studies = GRIDS[args.data][-1]
    chosen = [s for s in args.only.split(",") if s] or list(studies)
    unknown = sorted(set(chosen) - set(studies))
    if unknown:
        parser.error(f"--only: unknown studies {unknown}; allowed: {list(studies)}")

    from fedjax_sim.experiment.xla_flags import apply_xla_flags

    # before JAX starts: the measured best on CPU for the grid's model
    apply_xla_flags("auto", "lstm" if args.data == "shakespeare" else "cnn")
    from fedjax_sim.config.checks import ConfigError
    from fedjax_sim.data.dataset import DataError
    from fedjax_sim.experiment.sweep import run_sweep

    for study in chosen:
        print(f"study {study}: {studies[study][0]}", flush=True)
        try:
            run_sweep(study_config(args.data, study, args.smoke, args.set),
                      os.path.join(args.workdir, study), progress=False)  # fmt: skip
        except (ConfigError, DataError) as error:  # one line, as the CLI gives it
            parser.exit(2, f"error: study {study}: {error}\n")
        report(args.data, args.workdir, args.out)
    print(report(args.data, args.workdir, args.out))


if __name__ == "__main__":
    run_script(main)
