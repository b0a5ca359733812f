"""One group of the report -> submission.json in the schema accepted parameter-golf records use."""

from __future__ import annotations

import datetime as dt
from typing import Any


def submission_for(group: dict[str, Any], author: str = "", github_id: str = "", name: str = "",
                   blurb: str = "") -> dict[str, Any]:
    rows = group["seed_rows"]
    sub: dict[str, Any] = {
        "author": author,
        "github_id": github_id,
        "name": name or group["label"],
        "blurb": blurb or f"crownq sweep group {group['label']} (config {group['config_digest'][:12]})",
        "date": dt.date.today().isoformat(),
        "track": "10min_16mb",
        "val_loss": group["val_loss"]["mean"],
        "val_bpb": group["val_bpb"]["mean"],
        "val_bpb_std": group["val_bpb"]["std"],
        "seeds": [r["seed"] for r in rows],
        "seed_results": {
            str(r["seed"]): {"val_bpb": r["val_bpb"], "val_loss": r["val_loss"],
                             "artifact_bytes": r["artifact_bytes_total"], "steps": r["steps"],
                             "step_avg_ms": r["step_avg_ms"], "eval_time_s": r["eval_seconds"]}
            for r in rows
        },
        # The cap applies to every seed, so the submission states the largest artifact.
        "bytes_total": max((r["artifact_bytes_total"] for r in rows), default=None),
        "bytes_code": group["artifact_bytes_code"],
        "hardware": group["hardware"],
        "pytorch_version": group["torch_version"],
        "compliance": dict(group["compliance"]),
    }
    vs = group.get("vs_baseline")
    if vs and vs.get("improvement_test"):
        test = vs["improvement_test"]
        sub["p_value"] = test["p_value"]
        sub["t_statistic"] = test["t_statistic"]
        if test["kind"] == "welch":
            sub["welch_df"] = test["df"]
    return sub
