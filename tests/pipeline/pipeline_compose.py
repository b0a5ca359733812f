"""Compose the run config exactly as launch.py does (Hydra compose API on the repo's conf/)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def compose_run_config(overrides: list[str] | tuple[str, ...] = (), hydra_node: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from crownq.config import register_configs

    # conf/config.yaml adds $CROWNQ_ROOT to the search path so that sweeps/ is a config group.
    os.environ.setdefault("CROWNQ_ROOT", str(REPO_ROOT))
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3", job_name="test"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)
