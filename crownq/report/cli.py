"""`crownq-report SWEEP_DIR [--baseline GROUP | --baseline-scores x,y,z [--baseline-bpb a,b,c]] [--wandb]`,
or `crownq-report --from-wandb ENTITY/PROJECT|FOLDER --group SWEEP-DATE` (from wandb run summaries)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from crownq.report.build import build_report, report_from_runs
from crownq.report.collect import REPORT_DIRNAME
from crownq.report.plot import plot_groups
from crownq.report.render import render_markdown
from crownq.report.stats import RECORD_MARGIN_NATS
from crownq.report.submission import submission_for
from crownq.results import json_safe, write_json_atomic


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label)[:100] or "group"


def write_report(sweep_dir: str | Path | None, out_dir: str | Path | None = None, baseline: str | None = None,
                 baseline_scores: list[float] | None = None, margin: float = RECORD_MARGIN_NATS,
                 submission_meta: dict[str, str] | None = None, baseline_bpb: list[float] | None = None,
                 runs: list[dict[str, Any]] | None = None, source: str = "") -> dict[str, Any]:
    """Build the report and write report.md, report.json, val_bpb.png and one submission.json per
    group under `out_dir` (default SWEEP_DIR/report). `runs` (e.g. from wandb, described by `source`)
    replaces reading SWEEP_DIR. Returns the report dict."""
    if runs is not None:
        built = report_from_runs(runs, source, baseline, baseline_scores, margin, baseline_bpb)
    else:
        built = build_report(sweep_dir, baseline, baseline_scores, margin, baseline_bpb)
    report = json_safe(built)
    if out_dir is None and sweep_dir is None:
        raise ValueError("write_report: give out_dir when the runs do not come from a sweep folder")
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
            sub = json_safe(submission_for(group, **(submission_meta or {})))
            write_json_atomic(out / "submissions" / _safe_name(group["label"]) / "submission.json", sub)
    report["markdown"] = markdown
    report["out_dir"] = str(out)
    return report


def log_report_to_wandb(report: dict[str, Any], project: str = "crownq", mode: str = "offline",
                        entity: str | None = None) -> str:
    """One `report` wandb run in the sweep's group (crownq/report/wandb_report.py); returns its folder."""
    from crownq.report.wandb_report import log_report_run

    return log_report_run(report, report["wandb_group"], project=project, mode=mode, entity=entity)


def _scores(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        message = f"must be numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from exc
    if not values:
        raise argparse.ArgumentTypeError("needs at least one value")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crownq-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, nargs="?",
                        help="a multirun folder (or any folder of run folders); omit with --from-wandb")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--baseline", metavar="GROUP", help="group label or config-digest prefix")
    base.add_argument("--baseline-scores", type=_scores, metavar="x,y,z",
                      help="baseline val_loss values (nats); one value = one-sample test")
    parser.add_argument("--baseline-bpb", type=_scores, metavar="a,b,c",
                        help="the same baseline's per-seed val_bpb: adds the leaderboard's one-sided Welch")
    parser.add_argument("--margin", type=float, default=RECORD_MARGIN_NATS,
                        help="improvement required in nats (default: the record rule, 0.005)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--from-wandb", metavar="ENTITY/PROJECT|FOLDER",
                        help="rebuild the report from wandb run summaries: a project on the server or a "
                             "local folder of offline runs")
    parser.add_argument("--group", help="with --from-wandb: the sweep's wandb group <sweep>-<date> "
                                        "(printed at the end of the sweep)")
    parser.add_argument("--wandb", action="store_true", help="also log the report as a wandb `report` run")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online"])
    parser.add_argument("--wandb-project", default="crownq")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--author", default="")
    parser.add_argument("--github-id", default="")
    args = parser.parse_args(argv)
    if (args.sweep_dir is None) == (args.from_wandb is None):
        parser.error("give a sweep folder or --from-wandb ENTITY/PROJECT|FOLDER (one of them)")
    if args.group and not args.from_wandb:
        parser.error("--group goes with --from-wandb (a sweep folder is one sweep already)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = {"author": args.author, "github_id": args.github_id}
    try:
        if args.from_wandb:
            from crownq.report.wandb_source import runs_from_wandb

            runs = runs_from_wandb(args.from_wandb, args.group)
            out = args.out or Path(f"report-{args.group or 'wandb'}")
            report = write_report(None, out, args.baseline, args.baseline_scores, args.margin, meta,
                                  args.baseline_bpb, runs=runs, source=f"wandb:{args.from_wandb}"
                                  + (f" group {args.group}" if args.group else ""))
        else:
            report = write_report(args.sweep_dir, args.out, args.baseline, args.baseline_scores, args.margin,
                                  meta, args.baseline_bpb)
    except (FileNotFoundError, ValueError) as exc:
        print(f"crownq-report: {exc}", file=sys.stderr)
        return 2
    print(report["markdown"])
    print(f"\nreport written to {report['out_dir']}")
    if args.wandb:
        folder = log_report_to_wandb(report, args.wandb_project, args.wandb_mode, args.wandb_entity)
        print(f"wandb report run (group {report['wandb_group']}): {folder}")
    return 0
