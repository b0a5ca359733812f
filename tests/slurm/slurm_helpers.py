"""Helpers shared by the SLURM tests (a uniquely named module: `conftest` is ambiguous across test dirs)."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EVIDENCE: list[str] = []
# Seconds a requeued job still waits before it may start again (see finish()).
REQUEUE_DELAY_S = 3


def slurm(*args: str, check: bool = True, timeout: float = 30) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def record(title: str, text: str) -> None:
    EVIDENCE.append(f"--- {title}\n{text.rstrip()}")


def sacct_lines(job_id: str) -> str:
    """Every attempt of the job (requeues included) and its steps, as accounting recorded them."""
    return slurm("sacct", "--duplicates", "-j", job_id.split("_")[0], "-o",
                 "JobID%16,JobName%26,State%14,ExitCode,Elapsed,NTasks,Start", check=False)


def finish(proc: subprocess.Popen, name: str, timeout: float = 180) -> None:
    """Wait for a background sweep, shortening SLURM's BeginTime delay (~2 min) of requeued jobs.

    The delay is not skipped outright: a requeued job restarted within the second of its requeue gets a
    job credential issued no later than the one slurmd just revoked, so slurmd refuses to launch it
    ("Job credential revoked") and the job ends FAILED. A few seconds of delay are kept for that reason.
    """
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "sweep did not finish in time"
        for line in slurm("squeue", "-h", "-r", "-n", name, "-o", "%i %T %r %S").splitlines():
            job, state, reason, begin = line.split(maxsplit=3)
            if state == "PENDING" and reason == "BeginTime" and _seconds_until(begin) > REQUEUE_DELAY_S + 2:
                slurm("scontrol", "update", f"JobId={job}", f"StartTime=now+{REQUEUE_DELAY_S}", check=False)
        time.sleep(0.5)
    out, err = proc.communicate()
    assert proc.returncode == 0, f"sweep failed:\n{out[-3000:]}\n{err[-3000:]}"


def _seconds_until(when: str) -> float:
    """Seconds from now to squeue's %S time (local, ISO); 0 for N/A or anything unparsable."""
    try:
        return (datetime.fromisoformat(when.strip()) - datetime.now()).total_seconds()
    except ValueError:
        return 0.0
