"""Read an offline wandb run back without a server: parse its `.wandb` record log.

The log is 32 KiB blocks of chunks, each with a 7-byte header (crc32 uint32, length uint16,
type uint8: full=1, first=2, middle=3, last=4); the file starts with a 7-byte header of its own.
The records are wandb's own protobuf `Record` messages.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, partial = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - (pos % BLOCK)
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        chunk = data[pos:pos + length]
        pos += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            partial = chunk
        elif kind == MIDDLE:
            partial += chunk
        elif kind == LAST:
            yield partial + chunk
            partial = b""
        elif kind == 0 and length == 0:
            pos += BLOCK - (pos % BLOCK) if pos % BLOCK else 0


def _items(update) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in update:
        keys = [item.key] if item.key else list(item.nested_key)
        node = out
        for key in keys[:-1]:  # nested keys (e.g. a logged table's fields) become nested dicts
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)
    return out


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def read_offline_run(run_dir: str | Path, wait_seconds: float = 15.0) -> dict[str, Any]:
    """Keys: run ({id, group, job_type, name, project}), config, summary, history (list), exit_code."""
    # wandb-core may still be flushing the log when finish() returns: wait for the exit record.
    deadline = time.monotonic() + wait_seconds
    while True:
        out = _read_once(run_dir)
        if out["exit_code"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _read_once(run_dir: str | Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    (log_file,) = Path(run_dir).glob("run-*.wandb")
    out: dict[str, Any] = {"run": {}, "config": {}, "summary": {}, "history": [], "exit_code": None}
    for payload in _payloads(log_file.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out["run"] = {"id": run.run_id, "group": run.run_group, "job_type": run.job_type,
                          "name": run.display_name, "project": run.project}
            out["config"].update(_items(run.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_items(record.history.item))
        elif kind == "summary":
            _merge(out["summary"], _items(record.summary.update))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
