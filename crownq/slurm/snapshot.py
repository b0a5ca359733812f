"""Code snapshot: a queued SLURM job runs the code as it was when the sweep was submitted.

At submission the launcher copies the project's code (the `crownq` package, the `hydra_plugins`
launcher entry, `launch.py`, `conf/`, `sweeps/`, `pyproject.toml`, `README.md`) into
`<sweep dir>/.code_snapshot/<n>/`, and the job's Python starts with that folder first on `sys.path`.
The job's working directory stays where the sweep was launched, so relative paths in the config mean
the same thing as on the command line. Editing (or `git pull`-ing) the checkout while jobs wait in the
queue therefore changes nothing for them, and a requeued job reruns the same code. (The job's config is
composed at submission too: see `crownq.slurm.launcher`.)
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import crownq

# What a run imports or reads: the package, the entry point and the configs (README/pyproject are
# counted in the artifact's code bytes by some budget rules, so keep them beside the code).
SNAPSHOT_ENTRIES = ("crownq", "hydra_plugins", "launch.py", "conf", "sweeps", "pyproject.toml", "README.md")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


def project_root() -> Path:
    """The folder holding the `crownq` package that is running now (a checkout or an installed tree)."""
    return Path(crownq.__file__).resolve().parent.parent


def take_snapshot(sweep_dir: str | Path, root: str | Path | None = None) -> Path:
    """Copy the project's code into a new `<sweep_dir>/.code_snapshot/<n>` and return that folder.

    Written to a temporary folder first and renamed, so a job never sees half a snapshot; never
    overwrites an earlier snapshot (its jobs may still be queued).
    """
    root = Path(root) if root is not None else project_root()
    if not (root / "crownq" / "__init__.py").is_file():
        raise FileNotFoundError(f"code snapshot: {root} has no crownq/__init__.py (not the project root)")
    parent = Path(sweep_dir).resolve() / ".code_snapshot"
    parent.mkdir(parents=True, exist_ok=True)
    index = 0
    while (parent / str(index)).exists():
        index += 1
    final = parent / str(index)
    staging = parent / f".{index}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in SNAPSHOT_ENTRIES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, staging / name, ignore=_IGNORED, symlinks=False)
        elif src.is_file():
            shutil.copy2(src, staging / name)
    staging.rename(final)
    return final


def snapshot_python_command(snapshot: str | Path, python: str | None = None) -> str:
    """The interpreter command submitit puts in the sbatch script, importing code from `snapshot`.

    submitit runs `<python> -u -m submitit.core._submit <folder>`; with `-c`, those words become
    arguments of a small bootstrap that puts the snapshot in place of the working directory at the front
    of sys.path (so it wins over the checkout and over an editable install) and then runs submitit's
    entry point. Works on every Python version, unlike PYTHONSAFEPATH (3.11+).
    """
    snapshot = str(Path(snapshot).resolve())
    bootstrap = (
        "import runpy, sys; "
        f"sys.path[0] = {snapshot!r}; "
        "sys.argv = ['submitit', sys.argv[-1]]; "
        "runpy.run_module('submitit.core._submit', run_name='__main__', alter_sys=True)"
    )
    return f"{shlex.quote(python or sys.executable)} -u -c {shlex.quote(bootstrap)}"
