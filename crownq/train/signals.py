"""Preemption: SIGTERM/SIGUSR1 only set a flag; the loop saves at the end of the current step and raises.

Doing no work inside the handler keeps the checkpoint consistent (never mid-step) and avoids running
collectives or file I/O from a signal context.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class TrainingPreempted(RuntimeError):
    """Raised after a checkpoint was saved because a stop was requested; the launcher should requeue."""

    def __init__(self, step: int, checkpoint: str | None, reason: str):
        super().__init__(f"training stopped at step {step} ({reason}); checkpoint: {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
        self.reason = reason


_requested: list[str] = []


def request_stop(reason: str = "requested") -> None:
    """Ask the running training loop to checkpoint and stop after its current step (e.g. from submitit's
    checkpoint() callback, which runs in the same process)."""
    _requested.append(reason)


def stop_requested() -> str | None:
    return _requested[-1] if _requested else None


def clear_stop_request() -> None:
    _requested.clear()


class StopSignalHandler:
    """Context manager installing the flag-setting handler for SIGTERM and SIGUSR1 (main thread only)."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        request_stop(signal.Signals(signum).name)

    def __enter__(self) -> StopSignalHandler:
        # A request made before training started (e.g. SLURM's warning during data preparation) is kept.
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()
        clear_stop_request()
