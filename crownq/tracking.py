"""wandb as the dashboard (never the database: result.json is). One wandb run per seed.

Offline by default (no account, nothing leaves the machine; `wandb sync` uploads later),
online when the logger config says so, and a no-op when `logger=none`. Only rank 0 tracks.
The run id is kept in the run folder so a requeued job resumes the same wandb run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

WANDB_ID_FILENAME = "wandb_run_id.txt"


class Tracker:
    """A handle the pipeline logs through; `finish` is safe to call more than once."""

    def __init__(self, run: Any = None) -> None:
        self._run = run

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def run_dir(self) -> str | None:
        return None if self._run is None else str(Path(self._run.dir).parent)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        # Training passes `step` inside the dict; wandb wants it as the step argument.
        metrics = dict(metrics)
        step = metrics.pop("step", step)
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float, bool)) or v is None}
        self._run.log(numeric, step=int(step) if step is not None else None)

    def finish(self, summary: Mapping[str, Any] | None = None, failed: bool = False) -> None:
        if self._run is None:
            return
        run, self._run = self._run, None
        try:
            if summary:
                run.summary.update({k: v for k, v in summary.items() if k != "traceback"})
        finally:
            run.finish(exit_code=1 if failed else 0)


def _stored_run_id(run_dir: Path) -> str:
    """Reuse the id of this run folder's earlier attempt (requeue), else make and store a new one."""
    id_file = run_dir / WANDB_ID_FILENAME
    if id_file.is_file():
        stored = id_file.read_text(encoding="utf-8").strip()
        if stored:
            return stored
    run_id = secrets.token_hex(4)  # wandb ids: short [a-z0-9]
    id_file.parent.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run_id + "\n", encoding="utf-8")
    return run_id


def start_tracking(cfg: DictConfig, run_dir: str | os.PathLike, digest: str, enabled: bool = True) -> Tracker:
    """Open the seed's wandb run (or a no-op tracker when disabled or not rank 0)."""
    logger = cfg.logger
    if not enabled or not logger.enabled or logger.mode == "disabled":
        return Tracker(None)
    if logger.mode not in ("offline", "online"):
        raise ValueError(f"logger.mode must be offline, online or disabled, got {logger.mode!r}")
    import wandb

    run_dir = Path(run_dir)
    wandb_dir = Path(logger.dir) if logger.dir else run_dir
    wandb_dir.mkdir(parents=True, exist_ok=True)
    group = logger.group or cfg.sweep or digest[:12]
    ablation = cfg.ablation or "default"
    run = wandb.init(
        project=logger.project,
        entity=logger.entity or None,
        group=group,
        job_type=logger.job_type or "ablation",
        name=f"{ablation}-seed{cfg.seed}",
        config=OmegaConf.to_container(cfg, resolve=True),
        dir=str(wandb_dir),
        mode=logger.mode,
        id=_stored_run_id(run_dir),
        resume="allow",
        tags=[f"digest:{digest[:12]}", f"ablation:{ablation}"],
        # The system monitor costs a process and CPU for nothing a seed sweep needs.
        settings=wandb.Settings(x_disable_stats=True, console="off", silent=True),
        reinit="create_new",
    )
    return Tracker(run)


def log_callable(tracker: Tracker, echo: Callable[[str], None] | None = print) -> Callable[[dict], None]:
    """The `log` argument handed to the stages: metrics go to wandb and one line to the console."""

    def log(metrics: dict) -> None:
        tracker.log(metrics)
        if echo is not None:
            echo("  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in metrics.items()))

    return log
