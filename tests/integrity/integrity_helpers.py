"""Shared helpers of the integrity tests: compose the run config as launch.py does."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORD = ["arch=crownq_11l", "train=record_8xh100", "quantizer=gptq_int6", "averaging=swa_ema",
          "eval=sliding64"]


def compose(overrides: list[str] | tuple[str, ...] = (), hydra_node: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from crownq.config import register_configs

    os.environ.setdefault("CROWNQ_ROOT", str(REPO_ROOT))
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3", job_name="test"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def run_config(tmp_path: Path, *overrides: str) -> DictConfig:
    """The CPU default without wandb, for run() tests whose recipe is replaced by a stand-in."""
    return compose(["logger=none", *overrides])


def fake_outcome(seed: int = 1337) -> dict:
    """What run_recipe returns for a finished run (the keys result.json needs), without training."""
    return {"model_params": 1, "steps": 1, "train_seconds": 1.0, "prequant_val_bpb": 2.0,
            "roundtrip_val_bpb": 2.0, "sliding_val_bpb": 2.0, "val_bpb": 2.0, "val_loss": 3.0,
            "artifact_bytes_model": 10, "artifact_bytes_code": 10, "artifact_bytes_total": 20,
            "eval_seconds": 1.0, "val_method": "sliding64"}
