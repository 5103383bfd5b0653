"""bench_peers.py's arithmetic on a hand-made record: per run, each side's median round, the
fastest peer's median over ours, and our share of the matmul peak; every run reported."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments", "benchmarks"))
import bench_peers  # noqa: E402

RECORD = {
    "workload": "cnn",
    "seconds": {
        "ours_auto": [[2.0, 3.0, 2.5], [1.0, 1.0, 4.0]],
        "pytorch_loop": [[6.0, 5.0, 4.0], [3.0, 3.0, 3.0]],
        "pfl_research": [[3.5, 3.0, 9.0], [2.0, 2.2, 2.1]],
    },
    "round_gflop": 50.0,
    "matmul_peak_gflops": 100.0,
    "settings": {"client_axis": "map", "client_devices": 2, "unroll_local_steps": True,
                 "model_conv": "loop_friendly"},
    "xla_flags": "--xla_force_host_platform_device_count=2",
    "peak_rss_mb": {"ours_auto": 800.0, "pytorch_loop": 400.0, "pfl_research": 500.0},
}  # fmt: skip


def test_every_run_its_medians_and_the_ratio_to_the_fastest_peer():
    rows = bench_peers.summary_rows(RECORD)
    assert [r["run"] for r in rows] == [1, 2]
    assert [r["ours_auto"] for r in rows] == [2.5, 1.0]
    # run 1: pfl's median 3.5 is the fastest peer's; run 2: pfl's 2.1
    assert [r["speedup_vs_fastest_peer"] for r in rows] == pytest.approx([3.5 / 2.5, 2.1 / 1.0])
    assert [r["pct_matmul_peak"] for r in rows] == pytest.approx([20.0, 50.0])


def test_the_table_shows_every_run_and_the_memory():
    table = bench_peers.render([RECORD])
    assert "| cnn | 1 | 2.5000 | 5.0000 | 3.5000 | **1.40x** | 20.0 |" in table
    assert "| cnn | 2 | 1.0000 | 3.0000 | 2.1000 | **2.10x** | 50.0 |" in table
    assert "map x 2 device(s)" in table and "| 800 | 400 | 500 |" in table


def test_without_peers_no_ratio():
    alone = {**RECORD, "seconds": {"ours_auto": RECORD["seconds"]["ours_auto"]},
             "peak_rss_mb": {"ours_auto": 800.0}}  # fmt: skip
    assert bench_peers.summary_rows(alone)[0]["speedup_vs_fastest_peer"] is None
    assert "| cnn | 1 | 2.5000 | - | - | - | 20.0 |" in bench_peers.render([alone])
