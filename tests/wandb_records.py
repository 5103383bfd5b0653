"""Reads back what W&B wrote offline (``WORKDIR/wandb/offline-run-*/run-<id>.wandb``).

wandb 0.31 reads its transaction log only in its Go core, so this follows the format its
earlier Python ``datastore`` read: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
LevelDB-log records (crc32c, length, type: full, first, middle, last) in 32 KiB blocks, each
record a ``wandb_internal_pb2.Record``. Parsing with W&B's own protobuf keeps it honest.
"""

import glob
import json
import os
import struct

BLOCK = 32768
HEADER = 7  # both the file's and each record's
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), data[:7]
    offset, pieces = HEADER, []
    while offset + HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < HEADER:  # zero padding to the next block
            offset += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if kind == 0 and length == 0:
            break
        piece = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == FULL:
            yield piece
        elif kind in (FIRST, MIDDLE):
            pieces.append(piece)
        elif kind == LAST:
            yield b"".join([*pieces, piece])
            pieces = []


def wandb_runs(workdir: str) -> list[dict]:
    """Every offline W&B run file under ``workdir/wandb``, the first written first:
    ``{"id", "config", "history": [(step, {key: value})]}``."""
    from wandb.proto import wandb_internal_pb2

    runs = []
    # by modification time: a resumed run started in the same second shares its folder's name
    files = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "*.wandb"))
    for path in sorted(files, key=os.path.getmtime):
        run = {"id": None, "config": {}, "history": []}
        with open(path, "rb") as file:
            for payload in _payloads(file.read()):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(payload)
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    run["id"] = record.run.run_id
                    run["config"].update(_config(record.run.config))
                elif kind == "config":
                    run["config"].update(_config(record.config))
                elif kind == "history":
                    items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                             for i in record.history.item}  # fmt: skip
                    run["history"].append((record.history.step.num, items))
        runs.append(run)
    return runs


def _config(config) -> dict:
    return {i.key: json.loads(i.value_json) for i in config.update}
