"""Hydra callback: when a multirun ends, write the sweep's report, log it to wandb as one `report`
run (grouped with the sweep), and print where everything is: the report's path, its summary table,
the wandb group and the `wandb sync` command for the offline runs.

If the launcher raises first (a job that died hard makes hydra-submitit-launcher raise before
`on_multirun_end`), an exit hook still writes the report of whatever finished.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def summary_table(markdown: str) -> str:
    """The report's `## Summary` section (the headline table), without the rest."""
    lines = markdown.splitlines()
    if "## Summary" not in lines:
        return ""
    start = lines.index("## Summary")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(line for line in lines[start:end] if line.strip())


def sync_command(folders: list[Path]) -> str | None:
    """`wandb sync` with one glob per folder layout that holds offline runs (short for big sweeps)."""
    runs = sorted({p for folder in folders if folder.is_dir() for p in folder.rglob("offline-run-*")
                   if p.is_dir()})
    if not runs:
        return None
    patterns = sorted({str(p.parent / "offline-run-*") for p in runs})
    if len(patterns) > 3:  # one glob per seed folder is noise: one per depth instead
        patterns = sorted({str(p.parent.parent.parent / "*" / p.parent.name / "offline-run-*") for p in runs})
    return "wandb sync " + " ".join(patterns)


class SweepReportCallback(Callback):
    def __init__(self, enabled: bool = True, baseline: str | None = None,
                 baseline_scores: list[float] | None = None) -> None:
        self.enabled = enabled
        self.baseline = baseline
        self.baseline_scores = list(baseline_scores) if baseline_scores else None
        self._sweep_dir: Path | None = None
        self._logger_cfg: Any = None
        self._done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._logger_cfg = config.get("logger")
        atexit.register(self._report_if_pending)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.enabled:
            self._logger_cfg = config.get("logger")
            self._report(Path(str(config.hydra.sweep.dir)))

    def _report_if_pending(self) -> None:
        if not self._done and self._sweep_dir is not None and self._sweep_dir.is_dir():
            # print, not logging: at exit Hydra's log handlers may already be closed
            print("crownq: the multirun ended with an error; writing the report of what finished")
            self._report(self._sweep_dir)

    def _report(self, sweep_dir: Path) -> None:
        from crownq.report.cli import write_report

        self._done = True
        try:
            report = write_report(sweep_dir, baseline=self.baseline, baseline_scores=self.baseline_scores)
        except Exception as exc:  # the sweep's results matter more than its report: never lose them
            print(f"crownq: could not write the report of {sweep_dir}: {type(exc).__name__}: {exc}")
            print(f"crownq: retry by hand with `crownq-report {sweep_dir}`")
            return
        wandb_line = self._log_to_wandb(report)
        self._print_summary(report, sweep_dir, wandb_line)

    def _log_to_wandb(self, report: dict[str, Any]) -> str | None:
        """The report run in the sweep's wandb project (same logger settings as the seeds)."""
        from crownq.tracking import check_mode

        cfg = self._logger_cfg
        try:
            if cfg is None or not check_mode(cfg):
                return None
            from crownq.report.wandb_report import log_report_run

            folder = log_report_run(report, report["wandb_group"], project=cfg.project, mode=cfg.mode,
                                    entity=cfg.entity or None, tags=list(cfg.get("tags") or []),
                                    wandb_dir=cfg.dir or None)
        except Exception as exc:  # a dashboard problem must not hide the report on disk
            print(f"crownq: could not log the report to wandb: {type(exc).__name__}: {exc} (retry: "
                  f"crownq-report {report['sweep_dir']} --wandb)")
            return None
        return f"wandb: group {report['wandb_group']} (report run in {folder})"

    def _print_summary(self, report: dict[str, Any], sweep_dir: Path, wandb_line: str | None) -> None:
        cfg = self._logger_cfg
        lines = ["", f"crownq: sweep finished, {report['runs_ok']} of {report['runs_total']} runs ok",
                 summary_table(report["markdown"]),
                 f"report: {Path(report['out_dir']) / 'report.md'} (re-run: crownq-report {sweep_dir})"]
        if wandb_line:
            lines.append(wandb_line)
        if cfg is not None and cfg.get("mode") == "offline" and cfg.get("enabled", True):
            folders = [sweep_dir] + ([Path(cfg.dir)] if cfg.get("dir") else [])
            command = sync_command(folders)
            if command:
                lines.append(f"upload the offline wandb runs: {command}")
        print("\n".join(lines), flush=True)
