"""Sweep reports: result files in, mean/std tables, record-rule tests, plot and submission.json out.

Reads `result.json` files only, never models. Entry points: `crownq-report` (cli.main), the Hydra
callback that runs it when a multirun ends (callback.SweepReportCallback), `write_report`.
"""

from crownq.report.cli import main, write_report

__all__ = ["main", "write_report"]
