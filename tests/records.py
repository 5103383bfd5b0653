"""Reading a run's metrics as results: ``wall_s`` (seconds measured, not computed) left out."""

import json


def metrics_without_wall_clock(path) -> list[dict]:
    """The records of a ``metrics.jsonl``, each without its ``wall_s``."""
    with open(path) as f:
        records = [json.loads(line) for line in f]
    for record in records:
        assert record.pop("wall_s") >= 0
    return records
