"""CLI: ``python -m fedjax_sim --config configs/X.py[:smoke] --workdir DIR --config.key=value``.

Runs (or resumes) the experiment of the config in DIR; see `fedjax_sim.experiment`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file[:variant].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    from fedjax_sim.engine import apply_xla_flags
    from fedjax_sim.experiment import run_experiment

    try:
        apply_xla_flags(_CONFIG.value.xla_flags, _CONFIG.value.model.name)
        _, history = run_experiment(_CONFIG.value, _WORKDIR.value, progress=not _QUIET.value)
    except ValueError as error:  # ConfigError, DataError and optimizer/engine field checks
        if os.environ.get("FEDJAX_SIM_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    last = history[-1] if history else {}
    summary = ", ".join(f"{k}={v:.4f}" for k, v in last.items() if k != "round")
    print(f"round {last.get('round')}: {summary}")


def run():
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)


if __name__ == "__main__":
    run()
