"""``python -m fedjax_sim fields --config FILE``: every field of the config with its value (the
overrides applied) and its meaning where the config code gives one."""

import os
import subprocess
import sys

from fedjax_sim.config.files import field_names, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fields_lists_every_field_with_its_value_and_meaning():
    result = subprocess.run(
        [sys.executable, "-m", "fedjax_sim", "fields", "--config",
         "configs/fedavg_digits.py:smoke", "--config.rounds=7"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = {line.split(" = ")[0]: line for line in result.stdout.splitlines()}
    config = load_config("configs/fedavg_digits.py:smoke")
    leaves = [n for n in field_names(config) if not hasattr(config[n.split(".")[0]], "keys")
              or "." in n]  # fmt: skip
    assert sorted(listed) == sorted(leaves)
    assert listed["rounds"].startswith("rounds = 7")
    assert "# A round whose training metrics" in listed["allow_nan"]
