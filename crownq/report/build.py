"""Sweep folder -> the report's data (report.json): per-seed rows, group statistics, baseline
tests, compliance, failures. Rendering (markdown, plot, submission.json) lives beside it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from crownq.report.collect import Group, collect_runs, find_group, group_runs
from crownq.report.stats import RECORD_MARGIN_NATS, compare_to_baseline, summarize

ARTIFACT_LIMIT_BYTES = 16_000_000
TRAIN_LIMIT_SECONDS = 600.0
EVAL_LIMIT_SECONDS = 600.0

SEED_COLUMNS = ("seed", "steps", "train_seconds", "step_avg_ms", "prequant_val_bpb", "roundtrip_val_bpb",
                "sliding_val_bpb", "val_bpb", "val_loss", "artifact_bytes_total", "pruned", "eval_seconds")
SUMMARY_KEYS = ("val_bpb", "val_loss", "artifact_bytes_total", "artifact_bytes_model")


def _step_avg_ms(run: dict[str, Any]) -> float | None:
    if run.get("step_avg_ms") is not None:
        return run["step_avg_ms"]
    steps, seconds = run.get("steps"), run.get("train_seconds")
    return 1000.0 * seconds / steps if steps and seconds is not None else None


def seed_row(run: dict[str, Any]) -> dict[str, Any]:
    row = {key: run.get(key) for key in SEED_COLUMNS}
    row["step_avg_ms"] = _step_avg_ms(run)
    row["run_dir"] = run.get("run_dir")
    row["reused_from"] = run.get("reused_from")  # copied from an identical finished run (crownq/reuse.py)
    return row


def compliance(ok_runs: list[dict[str, Any]]) -> dict[str, bool]:
    """Every seed must pass (records are judged seed by seed). Budgets are the 8xH100 rules."""
    def every(pred) -> bool:
        return bool(ok_runs) and all(pred(r) for r in ok_runs)

    return {
        "artifact_under_16mb": every(lambda r: r["artifact_bytes_total"] <= ARTIFACT_LIMIT_BYTES),
        "train_under_600s": every(lambda r: r["train_seconds"] + _training_calibration_seconds(r)
                                  <= TRAIN_LIMIT_SECONDS),
        "eval_under_600s": every(lambda r: r["eval_seconds"] <= EVAL_LIMIT_SECONDS),
        # crownq's only test-time training is score-first (enforced in crownq/eval), or none at all.
        "score_first_ttt": every(lambda r: r.get("ttt_score_first", True)),
    }


def _training_calibration_seconds(run: dict[str, Any]) -> float:
    """GPTQ calibration that reads training batches counts against the training budget (parameter-golf
    rule); self-generated calibration reads no training data and runs after the cap."""
    if run.get("calibration_source", "train") != "train":
        return 0.0
    return run.get("calibration_seconds") or 0.0


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _ok_values(runs: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(seeds, values) of the runs whose `key` is a finite number, in seed order."""
    pairs = [(r.get("seed"), r.get(key)) for r in runs]
    kept = [(s, float(v)) for s, v in pairs if v is not None and math.isfinite(float(v))]
    return [s for s, _ in kept], [v for _, v in kept]


def group_entry(group: Group, baseline: dict[str, Any] | None, margin: float) -> dict[str, Any]:
    ok = group.ok
    entry: dict[str, Any] = {
        "label": group.label,
        "config_digest": group.digest,
        "sweep": next((r.get("sweep") for r in group.runs if r.get("sweep")), ""),
        "seeds_ok": [r["seed"] for r in ok],
        "seed_rows": [seed_row(r) for r in ok],
        "failed": [{"seed": r.get("seed"), "status": r.get("status"), "error": r.get("error", ""),
                    "run_dir": r.get("run_dir")} for r in group.not_ok],
        "compliance": compliance(ok),
        "hardware": next((r.get("hardware") for r in ok), None),
        "torch_version": next((r.get("torch_version") for r in ok), None),
        "model_params": next((r.get("model_params") for r in ok), None),
        "artifact_bytes_code": max((r["artifact_bytes_code"] for r in ok), default=None),
        "artifact_bytes_code_program": max((r.get("artifact_bytes_code_program") or 0 for r in ok),
                                           default=0) or None,
        "code_bytes_mode": next((r.get("code_bytes_mode") for r in ok if r.get("code_bytes_mode")), None),
    }
    for key in SUMMARY_KEYS:
        s = summarize(_finite([r.get(key) for r in ok]))
        entry[key] = {"mean": s.mean, "std": s.std, "n": s.n}
    if baseline is not None and ok:
        seeds, losses = _ok_values(ok, "val_loss")
        entry["vs_baseline"] = compare_to_baseline(
            losses, baseline["val_loss"], margin,
            candidate_seeds=seeds if baseline.get("seeds") else None, baseline_seeds=baseline.get("seeds"),
            baseline_fixed=baseline.get("group") is None,
            candidate_bpb=_ok_values(ok, "val_bpb")[1], baseline_bpb=baseline.get("val_bpb"))
    return entry


def _wandb_group(runs: list[dict[str, Any]], source: str) -> str:
    """The sweep's wandb group prefix `<sweep>-<date>` (crownq/tracking.py), from the runs' identity;
    results written before runs recorded their sweep folder fall back to the report's folder."""
    from crownq.tracking import sweep_group

    for run in runs:
        if run.get("sweep_dir"):
            return sweep_group(run)
    sweep = next((r.get("sweep") for r in runs if r.get("sweep")), "")
    return sweep_group({"sweep": sweep, "sweep_dir": source})


def build_report(sweep_dir: str | Path, baseline: str | None = None,
                 baseline_scores: list[float] | None = None, margin: float = RECORD_MARGIN_NATS,
                 baseline_bpb: list[float] | None = None) -> dict:
    """The report of a sweep folder's result files as a JSON-ready dict (see report_from_runs)."""
    runs = collect_runs(sweep_dir)
    return report_from_runs(runs, str(Path(sweep_dir).resolve()), baseline, baseline_scores, margin,
                            baseline_bpb)


def report_from_runs(runs: list[dict[str, Any]], source: str, baseline: str | None = None,
                     baseline_scores: list[float] | None = None, margin: float = RECORD_MARGIN_NATS,
                     baseline_bpb: list[float] | None = None) -> dict:
    """The report of result dicts (from result.json files or wandb run summaries). `baseline` names a
    group (label or digest prefix) whose per-seed scores are the baseline; `baseline_scores` gives the
    baseline's per-seed val_loss (nats, the record rule) and `baseline_bpb` its per-seed val_bpb (the
    leaderboard's one-sided Welch) directly, e.g. the previous record's."""
    if baseline is not None and (baseline_scores is not None or baseline_bpb is not None):
        raise ValueError("give either --baseline GROUP or --baseline-scores/--baseline-bpb, not both")
    if baseline_bpb is not None and baseline_scores is None:
        raise ValueError("--baseline-bpb needs --baseline-scores too (the record rule is judged in nats of "
                         "val_loss; the bpb test is quoted beside it)")
    groups = group_runs(runs)
    baseline_info: dict[str, Any] | None = None
    if baseline is not None:
        base_group = find_group(groups, baseline)
        seeds, losses = _ok_values(base_group.ok, "val_loss")
        baseline_info = {"group": base_group.label, "config_digest": base_group.digest, "val_loss": losses,
                         "seeds": seeds, "val_bpb": _ok_values(base_group.ok, "val_bpb")[1]}
    elif baseline_scores is not None:
        baseline_info = {"group": None, "val_loss": [float(v) for v in baseline_scores]}
        if baseline_bpb:
            baseline_info["val_bpb"] = [float(v) for v in baseline_bpb]
    entries = []
    for group in groups:
        is_baseline = baseline_info is not None and group.digest == baseline_info.get("config_digest")
        entries.append(group_entry(group, None if is_baseline else baseline_info, margin))
    return {
        "sweep_dir": source,
        "wandb_group": _wandb_group(runs, source),
        "runs_total": len(runs),
        "runs_ok": sum(r.get("status") == "ok" for r in runs),
        "baseline": baseline_info,
        "limits": {"artifact_bytes": ARTIFACT_LIMIT_BYTES, "train_seconds": TRAIN_LIMIT_SECONDS,
                   "eval_seconds": EVAL_LIMIT_SECONDS, "margin_nats": margin},
        "groups": entries,
    }
