"""Find the runs of a sweep folder and group them by configuration (result files only, no models).

A run folder is one with a `result.json` or a Hydra `.hydra/config.yaml`. A folder with the latter
but no result (the job died before the pipeline started) is listed as missing; a result still saying
`running` after the sweep means the process died hard; unreadable files are listed, not fatal.

Two more rules keep the numbers honest:
- a job the sweep planned (Hydra's `multirun.yaml`) that left no folder at all (the launching process
  died before reaching it) is listed as missing, so a report never silently covers fewer seeds;
- the same (configuration, seed) finished twice (e.g. a report over the parent of several sweeps) is
  refused, naming both folders: counting a seed twice would inflate n and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crownq.results import RESULT_FILENAME, ResultError, read_result

REPORT_DIRNAME = "report"


def _seed_key(run: dict[str, Any]) -> tuple[int, str]:
    seed = str(run.get("seed"))
    return (0, seed.zfill(20)) if seed.isdigit() else (1, seed)


@dataclass
class Group:
    digest: str
    label: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.runs if r.get("status") == "ok"), key=_seed_key)

    @property
    def not_ok(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") != "ok"]


def _run_folders(sweep_dir: Path) -> list[Path]:
    folders = {p.parent for p in sweep_dir.rglob(RESULT_FILENAME)}
    folders |= {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    # The report's own output and tool folders are never runs.
    skip = {REPORT_DIRNAME, "wandb", ".submitit"}
    return sorted(f for f in folders if not skip.intersection(f.relative_to(sweep_dir).parts))


def _from_hydra_folder(run_dir: Path) -> dict[str, Any]:
    """What a run folder without a usable result still tells: seed, digest and overrides."""
    from omegaconf import OmegaConf

    from crownq.results import config_digest

    info: dict[str, Any] = {"seed": None, "config_digest": "unknown", "overrides": []}
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        info["seed"] = cfg.get("seed")
        info["config_digest"] = config_digest(cfg)
        info["sweep"] = cfg.get("sweep", "")
        info["ablation"] = cfg.get("ablation", "")
        overrides = run_dir / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            info["overrides"] = list(OmegaConf.load(overrides))
    except Exception as exc:  # a half-written folder must not stop the report
        info["error_reading_config"] = f"{type(exc).__name__}: {exc}"
    return info


def collect_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every run of the sweep as a result dict, plus `run_dir`; broken runs get a non-ok status, and
    planned jobs that never started get status `missing`."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    runs = _collect_folders(sweep_dir)
    runs += never_started(sweep_dir, runs)
    if not runs:
        raise ValueError(f"{sweep_dir} holds no runs (no result.json or .hydra/config.yaml below it): give "
                         "a sweep folder (multirun/...) or a run folder")
    return runs


def _collect_folders(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for run_dir in _run_folders(sweep_dir):
        result_path = run_dir / RESULT_FILENAME
        if result_path.is_file():
            try:
                run = read_result(result_path)
            except ResultError as exc:
                run = {**_from_hydra_folder(run_dir), "status": "unreadable", "error": str(exc)}
            else:
                if run["status"] == "running":
                    run = {**run, "error": "no final result: the process died hard or is still running"}
        else:
            run = {**_from_hydra_folder(run_dir), "status": "missing",
                   "error": "no result.json: the job died before the pipeline started"}
        run["run_dir"] = str(run_dir.relative_to(sweep_dir))
        runs.append(run)
    return runs


def planned_jobs(sweep_dir: Path) -> list[dict[str, str]]:
    """The jobs a Hydra sweep planned, as {override key: value} of the swept keys, in job order; [] when
    the folder has no multirun.yaml (not a sweep folder, or a sweep with nothing swept)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    hydra_cfg = OmegaConf.load(path).get("hydra") or {}
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    # The sweeper's params first, then the command line's overrides (which win for the same key).
    task = list((hydra_cfg.get("overrides") or {}).get("task") or [])
    texts = [f"{k}={v}" for k, v in params.items()] + task
    swept: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element()
        if override.is_sweep_override():
            swept[key] = list(override.sweep_string_iterator())
        else:
            swept.pop(key, None)
    keys = list(swept)
    if not keys:
        return []
    return [dict(zip(keys, values)) for values in itertools.product(*(swept[k] for k in keys))]


def never_started(sweep_dir: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A `missing` entry for each planned job that no collected run's overrides match."""
    missing = []
    for num, job in enumerate(planned_jobs(sweep_dir)):
        wanted = {f"{k}={v}" for k, v in job.items()}
        if any(wanted <= set(r.get("overrides") or []) for r in runs):
            continue
        seed = job.get("seed")
        missing.append({
            "status": "missing", "seed": int(seed) if seed and seed.isdigit() else seed,
            "config_digest": "unknown", "overrides": sorted(wanted), "run_dir": f"(job #{num}, no folder)",
            "error": f"planned in multirun.yaml ({' '.join(sorted(wanted))}) but never started: the sweep's "
                     "process died before reaching it",
        })
    return missing


def refuse_duplicates(runs: list[dict[str, Any]]) -> None:
    """Two finished runs of one (configuration, seed) must never both enter a mean."""
    seen: dict[tuple[str, Any], str] = {}
    clashes = []
    for run in runs:
        if run.get("status") != "ok":
            continue
        key = (str(run.get("config_digest")), run.get("seed"))
        where = str(run.get("run_dir") or run.get("name") or "?")
        if key in seen:
            clashes.append(f"config {key[0][:12]} seed {key[1]}: {seen[key]} and {where}")
        else:
            seen[key] = where
    if clashes:
        raise ValueError(f"{len(clashes)} (configuration, seed) pair(s) finished more than once, and "
                         "counting both would inflate n and the tests:\n  " + "\n  ".join(clashes)
                         + "\nReport one sweep folder at a time (not their parent), or move the duplicate "
                         "run folders away")


def _label_overrides(run: dict[str, Any]) -> list[str]:
    ignored = ("seed=", "logger", "hydra", "debug", "+debug", "sweep=", "ablation=")
    return [o for o in run.get("overrides", []) if not o.startswith(ignored)]


def group_runs(runs: list[dict[str, Any]]) -> list[Group]:
    """Group by config digest; label = the run's ablation, else the overrides that differ between
    groups (overrides shared by every group, such as the record config, say nothing)."""
    refuse_duplicates(runs)
    groups: dict[str, Group] = {}
    for run in runs:
        digest = str(run.get("config_digest") or "unknown")
        groups.setdefault(digest, Group(digest=digest, label="")).runs.append(run)
    per_group = {d: set(_label_overrides(g.runs[0])) for d, g in groups.items()}
    common = set.intersection(*per_group.values()) if per_group else set()
    used: set[str] = set()
    for digest, group in groups.items():
        first = group.runs[0]
        label = first.get("ablation") or ",".join(sorted(per_group[digest] - common)) or "default"
        if label in used:  # distinct configs must never share a label
            label = f"{label}@{digest[:8]}"
        used.add(label)
        group.label = label
    return sorted(groups.values(), key=lambda g: g.label)


def find_group(groups: list[Group], key: str) -> Group:
    """A group by exact label or digest prefix; the error lists what exists."""
    matches = [g for g in groups if g.label == key] or [g for g in groups if g.digest.startswith(key)]
    if len(matches) != 1:
        known = ", ".join(f"{g.label} ({g.digest[:12]})" for g in groups)
        what = "matches no group" if not matches else "is ambiguous"
        raise ValueError(f"--baseline {key!r} {what}; groups: {known}")
    return matches[0]
