"""Optional W&B logging (`fedjax_sim.runtime.wandb_log`), run offline with the real wandb and
read back from the files it wrote: every record at its round, a resumed run continuing the same
W&B run without logging a round twice, one-line errors, and resumable logging fields."""

import sys

import pytest

from fedjax_sim.config import checks as config_checks
from fedjax_sim.config.fields import ConfigError
from fedjax_sim.config.files import load_config
from fedjax_sim.config.resume import check_resumable
from fedjax_sim.runtime.wandb_log import WandbError, WandbLog, WandbSettings, wandb_log_of
from tests.wandb_records import wandb_runs

OFFLINE = WandbSettings(project="tests", mode="offline", tags="a, b")


def test_records_and_a_resume_read_back_from_wandbs_files(tmp_path):
    first = WandbLog(OFFLINE, str(tmp_path), {"algorithm": "fedavg", "client": {"lr": 0.1}})
    history = [{"round": 2, "test_accuracy": 0.25, "note": "text", "wall_s": 1.5}]
    first.update(history)
    history.append({"round": 4, "test_accuracy": 0.5, "loss": float("nan")})
    first.update(history)
    first.update(history)  # nothing new
    first.close(failed=True)  # killed after round 4, before its checkpoint
    # The resumed run restores round 2's record, recomputes round 4 (bit for bit) and goes on.
    resumed = WandbLog(OFFLINE, str(tmp_path), {"algorithm": "fedavg", "client": {"lr": 0.1}})
    resumed.update([history[0], {"round": 4, "test_accuracy": 0.5}, {"round": 6, "x": 2}])
    resumed.close()

    runs = wandb_runs(str(tmp_path))
    assert len(runs) == 2 and runs[0]["id"] == runs[1]["id"]
    logged = [(step, {k: v for k, v in items.items() if not k.startswith("_")})
              for run in runs for step, items in run["history"]]  # fmt: skip
    assert logged == [(2, {"test_accuracy": 0.25, "wall_s": 1.5}),
                      (4, {"test_accuracy": 0.5}), (6, {"x": 2})]  # fmt: skip
    assert runs[0]["config"]["algorithm"] == "fedavg"
    assert runs[0]["config"]["client"] == {"lr": 0.1}


def test_no_project_no_wandb_and_a_seed_is_its_own_run(tmp_path, monkeypatch):
    assert wandb_log_of({**vars(OFFLINE), "project": ""}, str(tmp_path), {}) is None
    made = []
    monkeypatch.setattr(WandbLog, "__init__", lambda self, s, w, r: made.append(s))
    wandb_log_of(vars(OFFLINE), str(tmp_path / "grid" / "seed_3"), {}, seed=3)
    assert (made[0].name, made[0].group) == ("grid-seed3", "grid")


def test_missing_wandb_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    message = r"needs the wandb package: pip install 'fedjax-sim\[wandb\]'"
    with pytest.raises(WandbError, match=message):
        WandbLog(OFFLINE, str(tmp_path), {})


def test_a_run_wandb_will_not_start_is_one_line(tmp_path, monkeypatch):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty).\nCall wandb.login()")

    monkeypatch.setattr(wandb, "init", refuse)
    with pytest.raises(WandbError) as error:
        WandbLog(OFFLINE, str(tmp_path), {})
    message = str(error.value)
    assert "\n" not in message and "api_key not configured" in message
    assert "wandb login" in message and "wandb.mode=offline" in message


def test_logging_fields_are_checked_and_may_change_on_resume():
    config = load_config("configs/fedavg_digits.py:smoke")
    config.wandb.mode = "cloud"
    with pytest.raises(ConfigError, match=r"wandb.mode.*'online', 'offline'"):
        config_checks.check_config(config)
    config.wandb.mode = "offline"
    record = config_checks.config_record(config)
    logged = {**record, "wandb": {**record["wandb"], "project": "p", "tags": "x"}}
    check_resumable(record, logged, "w")
    before_wandb = {k: v for k, v in record.items() if k != "wandb"}
    check_resumable(before_wandb, logged, "w")  # a workdir written before the group came
