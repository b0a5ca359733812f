"""`+sweeps=NAME`: every `sweeps/NAME.yaml` registered as option NAME of the `sweeps` config group.

Registering the files (instead of adding the project root to Hydra's search path) keeps tab completion
and `--help` to the sweeps themselves: with the root on the search path Hydra offered `.git/`,
`tests/` and every other folder of the checkout as config groups.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from crownq.paths import sweeps_dir

GROUP = "sweeps"


def register_sweeps(folder: Path | None = None) -> list[str]:
    """Store each sweep file (package `_global_`, as its `# @package _global_` header says); the names."""
    folder = folder or sweeps_dir()
    store = ConfigStore.instance()
    names = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            node = OmegaConf.load(path)
        except Exception as exc:  # name the broken file: Hydra would only say the group failed
            raise ValueError(f"{path}: not a valid sweep file: {exc}") from exc
        store.store(group=GROUP, name=path.stem, node=node, package="_global_", provider="crownq")
        names.append(path.stem)
    return names
