"""A job that died without returning (killed, OOM, node failure, time limit) becomes a failed seed.

The dead process could not write its own `result.json` (at best it left `status: running`), so the
launcher writes it: what SLURM says happened (sacct state), submitit's error and the end of the job's
stderr. The report then lists the seed as failed next to the seeds that finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from crownq.results import RESULT_FILENAME, write_json_atomic

STDERR_TAIL_LINES = 30
# squeue states of a job that is not over: submitit's sacct parsing can read a requeued job as FAILED
# for a moment (the killed attempt's step row), so these states mean "keep waiting".
ALIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                          "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT"})


def squeue_state(job_id: str) -> str:
    """The job's state as slurmctld sees it now ('' when squeue no longer lists it or cannot be asked)."""
    import subprocess

    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    states = out.stdout.split() if out.returncode == 0 else []
    return states[0].upper() if states else ""


def still_alive(job_id: str) -> bool:
    return squeue_state(job_id) in ALIVE_STATES


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _previous_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hard_failure_result(job: Any, exc: BaseException, job_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Write (atomically) and return the result of a job that ended without a value for the launcher.

    A result the run itself already finished (`ok`) or explained (`failed`) is kept, with SLURM's view
    added; a `running`/`interrupted` one or none at all becomes `failed`.
    """
    path = Path(job_dir) / RESULT_FILENAME
    previous = _previous_result(path)
    try:  # ask sacct now: the watcher's cached state can lag behind a job that just died
        state = str(job.get_info(mode="force").get("State") or job.state)
    except Exception as state_exc:  # sacct unreachable: say so rather than hide the original error
        state = f"unknown ({type(state_exc).__name__})"
    try:
        stderr = job.stderr() or ""
    except Exception:
        stderr = ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    slurm = {"slurm_job_id": str(job.job_id), "slurm_state": state, "stderr_tail": _tail(stderr)}
    if previous.get("status") in ("ok", "failed"):
        result = {**previous, **slurm}
    else:
        result = {
            **previous,
            "seed": previous.get("seed", cfg.get("seed")),
            "status": "failed",
            "error": f"{type(exc).__name__}: job {job.job_id} ended in state {state} without a result "
                     f"({message})",
            "run_dir": str(job_dir),
            **slurm,
        }
    write_json_atomic(path, result)
    return result
