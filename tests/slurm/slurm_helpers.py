"""Helpers shared by the SLURM tests (a uniquely named module: `conftest` is ambiguous across test dirs)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EVIDENCE: list[str] = []


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
    """Wait for a background sweep; requeued jobs wait out SLURM's BeginTime delay (~2 min): skip it."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "sweep did not finish in time"
        for line in slurm("squeue", "-h", "-r", "-n", name, "-o", "%i %T %r").splitlines():
            job, state, reason = line.split(maxsplit=2)
            if state == "PENDING" and reason == "BeginTime":
                slurm("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
        time.sleep(0.5)
    out, err = proc.communicate()
    assert proc.returncode == 0, f"sweep failed:\n{out[-3000:]}\n{err[-3000:]}"
