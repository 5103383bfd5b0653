"""The experiments/ scripts end on bad input with one line and exit code 2, like the CLI."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "args, line",
    [
        (["experiments/tools/compare_runs.py", "/nonexistent/run", "--out", "x.png"],
         "error: /nonexistent/run: No such file or directory"),
        (["experiments/tools/report_sweep.py", "--workdir", "/nonexistent/sweep"],
         "error: /nonexistent/sweep holds no sweep.json: run the sweep there first"),
        (["experiments/benchmarks/bench_round.py", "--workloads", "cnn,resnet"],
         "error: --workloads: unknown ['resnet']; allowed: cnn, lstm, mlp"),
        (["experiments/benchmarks/bench_peers.py", "--workloads", "cnn,gru"],
         "error: --workloads: unknown ['gru']; allowed: cnn, lstm, mlp"),
        (["experiments/benchmarks/bench_peers.py", "--runs", "2"],
         "error: --runs: at least 3 (every run is reported; one run proves little)"),
        (["experiments/tools/run_notebooks.py", "colab/none.ipynb"],
         "error: notebooks: no notebook 'colab/none.ipynb'; the notebooks: "
         "colab/distributed_track.ipynb, colab/fedavg_shakespeare.ipynb, "
         "colab/federated_track.ipynb"),
        (["experiments/time_to_accuracy/time_to_accuracy.py", "--config", "configs/no.py",
          "--workdir", "w", "--out", "o"], "error: --config: no config file 'configs/no.py'"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_one_line(args, line, tmp_path):
    result = subprocess.run(
        [sys.executable, *[os.path.join(ROOT, a) if a.startswith("experiments/") else a
                           for a in args]],
        cwd=ROOT if "time_to_accuracy" in args[0] else tmp_path,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "FEDJAX_SIM_DEBUG": "", "PYTHONPATH": ROOT},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [line]
