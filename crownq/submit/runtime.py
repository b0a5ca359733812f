"""What a bundled train_gpt.py runs: its frozen configuration + the environment -> one seed of the
recipe (crownq.recipe.run_recipe, the function crownq.pipeline.run wraps), with no Hydra composition,
no wandb, no reuse or rescore: only what a submission needs, so the bundle carries only that code.
The run folder still gets result.json (running, then ok or failed) and refuses a finished run's folder.

Environment, following the challenge's scripts:
- SEED (default 1337); RUN_DIR (default ./run_seed<SEED>): result.json and artifact.ptz go there;
- DATA_PATH: the shard folder (data.source=files: default ./data/datasets/<data.name>; the embedded
  corpus is built in the user cache, $CROWNQ_DATA_DIR or ~/.cache/crownq, when it is unset);
- TOKENIZER_PATH: the tokenizer file (default ./data/tokenizers/<data.tokenizer> when that exists,
  else the file inside the data folder).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

DEFAULT_SEED = 1337
NO_LOGGER = {"name": "none", "enabled": False, "mode": "disabled"}


def _seed(environ: Mapping[str, str]) -> int:
    text = environ.get("SEED", str(DEFAULT_SEED))
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"SEED={text!r}: expected an integer such as 1337") from None


def _data_overrides(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    if data.get("source") != "files":
        return {"root": environ.get("DATA_PATH", "")}
    root = Path(environ.get("DATA_PATH") or Path("data") / "datasets" / str(data["name"])).resolve()
    out: dict[str, Any] = {"root": str(root)}
    tokenizer = environ.get("TOKENIZER_PATH")
    if not tokenizer and (Path("data") / "tokenizers" / str(data["tokenizer"])).is_file():
        tokenizer = str(Path("data") / "tokenizers" / str(data["tokenizer"]))
    if tokenizer:
        out["tokenizer"] = str(Path(tokenizer).resolve())
    return out


def build_config(frozen: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> DictConfig:
    """The run config: the schema, the frozen values, the seed and data paths from `environ`."""
    from crownq.config import Config

    cfg = OmegaConf.merge(OmegaConf.structured(Config), dict(frozen), {
        "seed": _seed(environ),
        "logger": NO_LOGGER,
        "data": _data_overrides(frozen["data"], environ),
    })
    return cfg


def main(frozen: Mapping[str, Any]) -> dict[str, Any]:
    cfg = build_config(frozen)
    run_dir = Path(os.environ.get("RUN_DIR") or f"run_seed{cfg.seed}").resolve()
    result = run_bundled(cfg, run_dir)
    from crownq.distributed import shutdown

    shutdown()  # ranks leave together: a finished run must not abort at exit
    return result


def run_bundled(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """One seed into `run_dir`: result.json says running, then ok (printed) or failed (re-raised)."""
    from crownq.distributed import broadcast_object, init_distributed
    from crownq.log import logger, metrics_line
    from crownq.recipe import headline, run_recipe
    from crownq.results import RESULT_FILENAME, failure_fields, write_json_atomic

    dist_env = init_distributed(cfg.train.device)
    main_rank = dist_env.is_main
    # Rank 0 decides and every rank hears it: a rank refusing alone would leave the others waiting.
    refusal = broadcast_object(_finished_run(run_dir / RESULT_FILENAME) if main_rank else "")
    if refusal:
        raise SystemExit(refusal)
    identity = _identity(cfg, run_dir, dist_env.world_size)
    if main_rank:
        write_json_atomic(run_dir / RESULT_FILENAME, {"status": "running", **identity})

    def log(metrics: dict) -> None:
        if main_rank:
            logger().info(metrics_line(metrics))

    try:
        outcome = run_recipe(cfg, dist_env, run_dir, log)
    except BaseException as exc:
        if main_rank:
            write_json_atomic(run_dir / RESULT_FILENAME, {**failure_fields(exc), **identity})
        raise
    result = {"status": "ok", **identity, **outcome}
    if main_rank:
        write_json_atomic(run_dir / RESULT_FILENAME, result)
        print(headline(result))
    return result


def _finished_run(result_path: Path) -> str:
    """Why `result_path`'s folder must not be run into again ('' when it may): a finished result is
    never overwritten; a failed or interrupted attempt is replaced by this one."""
    from crownq.results import holds_finished_run

    if not holds_finished_run(result_path):
        return ""
    return (f"{result_path} holds a finished run; set RUN_DIR to a new folder (its artifact and result "
            "are kept)")


def _identity(cfg: DictConfig, run_dir: Path, world_size: int) -> dict[str, Any]:
    import torch

    from crownq.results import config_digest, hardware_description, training_digest

    return {
        "seed": int(cfg.seed),
        "config_digest": config_digest(cfg),
        "training_digest": training_digest(cfg),
        "world_size": world_size,
        "hardware": hardware_description(world_size),
        "torch_version": torch.__version__,
        "run_dir": str(run_dir),
        "bundled": True,
    }
