"""`crownq-report SWEEP_DIR [--baseline GROUP | --baseline-scores x,y,z] [--wandb]`."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from crownq.report.build import build_report
from crownq.report.collect import REPORT_DIRNAME
from crownq.report.plot import plot_groups
from crownq.report.render import render_markdown
from crownq.report.stats import RECORD_MARGIN_NATS
from crownq.report.submission import submission_for
from crownq.results import write_json_atomic


def _json_safe(value: Any) -> Any:
    """NaN (std of one seed) is not JSON: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label)[:100] or "group"


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None, baseline: str | None = None,
                 baseline_scores: list[float] | None = None, margin: float = RECORD_MARGIN_NATS,
                 submission_meta: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the report and write report.md, report.json, val_bpb.png and one submission.json per
    group under `out_dir` (default SWEEP_DIR/report). Returns the report dict."""
    report = _json_safe(build_report(sweep_dir, baseline, baseline_scores, margin))
    out = Path(out_dir) if out_dir else Path(sweep_dir) / REPORT_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(report)
    tmp = out / ".report.md.tmp"
    tmp.write_text(markdown + "\n", encoding="utf-8")
    tmp.replace(out / "report.md")
    write_json_atomic(out / "report.json", report)
    plot_groups(report, out / "val_bpb.png")
    for group in report["groups"]:
        if group["seed_rows"]:
            sub = _json_safe(submission_for(group, **(submission_meta or {})))
            write_json_atomic(out / "submissions" / _safe_name(group["label"]) / "submission.json", sub)
    report["markdown"] = markdown
    report["out_dir"] = str(out)
    return report


def log_report_to_wandb(report: dict[str, Any], project: str = "crownq", mode: str = "offline",
                        entity: str | None = None) -> str:
    """One aggregate wandb run holding the summary and per-seed tables; returns its folder."""
    import wandb

    summary_cols = ["group", "config_digest", "seeds", "val_bpb_mean", "val_bpb_std", "val_loss_mean",
                    "val_loss_std", "artifact_bytes_mean", "verdict"]
    seed_cols = ["group", "seed", "val_bpb", "val_loss", "artifact_bytes_total", "train_seconds",
                 "eval_seconds", "steps"]
    summary_rows, seed_rows = [], []
    for g in report["groups"]:
        verdict = (g.get("vs_baseline") or {}).get("verdict", "")
        summary_rows.append([g["label"], g["config_digest"][:12], len(g["seeds_ok"]), g["val_bpb"]["mean"],
                             g["val_bpb"]["std"], g["val_loss"]["mean"], g["val_loss"]["std"],
                             g["artifact_bytes_total"]["mean"], verdict])
        seed_rows += [[g["label"]] + [r[c] for c in seed_cols[1:]] for r in g["seed_rows"]]
    sweep_name = Path(report["sweep_dir"]).name
    run = wandb.init(project=project, entity=entity, mode=mode, job_type="report", group=sweep_name,
                     name=f"report-{sweep_name}", dir=report["out_dir"],
                     settings=wandb.Settings(x_disable_stats=True, console="off", silent=True),
                     reinit="create_new")
    try:
        run.log({"summary": wandb.Table(columns=summary_cols, data=summary_rows),
                 "per_seed": wandb.Table(columns=seed_cols, data=seed_rows)})
        run.summary.update({"runs_ok": report["runs_ok"], "runs_total": report["runs_total"]})
    finally:
        run.finish()
    return str(Path(run.dir).parent)


def _scores(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        message = f"--baseline-scores must be numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from exc
    if not values:
        raise argparse.ArgumentTypeError("--baseline-scores needs at least one value")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crownq-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (or any folder of run folders)")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--baseline", metavar="GROUP", help="group label or config-digest prefix")
    base.add_argument("--baseline-scores", type=_scores, metavar="x,y,z",
                      help="baseline val_loss values (nats); one value = one-sample test")
    parser.add_argument("--margin", type=float, default=RECORD_MARGIN_NATS,
                        help="improvement required in nats (default: the record rule, 0.005)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--wandb", action="store_true", help="also log an aggregate wandb run")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online"])
    parser.add_argument("--wandb-project", default="crownq")
    parser.add_argument("--author", default="")
    parser.add_argument("--github-id", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = write_report(args.sweep_dir, args.out, args.baseline, args.baseline_scores, args.margin,
                              {"author": args.author, "github_id": args.github_id})
    except (FileNotFoundError, ValueError) as exc:
        print(f"crownq-report: {exc}", file=sys.stderr)
        return 2
    print(report["markdown"])
    print(f"\nreport written to {report['out_dir']}")
    if args.wandb:
        print(f"wandb aggregate run: {log_report_to_wandb(report, args.wandb_project, args.wandb_mode)}")
    return 0
