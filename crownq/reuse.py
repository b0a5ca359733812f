"""Reuse of finished runs: a seed whose exact experiment already finished is copied, not recomputed.

With `reuse=true`, before training, the run looks for a finished run (status ok) under `outputs/`
and `multirun/` of the working directory (Hydra's run and sweep roots) with

- the same seed and the same config digest (the resolved config minus labels, logging, launcher),
- the same code digest (sha256 of the source of every crownq module except the report code, so any
  change to the recipe, however small, means no reuse),
- the same hardware, world size and torch version (numerics differ across them),

and an artifact file. It then copies that run's artifact and result numbers into the new run folder
and records `reused_from` (the original run, also when that one was itself reused). Off by default:
a re-run is a re-measurement unless the user asks for reuse.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crownq.results import ARTIFACT_FILENAME, RESULT_FILENAME, ResultError, read_result

# Code that never changes a run's numbers: the report (reads results) and this module.
_NOT_RECIPE = ("report/",)
# Keys that describe the run (this one's own identity), not the computation being reused.
_IDENTITY_KEYS = ("status", "seed", "config_digest", "training_digest", "code_digest", "sweep", "ablation",
                  "overrides", "world_size", "hardware", "torch_version", "run_dir", "sweep_dir")
# What must match besides seed and config digest.
_MUST_MATCH = ("seed", "config_digest", "code_digest", "hardware", "world_size", "torch_version")
SEARCH_ROOTS = ("outputs", "multirun")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the path and bytes of every crownq/**/*.py that a run executes."""
    return source_digest(Path(__file__).resolve().parent)


def source_digest(package: Path) -> str:
    """sha256 over the relative path and bytes of each .py under `package` except the report code."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith(_NOT_RECIPE) or "__pycache__" in rel:
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _candidates(roots: Iterable[Path]) -> Iterable[Path]:
    for root in roots:
        if root.is_dir():
            yield from root.rglob(RESULT_FILENAME)


def find_reusable(identity: dict[str, Any], roots: Iterable[Path], exclude: Path | None = None
                  ) -> tuple[Path, dict[str, Any]] | None:
    """The newest finished run under `roots` that computed exactly what `identity` asks for."""
    if not identity.get("code_digest"):
        return None
    best: tuple[float, Path, dict[str, Any]] | None = None
    for path in _candidates(roots):
        folder = path.parent
        if exclude is not None and folder.resolve() == exclude.resolve():
            continue
        try:
            found = read_result(path)
        except ResultError:
            continue  # an unreadable result is nothing to reuse (the report lists it)
        if found.get("status") != "ok" or not (folder / ARTIFACT_FILENAME).is_file():
            continue
        if any(found.get(key) != identity.get(key) for key in _MUST_MATCH):
            continue
        mtime = path.stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, folder, found)
    return None if best is None else (best[1], best[2])


def reuse_finished_run(identity: dict[str, Any], run_dir: Path, roots: Iterable[Path] | None = None
                       ) -> dict[str, Any] | None:
    """Copy a matching finished run into `run_dir`; the result keys it gives, or None if none matches."""
    roots = [Path.cwd() / r for r in SEARCH_ROOTS] if roots is None else list(roots)
    match = find_reusable(identity, roots, exclude=run_dir)
    if match is None:
        return None
    source_dir, source = match
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source_dir / ARTIFACT_FILENAME, run_dir / ARTIFACT_FILENAME)
    outcome = {k: v for k, v in source.items() if k not in _IDENTITY_KEYS}
    outcome["artifact_path"] = str(run_dir / ARTIFACT_FILENAME)
    outcome["reused_from"] = source.get("reused_from") or str(source_dir.resolve())
    return outcome
