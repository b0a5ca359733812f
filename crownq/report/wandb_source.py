"""`crownq-report --from-wandb`: the runs of a sweep rebuilt from wandb run summaries alone, for sweeps
whose result folders are on other machines.

Two sources: `ENTITY/PROJECT` on a wandb server (the public API), or a local folder holding offline
runs (`offline-run-*` folders anywhere below it: a sweep folder, a copied `wandb/` folder). Offline
runs keep config, summary and tags only in their `.wandb` record log (no `wandb-summary.json` in
offline mode), so it is parsed here with wandb's own protobuf classes. The log is 32 KiB blocks of
chunks, each with a 7-byte header (crc32 uint32, length uint16, type uint8: full=1, first=2,
middle=3, last=4), after a 7-byte file header.

Every seed's summary is its result (crownq/tracking.py writes it at the end), so a run summary is a
result dict. A run with no final status (it died, or is still running) is listed as `running`.
Requeued attempts share one run id: the attempt with a final status (else the latest) wins.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK, _HEADER = 32 * 1024, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
REPORT_JOB_TYPE = "report"


def _payloads(data: bytes) -> Iterator[bytes]:
    pos, partial = _HEADER, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # the rest of a block too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        chunk, pos = data[pos:pos + length], pos + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            partial = chunk
        elif kind == _MIDDLE:
            partial += chunk
        elif kind == _LAST:
            yield partial + chunk
            partial = b""
        elif kind == 0 and length == 0 and pos % _BLOCK:  # zero fill up to the next block
            pos += _BLOCK - pos % _BLOCK


def _items(update) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in update:
        keys = [item.key] if item.key else list(item.nested_key)
        node = out
        for key in keys[:-1]:  # nested summary values (dicts) arrive as key paths
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)
    return out


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """{run: {id, group, job_type, name, project, tags}, config, summary, artifacts, exit_code} of one
    `offline-run-*` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    logs = sorted(Path(run_dir).glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb record log (not a wandb offline run folder)")
    out: dict[str, Any] = {"run": {}, "config": {}, "summary": {}, "artifacts": [], "exit_code": None,
                           "folder": str(run_dir)}
    for payload in _payloads(logs[-1].read_bytes()):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # a torn record at the end of a log still being written
            continue
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out["run"] = {"id": run.run_id, "group": run.run_group, "job_type": run.job_type,
                          "name": run.display_name, "project": run.project, "tags": list(run.tags)}
            out["config"].update(_items(run.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "artifact":
            art = record.artifact
            out["artifacts"].append({"name": art.name, "type": art.type,
                                     "metadata": json.loads(art.metadata or "{}")})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def in_group(run: dict[str, Any], group: str | None) -> bool:
    """A seed run of sweep group G: its group is G or starts with G- (G = <sweep>-<date>), or it carries
    the tag sweep:G. No group = every run."""
    if not group:
        return True
    return (run.get("group") == group or str(run.get("group", "")).startswith(f"{group}-")
            or f"sweep:{group}" in run.get("tags", []))


def as_result(summary: dict[str, Any], config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """A result dict from a seed run's summary (its final result), or a `running` stand-in."""
    result = {k: v for k, v in summary.items() if not k.startswith("_") and "/" not in k}
    if "status" not in result:
        digest = next((t.split(":", 1)[1] for t in run.get("tags", []) if t.startswith("digest:")), "unknown")
        result = {"status": "running", "seed": config.get("seed"), "config_digest": digest,
                  "sweep": config.get("sweep", ""), "ablation": config.get("ablation", ""),
                  "error": "the wandb run has no final result: it died or is still running"}
    result["run_dir"] = run.get("folder") or f"wandb:{run.get('id')}"
    result["wandb_run"] = {k: run.get(k) for k in ("id", "group", "name")}
    return result


def offline_runs(folder: Path, group: str | None) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for run_dir in sorted(folder.rglob("offline-run-*")):  # names start with the time: oldest first
        if not run_dir.is_dir():
            continue
        logged = read_offline_run(run_dir)
        run = {**logged["run"], "folder": str(run_dir)}
        if run.get("job_type") == REPORT_JOB_TYPE or not in_group(run, group):
            continue
        result = as_result(logged["summary"], logged["config"], run)
        kept = by_id.get(run["id"])
        # A requeued seed: the later attempt wins unless only the earlier one finished.
        if kept is None or result["status"] != "running" or kept["status"] == "running":
            by_id[run["id"]] = result
    return list(by_id.values())


def online_runs(path: str, group: str | None) -> list[dict[str, Any]]:
    import wandb

    if path.count("/") != 1:
        raise ValueError(f"--from-wandb {path!r}: expected ENTITY/PROJECT or a folder of offline runs")
    filters = {"$or": [{"group": group}, {"tags": {"$in": [f"sweep:{group}"]}}]} if group else None
    out = []
    for r in wandb.Api().runs(path, filters=filters):
        run = {"id": r.id, "group": r.group, "name": r.name, "tags": list(r.tags), "folder": r.url}
        if r.job_type == REPORT_JOB_TYPE or not in_group(run, group):
            continue
        out.append(as_result(dict(r.summary._json_dict), dict(r.config), run))
    return out


def runs_from_wandb(source: str, group: str | None = None) -> list[dict[str, Any]]:
    """The seed runs of `group` (None = all) from a local folder of offline runs or ENTITY/PROJECT."""
    folder = Path(source)
    runs = offline_runs(folder, group) if folder.is_dir() else online_runs(source, group)
    if not runs:
        where = f"group {group!r} in " if group else ""
        raise ValueError(f"--from-wandb: no crownq seed runs found in {where}{source}")
    return runs
