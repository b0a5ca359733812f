"""The sweep's report as one wandb run (job_type `report`) in the sweep's project, grouped with the
sweep (`<sweep>-<date>`, the prefix of every cell's group, also tagged `sweep:<sweep>-<date>`):
a summary table (mean ± std per cell), the per-seed table, the val_bpb plot and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crownq.tracking import wandb_settings

SUMMARY_COLUMNS = ["group", "config_digest", "seeds", "val_bpb_mean", "val_bpb_std", "val_loss_mean",
                   "val_loss_std", "artifact_bytes_mean", "verdict", "paired_p", "leaderboard_p",
                   "seeds_needed_p01", "seeds_needed_bar"]
SEED_COLUMNS = ["group", "seed", "val_bpb", "val_loss", "artifact_bytes_total", "train_seconds",
                "eval_seconds", "steps", "reused_from"]


def _test_p(test: dict[str, Any] | None) -> float | None:
    return None if not test else test.get("p_value")


def summary_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for g in report["groups"]:
        vs = g.get("vs_baseline") or {}
        needed = vs.get("seeds_needed") or {}
        rows.append([g["label"], g["config_digest"][:12], len(g["seeds_ok"]), g["val_bpb"]["mean"],
                     g["val_bpb"]["std"], g["val_loss"]["mean"], g["val_loss"]["std"],
                     g["artifact_bytes_total"]["mean"], vs.get("verdict", ""), _test_p(vs.get("paired")),
                     _test_p(vs.get("leaderboard")), needed.get("p01"), needed.get("record_bar")])
    return rows


def seed_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[g["label"]] + [r.get(c) for c in SEED_COLUMNS[1:]] for g in report["groups"]
            for r in g["seed_rows"]]


def log_report_run(report: dict[str, Any], group: str, project: str = "crownq", mode: str = "offline",
                   entity: str | None = None, tags: list[str] | tuple[str, ...] = (),
                   wandb_dir: str | Path | None = None) -> str:
    """Log `report` (write_report's dict, with out_dir) as one wandb run; returns its local folder."""
    import wandb

    out_dir = Path(report["out_dir"])
    wandb_dir = Path(wandb_dir) if wandb_dir else out_dir
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, entity=entity or None, mode=mode, job_type="report", group=group,
                     name=f"report-{group}", tags=[*tags, "report", f"sweep:{group}"][:20],
                     dir=str(wandb_dir), settings=wandb_settings(), reinit="create_new",
                     config={"sweep_dir": report["sweep_dir"], "baseline": report.get("baseline")})
    try:
        logged: dict[str, Any] = {
            "summary": wandb.Table(columns=SUMMARY_COLUMNS, data=summary_rows(report)),
            "per_seed": wandb.Table(columns=SEED_COLUMNS, data=seed_rows(report)),
        }
        plot = out_dir / "val_bpb.png"
        if plot.is_file():
            logged["val_bpb"] = wandb.Image(str(plot))
        run.log(logged)
        run.summary.update({"runs_ok": report["runs_ok"], "runs_total": report["runs_total"],
                            "groups": len(report["groups"])})
        if (out_dir / "report.md").is_file():
            run.save(str(out_dir / "report.md"), base_path=str(out_dir), policy="now")
    finally:
        run.finish()
    return str(Path(run.dir).parent)
