"""Shared helpers of the tracking tests: compose the run config as crownq-run does, run launch.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from crownq.config import register_configs
    from crownq.paths import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="test_tracking"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def launch(*args: str, cwd: Path, timeout: int = 900, extra_env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """`python launch.py ARGS` as a user runs it (wandb offline, quiet, artifacts staged under cwd)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "WANDB_SILENT": "true", "WANDB_DATA_DIR": str(cwd / ".wandb-data"), **(extra_env or {})}
    env.pop("WANDB_MODE", None)
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    return proc
