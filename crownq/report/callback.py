"""Hydra callback: write the sweep's report when a multirun ends.

If the launcher raises first (a job that died hard makes hydra-submitit-launcher raise before
`on_multirun_end`), an exit hook still writes the report of whatever finished.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepReportCallback(Callback):
    def __init__(self, enabled: bool = True, baseline: str | None = None,
                 baseline_scores: list[float] | None = None) -> None:
        self.enabled = enabled
        self.baseline = baseline
        self.baseline_scores = list(baseline_scores) if baseline_scores else None
        self._sweep_dir: Path | None = None
        self._done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        atexit.register(self._report_if_pending)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.enabled:
            self._report(Path(str(config.hydra.sweep.dir)))

    def _report_if_pending(self) -> None:
        if not self._done and self._sweep_dir is not None and self._sweep_dir.is_dir():
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
        print(report["markdown"])
        print(f"\ncrownq: report written to {report['out_dir']} (re-run: crownq-report {sweep_dir})")
