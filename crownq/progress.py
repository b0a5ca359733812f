"""Progress of the long stages (calibration, GPTQ, pruning, evaluation, TTT).

On a terminal it is a tqdm bar. In a captured log (SLURM, `> file`, Hydra's `<job>.log`) carriage
returns are noise, so it writes one log line at most every `every_s` seconds instead, plus a final
line with the total time: `[crownq] sliding64 120/480 windows (25%)  15,360 tokens/s  ETA 8 s`.
`CROWNQ_PROGRESS_SECONDS` sets `every_s` (default 10); `CROWNQ_PROGRESS=lines|bar|off` forces a style.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from crownq.log import logger

DEFAULT_EVERY_S = 10.0


def _style() -> str:
    forced = os.environ.get("CROWNQ_PROGRESS", "").strip().lower()
    if forced in ("lines", "bar", "off"):
        return forced
    return "bar" if sys.stderr.isatty() else "lines"


def _every_s() -> float:
    text = os.environ.get("CROWNQ_PROGRESS_SECONDS", "")
    try:
        return float(text) if text else DEFAULT_EVERY_S
    except ValueError as exc:
        raise ValueError(f"CROWNQ_PROGRESS_SECONDS must be a number of seconds, got {text!r}") from exc


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """`with Progress("gptq", total=12, unit="groups") as p: ... p.update(1)`.

    `rate_unit` names a second quantity counted with `update(n, amount=...)` (e.g. tokens) whose rate
    is shown instead of the unit's. A disabled Progress (other ranks, tests) does nothing."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", rate_unit: str | None = None,
                 enabled: bool = True, every_s: float | None = None) -> None:
        self.desc, self.total, self.unit, self.rate_unit = desc, total, unit, rate_unit
        self.style = _style() if enabled else "off"
        self.every_s = _every_s() if every_s is None else every_s
        self.count, self.amount = 0, 0
        self._start = self._last = time.perf_counter()
        self._bar: Any = None
        if self.style == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self.style == "lines":
            self.style = "off"  # no "done in" line for a stage that raised
        self.close()

    def update(self, n: int = 1, amount: int = 0) -> None:
        self.count += n
        self.amount += amount
        if self.style == "bar":
            self._bar.update(n)
            if self.rate_unit:
                self._bar.set_postfix_str(self._rate(), refresh=False)
        elif self.style == "lines":
            now = time.perf_counter()
            if now - self._last >= self.every_s:
                self._last = now
                logger().info(self.line())

    def _rate(self) -> str:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        if self.rate_unit:
            return f"{self.amount / elapsed:,.0f} {self.rate_unit}/s"
        return f"{self.count / elapsed:,.1f} {self.unit}/s"

    def line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self._start
        done = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
        parts = [f"{self.desc} {done}"]
        if self.total and not final:
            parts[0] += f" ({100.0 * self.count / self.total:.0f}%)"
        parts.append(self._rate())
        if final:
            parts.append(f"done in {_duration(elapsed)}")
        elif self.total and self.count:
            parts.append(f"ETA {_duration(elapsed * (self.total - self.count) / self.count)}")
        return "  ".join(parts)

    def close(self) -> None:
        if self.style == "bar" and self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.style == "lines":
            logger().info(self.line(final=True))
        self.style = "off"  # a second close (or an update after it) prints nothing
