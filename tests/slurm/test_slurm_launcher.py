"""The launcher layer against the real cluster, with a seconds-long toy app (tests/slurm/toy_app.py):
preemption by SLURM's real signals (the USR2 warning and `scontrol requeue`) with resume, and the code
snapshot. The full pipeline through SLURM (seed sweep + hard crash + report, 2 ranks, requeue to the
same result) is in test_slurm_pipeline.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_helpers import REPO, finish, record, sacct_lines, slurm
from toy_app import train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TOY = Path(__file__).resolve().parent / "toy_app.py"


def toy_command(sweep: Path, name: str, *overrides: str, root: Path = REPO) -> tuple[list[str], dict]:
    env = {**os.environ, "CROWNQ_ROOT": str(root), "TOY_SWEEP_DIR": str(sweep), "PYTHONPATH": str(root),
           "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, str(root / "tests/slurm/toy_app.py"), "-m",
           "hydra/launcher=crownq_slurm", f"hydra.launcher.name={name}", "hydra.launcher.timeout_min=5",
           *overrides]
    return cmd, env


def result(sweep: Path, subdir: str) -> dict:
    return json.loads((sweep / subdir / "result.json").read_text())


def job_ids(name: str) -> list[str]:
    """Array task ids (e.g. 12_0) of the jobs named `name` still known to slurmctld."""
    return slurm("squeue", "-h", "-r", "-n", name, "-o", "%i").split()


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"sweep ended while waiting for {what}:\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_preemption_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path):
    """Seed 1 gets SLURM's warning signal (USR2, as `--signal` sends before the time limit), seed 2 an
    `scontrol requeue` (SIGTERM). Both checkpoint mid-training, are requeued, resume from their own
    checkpoint in their own folder and end bit-identical to an uninterrupted run."""
    sweep, name, steps = tmp_path / "sweep", f"crownq-toy-preempt-{os.getpid()}", 40
    cmd, env = toy_command(sweep, name, "seed=1,2", f"steps={steps}", "step_seconds=0.25")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def progress(subdir: str) -> int:
            path = sweep / subdir / "progress"
            return int(path.read_text() or 0) if path.exists() else 0

        wait_for(lambda: progress("0_seed1") >= 6 and progress("1_seed2") >= 6, 120, "both seeds training",
                 proc)
        jobs = sorted(job_ids(name))
        assert len(jobs) == 2, jobs
        slurm("scancel", "--signal=USR2", jobs[0])
        slurm("scontrol", "requeue", jobs[1])
        finish(proc, name)
    finally:
        if proc.poll() is None:
            proc.kill()
            slurm("scancel", "-n", name, check=False)
    for subdir, seed in (("0_seed1", 1), ("1_seed2", 2)):
        res = result(sweep, subdir)
        assert res["status"] == "ok", f"{json.dumps(res, indent=1)}\n{sacct_lines(jobs[0])}"
        assert res["resumed_from_step"] >= 6, res  # the requeued run started from the checkpoint
        assert res["slurm_restart_count"] >= 1, res
        assert res["w_sum"] == train(seed, steps)["w_sum"]  # bit-identical to an uninterrupted run
        assert res["w_norm"] == train(seed, steps)["w_norm"]
    record("sacct: seed 1 preempted by USR2 (submitit requeue), seed 2 by scontrol requeue",
           sacct_lines(jobs[0]))


def test_queued_job_runs_the_code_and_config_of_submission(slurm_cluster, tmp_path):
    """Submitted on hold; then the checkout's package and the app's config are edited; then released.
    The job must run the submitted code (from the sweep's .code_snapshot) and config."""
    root = tmp_path / "checkout"
    for entry in ("crownq", "hydra_plugins", "conf", "launch.py", "pyproject.toml"):
        src = REPO / entry
        (shutil.copytree(src, root / entry, ignore=shutil.ignore_patterns("__pycache__"))
         if src.is_dir() else shutil.copy2(src, root / entry))
    shutil.copytree(TOY.parent, root / "tests/slurm", ignore=shutil.ignore_patterns("__pycache__"))
    sweep, name = tmp_path / "sweep", f"crownq-toy-snapshot-{os.getpid()}"
    cmd, env = toy_command(sweep, name, "seed=3", "steps=3", "step_seconds=0",
                           "+hydra.launcher.additional_parameters.hold=true", root=root)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        jobs = wait_for(lambda: job_ids(name), 90, "the held job in the queue", proc)
        with open(root / "crownq/__init__.py", "a") as handle:
            handle.write('\n_TOY_MARKER = "edited after submission"\n')
        conf = root / "tests/slurm/toy_conf/toy.yaml"
        conf.write_text(conf.read_text().replace("message: original", "message: edited"))
        slurm("scontrol", "release", jobs[0])
        finish(proc, name, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            slurm("scancel", "-n", name, check=False)
    res = result(sweep, "0_seed3")
    snapshot = sweep / ".code_snapshot" / "0"
    assert res["status"] == "ok"
    assert res["crownq_file"] == str(snapshot / "crownq" / "__init__.py")
    assert res["code_snapshot_env"] == str(snapshot)
    assert res["marker"] is None and res["message"] == "original"
    # Control: the edit is real, a fresh import from the checkout sees it.
    seen = subprocess.run([sys.executable, "-c", "import crownq; print(crownq._TOY_MARKER)"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert seen.stdout.strip() == "edited after submission"
    record("sacct: held job released after the checkout was edited", sacct_lines(jobs[0]))
