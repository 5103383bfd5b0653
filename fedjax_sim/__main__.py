"""CLI: ``python -m fedjax_sim --config configs/X.py[:smoke] --workdir DIR --config.key=value``.

Runs (or resumes) the experiment of the config in DIR; see `fedjax_sim.experiment.run`.
``python -m fedjax_sim evaluate --workdir DIR [--round N]`` evaluates a run's last (or round
N's) checkpoint on the test split; see `fedjax_sim.experiment.reopen`.
``python -m fedjax_sim fields --config FILE[:variant] [--config.key=value]`` lists every field
of the config with its value and meaning (`fedjax_sim.config.reference`). A bad input
ends with one line on stderr, ``error: ...`` naming the field, file or value, and exit code 2
(``FEDJAX_SIM_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fedjax_sim.config.checks import ConfigError, check_config
from fedjax_sim.config.files import check_field_name, load_config
from fedjax_sim.runtime.run_log import metrics_text

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")
_ROUND = flags.DEFINE_integer(
    "round", None, "evaluate: the round of the kept checkpoint to evaluate (default: the last)."
)
COMMANDS = ("evaluate", "fields")
_HELP = ("--help", "--helpfull", "--helpshort", "-h", "-?")


def _fail(error: BaseException) -> None:
    if os.environ.get("FEDJAX_SIM_DEBUG"):
        raise error
    lines = str(error).strip().splitlines() or [type(error).__name__]
    # ml_collections wraps some errors around a formatted traceback: its last line is the error.
    print(f"error: {lines[-1] if 'Traceback' in str(error) else lines[0]}", file=sys.stderr)
    sys.exit(2)


def _flag_values(args: list[str], name: str) -> list[str]:
    """Every value of flag ``--name`` in ``args``, in order (absl keeps the last)."""
    values = []
    for i, arg in enumerate(args):
        if arg == f"--{name}":
            values.append(args[i + 1] if i + 1 < len(args) else "")
        elif arg.startswith(f"--{name}="):
            values.append(arg.split("=", 1)[1])
    return values


def check_command_line(args: list[str]) -> None:
    """Checks what ml_collections would report as a traceback: the config files (each one of
    a ``--config`` given twice) and the field names of the ``--config.<field>`` overrides of
    the last (absl checks the rest, in one line).

    Raises:
      ConfigError: one line naming the file or field.
    """
    specs = _flag_values(args, "config")
    if not specs or any(arg in _HELP for arg in args):
        return
    config = [load_config(spec) for spec in specs][-1]
    for arg in args:
        override = re.match(r"--(?:no)?config\.([^=]+)", arg)
        if override:
            check_field_name(config, override[1])


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        check_command_line(argv[1:])
        return flags.FLAGS(argv)
    except (ConfigError, flags.Error, ValueError, TypeError, AttributeError, OSError) as error:
        _fail(error)


def evaluate() -> None:
    """``evaluate --workdir DIR [--round N]``: prints the checkpoint's test metrics."""
    from fedjax_sim.experiment.reopen import evaluate_run

    try:
        if not _WORKDIR.value:
            raise ConfigError("evaluate: --workdir DIR (a run's directory) is required")
        metrics = evaluate_run(_WORKDIR.value, _ROUND.value)
    except (ValueError, OSError) as error:  # ConfigError, CheckpointError, DataError
        _fail(error)
    print(f"round {metrics.pop('round')}: {metrics_text(metrics)}")


def fields() -> None:
    """``fields --config FILE``: every field, its value in that config and its meaning."""
    from fedjax_sim.config.reference import field_reference, shown

    if _CONFIG.value is None:
        _fail(ConfigError("fields: --config FILE[:variant] is required"))
    listed, _ = field_reference(_CONFIG.value)
    width = max(len(f"{f.name} = {shown(f.value)}") for f in listed)
    for field in listed:
        entry = f"{field.name} = {shown(field.value)}"
        print(f"{entry:<{width}}  # {field.meaning}" if field.meaning else entry)


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if argv[1:] == ["evaluate"]:
        return evaluate()
    if argv[1:] == ["fields"]:
        return fields()
    if argv[1:]:
        command = " ".join(argv[1:])
        _fail(ConfigError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}"))
    from fedjax_sim.experiment.run import run_experiment
    from fedjax_sim.experiment.xla_flags import apply_malloc_arenas, apply_xla_flags
    from fedjax_sim.runtime.multihost import initialize_from_environment, is_writer

    config = _CONFIG.value
    try:
        if config is None:
            raise ConfigError(
                "--config FILE[:variant] is required, e.g. "
                "--config configs/fedavg_shakespeare.py:smoke"
            )
        if not _WORKDIR.value:
            raise ConfigError(
                "--workdir DIR is required: the run's results and checkpoints go there"
            )
        check_config(config)  # before the XLA flags, which need a valid model name
        apply_xla_flags(config.xla_flags, config.model.name)
        apply_malloc_arenas(config.xla_flags, config.model.name)
        initialize_from_environment()  # several processes: before any backend starts
        if config.sweep:  # a grid of runs, one workdir per cell (fedjax_sim.experiment.sweep)
            from fedjax_sim.experiment.sweep import run_sweep
            from fedjax_sim.experiment.vector_sweep import run_vectorized_sweep

            run = run_vectorized_sweep if config.sweep_vectorized else run_sweep
            summary = run(config, _WORKDIR.value, progress=not _QUIET.value, log=print)
            if is_writer():
                for cell in summary["cells"]:
                    shown = metrics_text(cell["last"]) if "last" in cell else cell["diverged"]
                    print(f"{cell['name']}: {shown}")
            return
        _, history = run_experiment(
            config, _WORKDIR.value, progress=not _QUIET.value, log=print, free_init_memory=True
        )
    except (ValueError, OSError) as error:  # ConfigError, DataError, CheckpointError, a full disk
        _fail(error)
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command to resume from the last checkpoint", file=sys.stderr
        )
        sys.exit(130)
    if not is_writer():
        return
    if history and isinstance(history[0], list):  # num_seeds runs: their mean +- std
        from fedjax_sim.experiment.seeds import mean_and_std

        last = mean_and_std(history)[-1]
        shown = [k for k in last if f"{k}_std" in last and not k.startswith("ledger_")]
        print(f"round {last['round']}, {last['seeds']} seeds, mean +- std: " + ", ".join(
            f"{k}={last[k]:.4f} +- {last[f'{k}_std']:.4f}" for k in shown))  # fmt: skip
    else:
        last = history[-1] if history else {}
        print(f"round {last.get('round')}: {metrics_text(last)}")
    if "ledger_samples" in last:
        print(
            f"ledger: {last['ledger_epochs']:.2f} epochs, {last['ledger_flops']:.3g} FLOPs, "
            f"{last['ledger_syncs']:.0f} syncs, {last['ledger_bytes_total'] / 1e6:,.1f} MB sent "
            f"in all, {last['ledger_time_s']:.3g} s simulated"
        )


def run():
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
