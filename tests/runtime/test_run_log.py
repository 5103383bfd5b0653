"""A run's log beside metrics.jsonl (`fedjax_sim.runtime.run_log`): ``wall_s`` on every record,
continued across a resume; one line per evaluation; TensorBoard events that TensorBoard's own
reader reads back, with one value per round after a resume (the killed run's tail purged)."""

import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedjax_sim.runtime.run_log import EventsError, RunLog, evaluation_line


def _scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(logdir, size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_reads_back_every_evaluation(tmp_path):
    lines = []
    log = RunLog(str(tmp_path), line=lines.append)
    history = []
    for round_number, accuracy in ((2, 0.25), (4, 0.5)):
        history.append({"round": round_number, "test_accuracy": accuracy, "ledger_syncs": 2.0})
        log.update(history)
    log.close()
    assert _scalars(str(tmp_path / "tensorboard"), "test_accuracy") == [(2, 0.25), (4, 0.5)]
    assert [r["wall_s"] >= 0 for r in history] == [True, True]
    assert history[1]["wall_s"] >= history[0]["wall_s"]
    assert lines == [evaluation_line(r) for r in history]
    assert lines[0].startswith("round 2 (") and "test_accuracy=0.2500" in lines[0]
    assert "ledger" not in lines[0]


def test_a_resumed_run_continues_the_clock_and_purges_the_killed_runs_tail(tmp_path):
    first = RunLog(str(tmp_path))
    history = [{"round": 2, "test_accuracy": 0.25}]
    first.update(history)
    history.append({"round": 4, "test_accuracy": 0.5})  # written, then killed before the
    first.update(history)  # checkpoint of round 4: the resumed run redoes rounds 3 and 4
    first.close()
    time.sleep(0.01)
    restored = [dict(history[0])]  # the checkpoint of round 2 holds its record, wall_s too
    resumed = RunLog(str(tmp_path))
    restored.append({"round": 4, "test_accuracy": 0.75})
    resumed.update(restored)
    resumed.close()
    assert restored[1]["wall_s"] >= restored[0]["wall_s"]
    assert _scalars(str(tmp_path / "tensorboard"), "test_accuracy") == [(2, 0.25), (4, 0.75)]


def test_an_unwritable_event_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "tensorboard").write_text("a file where the folder goes")
    log = RunLog(str(tmp_path))
    message = r"cannot write the TensorBoard events in .*tensorboard \(.*\): free space"
    with pytest.raises(EventsError, match=message):
        log.update([{"round": 1, "test_accuracy": 0.5}])
    log.close()  # nothing left to fail


def test_wall_s_is_the_time_since_the_run_began_plus_the_resumed_runs(tmp_path, monkeypatch):
    clock = iter([100.0, 110.0, 125.0])  # the log starts, then two evaluations
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    log = RunLog(str(tmp_path), tensorboard=False)
    history = [{"round": 2, "test_accuracy": 0.5, "wall_s": 40.0}]  # restored: 40 s before
    history.append({"round": 4, "test_accuracy": 0.6})
    log.update(history)
    history.append({"round": 6, "test_accuracy": 0.7})
    log.update(history)
    assert [r["wall_s"] for r in history] == [40.0, 50.0, 65.0]
