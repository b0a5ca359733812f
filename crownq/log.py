"""crownq's log lines: one logger tree (`crownq.*`), one prefix style (`[crownq] message`).

Under Hydra, `conf/hydra/job_logging/crownq.yaml` routes these lines to the console and to the job's
`<job>.log` (so the log file holds the run's output). Outside Hydra (tests, notebooks, the report
CLI) nothing configures logging, so `logger()` gives the `crownq` logger a stdout handler of its own
when no handler anywhere would show an INFO line.
"""

from __future__ import annotations

import logging
import sys

ROOT = "crownq"
CONSOLE_FORMAT = "[crownq] %(message)s"


def logger(name: str = "") -> logging.Logger:
    """The `crownq` logger (or `crownq.<name>`), ready to print INFO lines."""
    _ensure_handler()
    return logging.getLogger(f"{ROOT}.{name}" if name else ROOT)


def _ensure_handler() -> None:
    root, ours = logging.getLogger(), logging.getLogger(ROOT)
    if root.handlers or ours.handlers:
        return  # Hydra, pytest or the user configured logging: respect it
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)


def metrics_line(metrics: dict) -> str:
    """One console line for a dict of metrics: `key=value` pairs, floats to 5 significant digits."""
    return "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def to_log_files(message: str) -> None:
    """Write `message` to the log files only (e.g. the headline, which is printed on stdout already):
    the job's `<job>.log` then holds everything the console showed, without printing it twice."""
    record = logging.LogRecord(ROOT, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
