"""What the launching process checks around a run or a sweep: every job's config before the first seed
trains, and the exit status once the jobs are done (a failed seed makes it non-zero).

Launchers call `validate_jobs` before launching and `record_returns` after; the entry point calls
`check_config` before importing the pipeline and ends with `exit_status()`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from crownq.config.validate import ConfigError, validate

# Jobs of this process's sweep that did not finish with status ok, and whether that is acceptable.
_failed: list[str] = []
_allow_failed: list[bool] = [False]


def check_config(cfg: Any) -> None:
    """A single run's (or a job's) config; a bad value prints its line and exits 2 before any work."""
    try:
        validate(cfg)
    except ConfigError as exc:
        print(f"crownq: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def validate_jobs(hydra_context: Any, config: Any, job_overrides: Sequence[Sequence[str]],
                  initial_job_idx: int = 0) -> list[Any]:
    """Compose and validate every job of the sweep; one bad cell stops the sweep before any job starts.
    Returns the composed job configs (the submitit launcher submits exactly these)."""
    configs, errors = [], []
    for offset, overrides in enumerate(job_overrides):
        cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        try:
            validate(cfg)
        except ConfigError as exc:
            detail = str(exc).split("\n", 1)[-1]
            errors.append(f"job #{initial_job_idx + offset} ({' '.join(overrides)}):\n{detail}")
        configs.append(cfg)
    if errors:
        raise ConfigError(f"{len(errors)} of {len(job_overrides)} sweep jobs have invalid configs; no job "
                          "was started:\n" + "\n".join(errors))
    _allow_failed[0] = bool(config.get("allow_failed_seeds", False))
    return configs


def job_failure(ret: Any) -> str | None:
    """'status: error' of a job that did not finish ok (a Hydra JobReturn), else None."""
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.FAILED:
        return f"raised {type(ret._return_value).__name__}: {ret._return_value}"
    value = ret._return_value
    if isinstance(value, dict) and value.get("status") not in (None, "ok"):
        return f"{value.get('status')}: {value.get('error', '')}".strip()
    return None


def record_returns(returns: Sequence[Any]) -> None:
    for ret in returns:
        why = job_failure(ret)
        if why is not None:
            _failed.append(f"{' '.join(ret.overrides)}: {why.splitlines()[0] if why else why}")


def exit_status() -> int:
    """1 when a job of this process's sweep failed (unless allow_failed_seeds=true), else 0."""
    if not _failed:
        return 0
    if _allow_failed[0]:
        print(f"crownq: {len(_failed)} sweep job(s) did not finish ok; exit status 0 because "
              "allow_failed_seeds=true", file=sys.stderr)
        return 0
    print(f"crownq: {len(_failed)} sweep job(s) did not finish ok (see the report); exit status 1 "
          "(allow_failed_seeds=true keeps it 0):\n  " + "\n  ".join(_failed), file=sys.stderr)
    return 1


def reset() -> None:
    """Forget recorded failures (tests run several sweeps in one process)."""
    _failed.clear()
    _allow_failed[0] = False
