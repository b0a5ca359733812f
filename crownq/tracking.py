"""wandb as the dashboard (never the database: result.json is). One wandb run per seed.

Offline by default (no account, nothing leaves the machine; `wandb sync` uploads later), online when
the logger config says so, and a no-op when `logger=none`. Only rank 0 tracks.

Identity comes from the run's identity (`pipeline._run_identity`) in one place, `wandb_identity`:

- group    = <sweep>-<sweep date>-<cell>: exactly one configuration of one sweep, so wandb's group
             mean/std never mixes configurations or sweeps;
- name     = <cell>-seed<N> (unique within the sweep);
- job_type = the sweep's name, or `single` for a run outside a sweep;
- tags     = the user's logger.tags + digest:<config digest> + cell:<cell> + sweep:<sweep>-<date>.

The run id is kept in the run folder, so a requeued job resumes the same wandb run. A finished run
also logs its artifact.ptz as a wandb Artifact of type `model`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from crownq.log import logger, metrics_line

WANDB_ID_FILENAME = "wandb_run_id.txt"
SINGLE_JOB_TYPE = "single"
DEFAULT_CELL = "default"
# wandb limits: group/name 128 characters, tags 64.
_GROUP_MAX, _TAG_MAX = 128, 64
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[_/T-](\d{2}-\d{2}-\d{2})")


def sweep_stamp(folder: str) -> str:
    """The date of a sweep (or single run) from its folder: Hydra's default folders carry the start
    time (`multirun/seeds/2026-11-25_19-23-19`, `outputs/2026-11-25/19-23-19`), so every seed of the
    sweep and every requeue agree on it. A custom folder without a date gets a short hash of its path
    instead (still the same for every seed of the sweep)."""
    found = _STAMP.findall(folder)
    if found:
        day, time = found[-1]
        return f"{day}_{time}"
    return hashlib.sha256(str(Path(folder).absolute()).encode()).hexdigest()[:8]


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    tail = hashlib.sha256(text.encode()).hexdigest()[:8]  # clipped labels must stay distinct
    return f"{text[:limit - 9]}~{tail}"


def sweep_group(identity: Mapping[str, Any]) -> str:
    """`<sweep>-<date>`: what every run of one sweep shares (the report run's group, a `sweep:` tag)."""
    sweep = identity.get("sweep") or SINGLE_JOB_TYPE
    folder = identity.get("sweep_dir") or identity.get("run_dir") or ""
    return f"{sweep}-{sweep_stamp(str(folder))}"


def wandb_identity(identity: Mapping[str, Any], tags: list[str] | tuple[str, ...] = (),
                   group: str = "", job_type: str = "") -> dict[str, Any]:
    """group, name, job_type and tags of one seed's wandb run (see the module docstring).
    `group`/`job_type` are the user's logger.group/logger.job_type overrides (empty = derived)."""
    cell = identity.get("ablation") or DEFAULT_CELL
    digest = str(identity.get("config_digest") or "")[:12]
    prefix = sweep_group(identity)
    return {
        "group": _clip(group or f"{prefix}-{cell}", _GROUP_MAX),
        "name": _clip(f"{cell}-seed{identity.get('seed')}", _GROUP_MAX),
        "job_type": job_type or identity.get("sweep") or SINGLE_JOB_TYPE,
        "tags": [_clip(str(t), _TAG_MAX) for t in tags]
        + [f"digest:{digest}", _clip(f"cell:{cell}", _TAG_MAX), _clip(f"sweep:{prefix}", _TAG_MAX)],
    }


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
                if not failed:
                    log_model_artifact(run, summary)
        finally:
            run.finish(exit_code=1 if failed else 0)


def log_model_artifact(run: Any, result: Mapping[str, Any]) -> None:
    """The exact file behind a score, as a wandb Artifact (type `model`) with its byte counts."""
    path = result.get("artifact_path")
    if not path or not Path(path).is_file():
        return
    import wandb

    digest = str(result.get("config_digest") or "unknown")[:12]
    artifact = wandb.Artifact(
        name=f"model-{digest}-seed{result.get('seed')}", type="model",
        metadata={key: result.get(key) for key in (
            "artifact_bytes_model", "artifact_bytes_code", "artifact_bytes_total", "val_bpb", "val_loss",
            "val_method", "config_digest", "code_digest", "seed", "reused_from")})
    artifact.add_file(str(path), name=Path(path).name)
    run.log_artifact(artifact)


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


def _identity_of(cfg: DictConfig, identity: Mapping[str, Any] | str, run_dir: Path) -> dict[str, Any]:
    if isinstance(identity, str):  # a bare config digest (callers outside the pipeline)
        identity = {"config_digest": identity}
    out = {"seed": cfg.seed, "sweep": cfg.get("sweep", ""), "ablation": cfg.get("ablation", ""),
           "run_dir": str(run_dir)}
    out.update({k: v for k, v in identity.items() if v not in (None, "") or k not in out})
    return out


def check_mode(logger_cfg: Any) -> bool:
    """True when the logger config asks for wandb; a misspelt mode is named."""
    if not logger_cfg.enabled or logger_cfg.mode == "disabled":
        return False
    if logger_cfg.mode not in ("offline", "online"):
        raise ValueError(f"logger.mode must be offline, online or disabled, got {logger_cfg.mode!r}")
    return True


def wandb_settings() -> Any:
    import wandb

    # The system monitor costs a process and CPU for nothing a seed sweep needs.
    return wandb.Settings(x_disable_stats=True, console="off", silent=True)


def start_tracking(cfg: DictConfig, run_dir: str | os.PathLike, identity: Mapping[str, Any] | str,
                   enabled: bool = True) -> Tracker:
    """Open the seed's wandb run (or a no-op tracker when disabled or not rank 0). `identity` is the
    run's identity (pipeline._run_identity), or just its config digest."""
    logger_cfg = cfg.logger
    if not enabled or not check_mode(logger_cfg):
        return Tracker(None)
    import wandb

    run_dir = Path(run_dir)
    wandb_dir = Path(logger_cfg.dir) if logger_cfg.dir else run_dir
    wandb_dir.mkdir(parents=True, exist_ok=True)
    names = wandb_identity(_identity_of(cfg, identity, run_dir), list(logger_cfg.get("tags") or []),
                           logger_cfg.group, logger_cfg.job_type)
    run = wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.entity or None,
        config=OmegaConf.to_container(cfg, resolve=True),
        dir=str(wandb_dir),
        mode=logger_cfg.mode,
        id=_stored_run_id(run_dir),
        resume="allow",
        settings=wandb_settings(),
        reinit="create_new",
        **names,
    )
    return Tracker(run)


def log_callable(tracker: Tracker, echo: Callable[[str], None] | None = print) -> Callable[[dict], None]:
    """The `log` argument handed to the stages: metrics go to wandb and one line to the console
    (`echo`, default: crownq's logger, so the line also lands in the job's log file)."""
    if echo is print:
        echo = logger().info

    def log(metrics: dict) -> None:
        tracker.log(metrics)
        if echo is not None:
            echo(metrics_line(metrics))

    return log
