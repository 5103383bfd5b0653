"""The benchmarks' ``auto`` round (workloads.auto_round: what the CLI builds with every execution
setting "auto") and bench_round.py's headline row for it."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments", "benchmarks"))
import bench_round  # noqa: E402
import workloads  # noqa: E402

from fedjax_sim.experiment.xla_flags import RECOMMENDED_CPU_XLA_FLAGS  # noqa: E402


def test_auto_host_devices_follow_the_recommended_flags():
    assert "--xla_force_host_platform_device_count=2" in RECOMMENDED_CPU_XLA_FLAGS["lstm"]
    assert workloads.auto_host_devices("lstm") == 2
    assert "device_count" not in RECOMMENDED_CPU_XLA_FLAGS["cnn"]
    assert workloads.auto_host_devices("cnn") == 1
    assert workloads.auto_host_devices("mlp") == 1  # no flags at all


def test_auto_round_runs_the_cli_settings_and_advances():
    spec = dict(workloads.WORKLOADS["mlp"], clients=20, examples=10, C=4, J=2, B=5)
    run, settings = workloads.auto_round("mlp", spec, client_devices=1)
    assert settings == {"client_axis": "vmap", "client_devices": 1, "unroll_local_steps": 1,
                        "model_conv": None}  # fmt: skip
    seconds = [run(), run()]
    assert all(s > 0 for s in seconds)


def test_the_auto_row_is_named_by_its_settings_and_compared_against_the_run_peak():
    def record(formulation, samples_per_s, peak=80.0, **extra):
        return dict(workload="cnn", formulation=formulation, samples_per_s=samples_per_s,
                    gflops_per_s=60.0, matmul_peak_gflops=peak, seconds_median=1.0,
                    seconds_min=1.0, seconds_max=1.0, per_device=None, devices=1,
                    **extra)  # fmt: skip

    settings = {"client_axis": "map", "client_devices": 1}
    table = bench_round.markdown_table([
        record("auto", 300.0, auto_settings=settings),
        record("centralized", 100.0),
        record("python_loop", 200.0, peak=120.0),  # the run's best: every row's % is of it
        record("pytorch_loop", 150.0),
    ])  # fmt: skip
    auto_line = table.splitlines()[2]
    assert auto_line.startswith("| cnn | **auto** (map x 1 device(s)) | 300 | 60.0 | 50.0 |")
    assert auto_line.endswith("| 3.00x | 1.50x | 1.50x | 2.00x |")
