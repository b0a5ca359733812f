"""What a bundled train_gpt.py runs: its frozen configuration + the environment -> one seed of the
recipe (crownq.pipeline.run), with no Hydra composition and no wandb.

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
    from crownq.pipeline import run

    cfg = build_config(frozen)
    run_dir = Path(os.environ.get("RUN_DIR") or f"run_seed{cfg.seed}")
    return run(cfg, run_dir.resolve())
