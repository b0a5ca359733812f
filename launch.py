"""Hydra entry point: one run = one seed of one configuration. See README.md.

    python launch.py                      # CPU default (tiny model, embedded corpus)
    python launch.py -m +sweeps=seeds     # a sweep from sweeps/
"""

import os
from pathlib import Path

# Lets conf/config.yaml add the repository root to Hydra's search path, so sweeps/*.yaml is a group.
os.environ.setdefault("CROWNQ_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from crownq.config import register_configs  # noqa: E402

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from crownq.pipeline import run

    return run(cfg)


if __name__ == "__main__":
    main()
