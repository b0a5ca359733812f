"""One seed's run folder around the recipe (crownq/recipe.py): validate the config, lock the folder,
write result.json (running -> ok/failed/diverged/interrupted), track it in wandb, reuse an identical
finished run (`reuse=true`), score an earlier run's artifact instead of training (`rescore_from=FOLDER`,
crownq/rescore.py) or export an earlier run's saved weights again (`reexport_from=FOLDER`).

`run(cfg)` is what `launch.py` calls for one seed. Every rank runs the recipe; only rank 0 writes the
result, the artifact and the wandb run, and the value returned to the launcher is rank 0's result.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from crownq.config.validate import validate
from crownq.distributed import DistEnv, broadcast_object, init_distributed
from crownq.log import logger, to_log_files
from crownq.recipe import StageClock, headline, run_recipe
from crownq.rescore import refuse_rescore_into_source
from crownq.results import (
    ARTIFACT_FILENAME,
    RESULT_FILENAME,
    config_digest,
    error_line,
    failure_fields,
    hardware_description,
    training_digest,
    weights_digest,
    write_json_atomic,
)
from crownq.reuse import code_digest, reuse_finished_run
from crownq.run_lock import RunFolderBusy, RunLock, refuse_finished_run
from crownq.tracking import Tracker, log_callable, start_tracking
from crownq.train.divergence import TrainingDiverged
from crownq.train.signals import TrainingPreempted


def run(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train, compress and score one seed; write `result.json` into the run folder and return it."""
    validate(cfg)  # every value checked before any work (crownq/config/validate.py)
    dist_env = init_distributed(cfg.train.device)
    run_dir = Path(run_dir) if run_dir is not None else _hydra_output_dir()
    # Under torchrun every rank composes its own timestamped Hydra folder, and ranks started a second
    # apart would disagree; rank 0's folder is the run's (the others read the artifact from it).
    run_dir = Path(broadcast_object(str(run_dir)))
    if cfg.rescore_from and cfg.get("reexport_from"):
        raise ValueError("rescore_from and reexport_from are both set: rescore scores an existing artifact, "
                         "reexport exports saved weights again; choose one")
    for option in ("rescore_from", "reexport_from"):
        if cfg.get(option):
            refuse_rescore_into_source(Path(cfg[option]), run_dir, option)
    digest = config_digest(cfg)
    identity = _run_identity(cfg, digest, dist_env, run_dir)
    main = dist_env.is_main
    # The run owns its folder until it returns: a second run there is refused, naming this one. Rank 0
    # decides and every rank hears it (a rank refusing alone would leave the others in a collective).
    lock, refusal = None, ""
    if main:
        try:
            lock = RunLock(run_dir).acquire()
            refuse_finished_run(run_dir)
        except RunFolderBusy as exc:
            refusal = str(exc)
    refusal = broadcast_object(refusal)
    try:
        if refusal:
            raise RunFolderBusy(refusal)
        return _run_locked(cfg, dist_env, run_dir, digest, identity)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(cfg: DictConfig, dist_env: DistEnv, run_dir: Path, digest: str,
                identity: dict[str, Any]) -> dict[str, Any]:
    main = dist_env.is_main
    if main:  # a "running" result tells a later report that this seed started and never finished
        write_json_atomic(run_dir / RESULT_FILENAME, {"status": "running", **identity})
    tracker = Tracker(None)
    try:
        tracker = start_tracking(cfg, run_dir, identity, enabled=main)
        outcome = _reused(cfg, identity, run_dir, dist_env) or run_recipe(
            cfg, dist_env, run_dir, log_callable(tracker, echo=print if main else None),
            artifact_source=_reuse_artifact if cfg.rescore_from else _reexport if cfg.get("reexport_from")
            else None)
    except BaseException as exc:
        interrupted = not isinstance(exc, Exception) or isinstance(exc, TrainingPreempted)
        diverged = isinstance(exc, TrainingDiverged)
        status = "interrupted" if interrupted else "diverged" if diverged else "failed"
        result = {**failure_fields(exc, status), **identity}
        if main:
            _write_final_result(run_dir, result)
            logger().error(f"seed {cfg.seed} {result['status']}: {result['error']}")
        tracker.finish(result, failed=True)
        # In a local multirun the other seeds and the report go on; a single run exits non-zero.
        # Preemption propagates so the launcher can requeue, and a multi-rank job fails as a whole
        # (a rank returning normally would leave the others waiting in a collective).
        if interrupted or dist_env.distributed or not _in_multirun():
            raise
        return result
    result = {"status": "ok", **identity, **outcome}
    if main:
        write_json_atomic(run_dir / RESULT_FILENAME, result)
        print(headline(result))  # stdout, always; the job's log file gets it too
        to_log_files(headline(result))
        _drop_training_checkpoint(cfg, run_dir)
    tracker.finish(result)
    return result


def _write_final_result(run_dir: Path, result: dict[str, Any]) -> None:
    """Record a failure even on a full disk: without the traceback if the whole result does not fit, and
    if nothing fits, say so instead of chaining a second traceback onto the first."""
    last: OSError | None = None
    for attempt in (result, {k: v for k, v in result.items() if k != "traceback"}):
        try:
            write_json_atomic(run_dir / RESULT_FILENAME, attempt)
            return
        except OSError as exc:
            last = exc
    assert last is not None
    print(f"crownq: could not record the failure in {run_dir / RESULT_FILENAME} ({error_line(last)}); "
          "it still says 'running'")


def _reuse_artifact(cfg: DictConfig, stage: StageClock, *_context) -> tuple[Path, dict[str, Any]]:
    """`rescore_from=FOLDER`: score the artifact of an earlier finished run of this seed and training
    config instead of training again; its training and export numbers are carried over."""
    from crownq.rescore import TRAINING_KEYS, find_source_run

    source_dir, source = find_source_run(Path(cfg.rescore_from), int(cfg.seed), training_digest(cfg))
    stage.done("rescore", f"artifact of {source_dir}")
    produced = {key: source.get(key) for key in TRAINING_KEYS}
    produced.update({"artifact_path": str(source_dir / ARTIFACT_FILENAME), "rescored_from": str(source_dir)})
    return source_dir / ARTIFACT_FILENAME, produced


def _reexport(cfg: DictConfig, stage: StageClock, paths, dist_env: DistEnv, run_dir: Path
              ) -> tuple[Path, dict[str, Any]]:
    """`reexport_from=FOLDER`: calibrate, export and score the saved weights of an earlier finished run
    of this seed whose config differs at most in `eval` and export-only quantizer fields."""
    from crownq.model import build_model
    from crownq.recipe import WEIGHTS_FILENAME, export_trained
    from crownq.rescore import find_source_run

    if dist_env.distributed:
        raise ValueError("reexport_from runs in one process (the export is one rank's job); start it "
                         "without torchrun")
    source_dir, source = find_source_run(
        Path(cfg.reexport_from), int(cfg.seed), weights_digest(cfg), option="reexport_from",
        digest_key="weights_digest", needs=WEIGHTS_FILENAME,
        may_differ="only `eval` and export-only quantizer options "
                   "(crownq.results.EXPORT_ONLY_QUANTIZER_FIELDS) may differ")
    weights = torch.load(source_dir / WEIGHTS_FILENAME, map_location="cpu", weights_only=True)
    model = build_model(cfg.arch).place(dist_env.device)
    stage.done("reexport", f"weights of {source_dir}")
    produced = {key: source.get(key) for key in ("model_params", "steps", "train_seconds", "step_avg_ms",
                                                 "prequant_val_loss", "prequant_val_bpb")}
    artifact_path, exported = export_trained(cfg, dist_env, run_dir, model, weights, paths, stage)
    return artifact_path, {**produced, **exported, "reexported_from": str(source_dir)}


def _drop_training_checkpoint(cfg: DictConfig, run_dir: Path) -> None:
    """Once result.json is final the resume checkpoint (weights + optimiser + averages: ~20 bytes per
    parameter) is dead weight; `+debug.keep_checkpoints=true` keeps it."""
    if (cfg.get("debug") or {}).get("keep_checkpoints"):
        return
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _run_identity(cfg: DictConfig, digest: str, dist_env: DistEnv, run_dir: Path) -> dict[str, Any]:
    """The keys every result has, also a failed one: who ran what, where, with which overrides."""
    from hydra.core.hydra_config import HydraConfig

    overrides: list[str] = []
    swept: set[str] = set()
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        swept = {_override_key(k) for k in (hydra_cfg.sweeper.get("params") or {})}
    # Without an explicit label, an ablation cell is named by the swept keys other than the seed.
    derived = ",".join(o for o in overrides if _override_key(o) in swept - {"seed"})
    return {
        "seed": int(cfg.seed),
        "config_digest": digest,
        # The same without the eval group: which runs share an artifact (rescore_from matches on it).
        "training_digest": training_digest(cfg),
        # The same without export-only quantizer fields: which runs share trained weights (reexport_from).
        "weights_digest": weights_digest(cfg),
        "sweep": cfg.get("sweep", ""),
        "ablation": cfg.get("ablation", "") or derived,
        "overrides": overrides,
        "world_size": dist_env.world_size,
        "hardware": hardware_description(dist_env.world_size),
        "torch_version": torch.__version__,
        "run_dir": str(run_dir),
        # The sweep's folder (wandb groups carry its date) and the recipe's source (reuse matches on it).
        "sweep_dir": _sweep_dir(),
        "code_digest": code_digest(),
    }


def _sweep_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().sweep.dir) if _in_multirun() else ""


def _reused(cfg: DictConfig, identity: dict[str, Any], run_dir: Path, dist_env: DistEnv) -> dict | None:
    """`reuse=true`: the outcome of an identical finished run, copied (crownq/reuse.py), else None.
    Single-process runs only: ranks would each have to agree on the copy."""
    if not cfg.get("reuse") or dist_env.distributed:
        return None
    outcome = reuse_finished_run(identity, run_dir)
    if outcome is not None:
        logger().info(f"reused    seed {cfg.seed} from {outcome['reused_from']} (same config and code)")
    return outcome


