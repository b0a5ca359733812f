"""Find the finished run whose artifact a `rescore_from=FOLDER` run scores instead of training again.

Evaluation choices (stride, TTT, ...) do not change the artifact, so an eval ablation can reuse the
artifacts of a seed sweep: the run folder with the same seed and the same training digest (the config
digest without the `eval` group, written into every result.json) is the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crownq.results import ARTIFACT_FILENAME, RESULT_FILENAME, ResultError, read_result

# What the source run measured while training and exporting; carried into the rescored result.
TRAINING_KEYS = (
    "model_params", "steps", "train_seconds", "step_avg_ms", "prequant_val_loss", "prequant_val_bpb",
    "calibration_seconds", "calibration_source", "artifact_bytes_model", "artifact_bytes_code",
    "artifact_bytes_total", "pruned", "export_seconds",
)


def candidate_runs(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Finished runs in `folder` itself or one level below it (a run folder or a sweep folder)."""
    found = []
    for result_path in sorted([folder / RESULT_FILENAME, *folder.glob(f"*/{RESULT_FILENAME}")]):
        try:
            result = read_result(result_path)
        except ResultError:
            continue  # a missing or broken result is not a source; the report lists those
        if result["status"] == "ok":
            found.append((result_path.parent, result))
    return found


def find_source_run(folder: Path, seed: int, training_digest: str, option: str = "rescore_from",
                    digest_key: str = "training_digest", needs: str = ARTIFACT_FILENAME,
                    may_differ: str = "only `eval` options may differ") -> tuple[Path, dict[str, Any]]:
    """The one finished run in `folder` with this seed and digest (`digest_key` of its result), and its
    result; `needs` is the file the source must hold.

    Errors name the folder and say what was there instead, so a wrong folder or a changed config is
    obvious from the message.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{option}={folder}: no such folder (give a run or sweep folder)")
    runs = candidate_runs(folder)
    if not runs:
        raise ValueError(f"{option}={folder}: no finished run (result.json with status ok) in it "
                         "or in its subfolders")
    same_seed = [(d, r) for d, r in runs if r.get("seed") == seed]
    matches = [(d, r) for d, r in same_seed if r.get(digest_key) == training_digest]
    if not matches:
        seeds = sorted({r.get("seed") for _, r in runs})
        if not same_seed:
            raise ValueError(f"{option}={folder}: no finished run with seed {seed} "
                             f"(seeds there: {seeds})")
        digests = sorted({str(r.get(digest_key))[:12] for _, r in same_seed})
        raise ValueError(
            f"{option}={folder}: the runs with seed {seed} were trained with another config "
            f"({digest_key.replace('_', ' ')} {', '.join(digests)}, this run {training_digest[:12]}); "
            f"{may_differ}")
    if len(matches) > 1:
        names = ", ".join(str(d) for d, _ in matches)
        raise ValueError(f"{option}={folder}: {len(matches)} finished runs match seed {seed} and this "
                         f"config ({names}); give one of them")
    source_dir, result = matches[0]
    if not (source_dir / needs).is_file():
        hint = " (the source must run with save_weights=true)" if needs != ARTIFACT_FILENAME else ""
        raise FileNotFoundError(f"{option}={folder}: {source_dir / needs} is missing{hint}")
    return source_dir, result


def refuse_rescore_into_source(source: Path, run_dir: Path, option: str = "rescore_from") -> None:
    """A rescore writing into the folder it reads (or a folder inside it) would overwrite the finished
    source result with 'running' and lose its scores, or mix its results into the source sweep."""
    src, dst = source.resolve(), run_dir.resolve()
    if dst == src or src in dst.parents:
        where = "is" if dst == src else "is inside"
        raise ValueError(f"{option}={source}: this run's folder {run_dir} {where} the folder it "
                         "reads; write the rescored runs elsewhere (hydra.run.dir=... or "
                         "hydra.sweep.dir=...)")
