"""A finished sweep's group -> `records/track_10min_16mb/<date>_<name>/`: train_gpt.py (the bundle),
README.md, submission.json, the per-seed logs and requirements.txt.

Refuses, naming the cause, when the folder exists, when the group has no finished seed, or when the
code changed since the sweep ran (the bundle would not be the code that produced the numbers).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from crownq.report.build import build_report
from crownq.report.submission import submission_for
from crownq.results import RESULT_FILENAME, config_digest, digest_payload, json_safe, read_result
from crownq.submit.bundle import Bundle, build_bundle
from crownq.submit.readme import RECORD_OVERRIDES, record_differences, render_readme

TRACK_DIR = Path("records") / "track_10min_16mb"


class SubmitError(ValueError):
    """The records folder cannot be written as asked; the message says why and what to do."""


def _find_group(report: dict[str, Any], key: str) -> dict[str, Any]:
    groups = report["groups"]
    matches = ([g for g in groups if g["label"] == key]
               or [g for g in groups if g["config_digest"].startswith(key)])
    if len(matches) != 1:
        known = ", ".join(f"{g['label']} ({g['config_digest'][:12]})" for g in groups) or "none"
        raise SubmitError(f"--group {key!r} {'matches no group' if not matches else 'is ambiguous'}; "
                          f"groups: {known}")
    if not matches[0]["seed_rows"]:
        raise SubmitError(f"group {key!r} has no finished seed to submit")
    return matches[0]


def _run_config(sweep_dir: Path, group: dict[str, Any]):
    run_dir = sweep_dir / group["seed_rows"][0]["run_dir"]
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise SubmitError(f"{path} is missing: the bundle freezes the run's resolved configuration from it")
    cfg = OmegaConf.load(path)
    if config_digest(cfg) != group["config_digest"]:
        raise SubmitError(f"{path} does not hash to the group's config digest {group['config_digest'][:12]} "
                          "(edited after the run, or an environment variable it reads changed)")
    return cfg


def _check_code(sweep_dir: Path, group: dict[str, Any], bundle: Bundle) -> list[dict[str, Any]]:
    results = []
    for row in group["seed_rows"]:
        result = read_result(sweep_dir / row["run_dir"] / RESULT_FILENAME)
        counted, sha = result.get("artifact_bytes_code"), result.get("artifact_code_sha256")
        if counted != bundle.size or (sha is not None and sha != bundle.sha256):
            raise SubmitError(
                f"seed {row['seed']} ({row['run_dir']}) counted {counted} code bytes, but the bundle of the "
                f"current source is {bundle.size} bytes{'' if sha is None else ' with another sha256'}: the "
                "code changed since the sweep ran. Submit from the commit that ran it, or re-run the sweep.")
        results.append(result)
    return results


def _requirements(bundle: Bundle, torch_version: str | None) -> str:
    """One pinned line per third-party distribution the bundled modules import."""
    dists = md.packages_distributions()
    lines = set()
    for top in sorted(bundle.external):
        for dist in dists.get(top, [top]):
            version = torch_version if dist == "torch" and torch_version else _version(dist)
            lines.add(f"{dist}=={version}" if version else dist)
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _seed_log(run_dir: Path, result: dict[str, Any]) -> str:
    """The run folder's log files, concatenated; the result's headline when the run left none."""
    parts = []
    for path in sorted(run_dir.glob("*.log")) + sorted(run_dir.glob("*.out")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            parts.append(f"==> {path.name} <==\n{text.rstrip()}\n")
    if not parts:
        from crownq.recipe import headline

        parts.append(f"(no log file in {run_dir.name}; the result's summary)\n{headline(result)}\n")
    return "\n".join(parts)


def _record_payload() -> tuple[dict[str, Any] | None, str]:
    try:
        from crownq.describe import compose_config

        return digest_payload(compose_config(list(RECORD_OVERRIDES))), ""
    except Exception as exc:  # the README says why instead of failing the whole submission
        return None, f"{type(exc).__name__}: {exc}"


def write_records_folder(sweep_dir: str | Path, group_key: str, name: str, out: str | Path = TRACK_DIR,
                         baseline_scores: list[float] | None = None, author: str = "",
                         github_id: str = "", date: str | None = None) -> Path:
    sweep_dir = Path(sweep_dir)
    if not name or "/" in name:
        raise SubmitError(f"--name {name!r}: expected a non-empty folder-safe name")
    report = build_report(sweep_dir, baseline_scores=baseline_scores)
    group = _find_group(report, group_key)
    payload = digest_payload(_run_config(sweep_dir, group))
    bundle = build_bundle(payload, payload["quantizer"]["code_bytes_mode"])
    results = _check_code(sweep_dir, group, bundle)
    folder = Path(out) / f"{date or dt.date.today().isoformat()}_{name}"
    if folder.exists() and any(folder.iterdir()):
        raise SubmitError(f"{folder} exists and is not empty: pick another --name or remove it")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_bytes(bundle.file)
    if bundle.mode == "compressed":
        (folder / "train_gpt_source.py").write_bytes(bundle.program)
    submission = submission_for(group, author=author, github_id=github_id, name=name)
    submission["bytes_code"] = bundle.size
    (folder / "submission.json").write_text(json.dumps(json_safe(submission), indent=2) + "\n")
    record, why = _record_payload()
    diffs = record_differences(payload, record) if record is not None else None
    (folder / "README.md").write_text(render_readme(name, group, diffs, bundle, why) + "\n")
    for row, result in zip(group["seed_rows"], results):
        run_dir = sweep_dir / row["run_dir"]
        (folder / f"train_seed{row['seed']}.log").write_text(_seed_log(run_dir, result))
        shutil.copyfile(run_dir / RESULT_FILENAME, folder / f"result_seed{row['seed']}.json")
    (folder / "requirements.txt").write_text(_requirements(bundle, group.get("torch_version")))
    return folder
