"""What a run reports as it goes, beside ``metrics.jsonl``: the wall clock of every record, a
line per evaluation, and TensorBoard event files (tensorboardX: no TensorFlow needed).

A resumed run continues the wall clock from its last restored record and rewrites the event
file from its first round with TensorBoard's ``purge_step``, so TensorBoard shows one curve
per metric, not the killed run's tail beside the resumed one.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable

WALL = "wall_s"


class RunLog:
    """Annotates and reports a run's records (the dicts of ``metrics.jsonl``) as they come.

    Args:
      workdir: the run's directory; event files go to ``workdir/tensorboard``.
      line: receives one line per new evaluation (None: no lines).
      tensorboard: write TensorBoard event files.
    """

    def __init__(
        self, workdir: str, line: Callable[[str], None] | None = None, tensorboard: bool = True
    ):
        self._start = time.monotonic()
        self._base = None  # seconds the resumed runs took, read from the first records
        self._line = line
        self._logdir = os.path.join(workdir, "tensorboard") if tensorboard else None
        self._board = None
        self._boarded = -1  # the last round written to the event file

    def update(self, history: list[dict]) -> None:
        """Gives the records without ``wall_s`` (the ones this process made) the seconds since
        the run began, counting the runs it resumes; reports them; writes what the event file
        lacks. Idempotent for records already seen."""
        if self._base is None:  # the clock of the run this one resumes: its last record's
            done = [r[WALL] for r in history if WALL in r]
            self._base = done[-1] if done else 0.0
        base, elapsed = self._base, time.monotonic() - self._start
        new = [r for r in history if WALL not in r]
        for record in new:
            record[WALL] = round(base + elapsed, 3)
        if self._line:
            for record in new:
                self._line(evaluation_line(record))
        if self._logdir:
            self._write_events(history)

    def _write_events(self, history: list[dict]) -> None:
        pending = [r for r in history if r["round"] > self._boarded]
        if not pending:
            return
        try:
            self._append_events(pending)
        except OSError as error:
            self.close()
            raise EventsError(
                f"cannot write the TensorBoard events in {self._logdir} "
                f"({error.strerror or error}): free space (or fix the cause) and run the same "
                "command to resume from the last checkpoint"
            ) from error
        self._boarded = pending[-1]["round"]

    def _append_events(self, pending: list[dict]) -> None:
        # tensorboardX's synchronous writer: no background thread or exit hook that could
        # report a failed write after the run has said why it stopped
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.summary import scalar

        if self._board is None:
            os.makedirs(self._logdir, exist_ok=True)
            self._board = EventsWriter(os.path.join(self._logdir, "events"))
            # TensorBoard drops earlier files' events from this step on (a resumed run's)
            start = SessionLog(status=SessionLog.START)
            self._board.write_event(Event(step=pending[0]["round"], session_log=start))
        for record in pending:
            for name, value in record.items():
                if name != "round" and is_number(value):
                    event = Event(wall_time=time.time(), step=record["round"],
                                  summary=scalar(name, value))  # fmt: skip
                    self._board.write_event(event)
        self._board.flush()

    def close(self, failed: bool = False) -> None:
        """Closes the event file; a failing close (a full disk) is left to the run's own
        error, which says why it stopped. ``failed`` (the run stopped on an error) changes
        nothing here; it is `closing`'s common signature."""
        del failed
        if self._board is not None:
            board, self._board = self._board, None
            with contextlib.suppress(OSError):
                board.close()


@contextlib.contextmanager
def closing(logs: list):
    """Closes every log that is not None when the block ends, each told whether the block
    raised (``close(failed=...)``: `RunLog`, `fedjax_sim.runtime.wandb_log.WandbLog`)."""
    failed = True
    try:
        yield
        failed = False
    finally:
        for log in logs:
            if log is not None:
                log.close(failed=failed)


class EventsError(ValueError):
    """The TensorBoard event file could not be written (a full disk)."""


def is_number(value) -> bool:
    """A finite int or float, not a bool: what the logs record."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metrics_text(record: dict) -> str:
    """``test_accuracy=0.3120, test_loss=2.4410, ...``: a record's numbers but its round, its
    wall clock and the ledger's counters."""
    shown = {k: v for k, v in record.items()
             if k not in ("round", WALL) and not k.startswith("ledger_")
             and isinstance(v, (int, float)) and not isinstance(v, bool)}  # fmt: skip
    return ", ".join(f"{k}={v:.4f}" for k, v in shown.items())


def evaluation_line(record: dict) -> str:
    """``round 20 (41.2 s): test_accuracy=0.3120, ...``: `metrics_text` with the round and
    the wall clock."""
    clock = f" ({record[WALL]:.1f} s)" if WALL in record else ""
    return f"round {record['round']}{clock}: {metrics_text(record)}"
