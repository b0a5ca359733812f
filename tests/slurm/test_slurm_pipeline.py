"""`python launch.py -m ... hydra/launcher=crownq_slurm` against the real cluster: the full pipeline
(data, train, export, eval, result.json, report) of the CPU default, shrunk to a few steps so each seed
takes seconds.

Skipped, naming what is missing, until every pipeline stage exists.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_helpers import REPO, finish, record, sacct_lines

STAGES = ("crownq.data.resolve", "crownq.model", "crownq.train", "crownq.quant.calibrate",
          "crownq.quant.export", "crownq.quant.budget", "crownq.eval", "crownq.report.cli")
# A few steps on short sequences: this checks the SLURM path of the real pipeline, not the model.
SMALL = ["train.iterations=4", "train.train_batch_tokens=512", "train.seq_len=128", "train.warmdown_iters=2",
         "train.val_every=0", "train.val_max_tokens=1024", "train.log_every=1", "eval.max_val_tokens=1024",
         "eval.batch_seqs=8", "quantizer.calibration_batches=2"]


def _missing_stages() -> list[str]:
    missing = []
    for name in STAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    return missing


pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(bool(_missing_stages()),
                                 reason=f"pipeline stages missing: {_missing_stages()}")]


def launch_slurm(sweep: Path, name: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, str(REPO / "launch.py"), "-m", "hydra/launcher=crownq_slurm",
           f"hydra.launcher.name={name}", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}",
           *SMALL, *overrides]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))}


def test_three_seed_sweep_with_a_hard_crash_ends_in_results_and_report(slurm_cluster, tmp_path):
    """The seeds sweep of the CPU default as one SLURM job array. Seed 42 dies hard (os._exit inside the
    job, like an OOM kill): it is reported as failed; seeds 1337 and 7 keep their results; the report
    is written when the multirun ends and lists the failure."""
    sweep = tmp_path / "sweep"
    proc = launch_slurm(sweep, f"crownq-seeds-{os.getpid()}", "+sweeps=seeds", "logger=none",
                        "+debug.crash_seed=42", cwd=tmp_path)
    # A failed seed fails the sweep (exit 1, issue 11) after the report is written.
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 sweep job(s) did not finish ok" in proc.stderr and "seed=42" in proc.stderr
    res = results(sweep)
    assert sorted(res) == ["0_seed1337", "1_seed42", "2_seed7"]
    assert res["0_seed1337"]["status"] == res["2_seed7"]["status"] == "ok"
    crashed = res["1_seed42"]
    assert crashed["status"] == "failed" and crashed["slurm_state"] == "FAILED", crashed
    assert res["0_seed1337"]["config_digest"] == res["2_seed7"]["config_digest"]
    report = json.loads((sweep / "report" / "report.json").read_text())
    text = json.dumps(report)
    assert "42" in text and "failed" in text
    assert (sweep / "report" / "report.md").is_file()
    assert all(r["hardware"].startswith("1x") for k, r in res.items() if r["status"] == "ok")
    record("sacct: 3-seed pipeline sweep (seed 42 crashed hard)", sacct_lines(crashed["slurm_job_id"]))


def test_two_task_job_trains_with_two_gloo_ranks(slurm_cluster, tmp_path):
    """One SLURM job, 2 tasks (one per core): 2 gloo ranks train one model; rank 0's result comes back."""
    sweep = tmp_path / "sweep"
    proc = launch_slurm(sweep, f"crownq-ranks-{os.getpid()}", "seed=3", "logger=none",
                        "hydra.launcher.tasks_per_node=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (only,) = results(sweep).values()
    assert only["status"] == "ok" and only["world_size"] == 2 and only["hardware"].startswith("2x"), only
    assert only["steps"] == 4 and (sweep / "0_seed3" / "artifact.ptz").is_file()
    task_logs = sorted((sweep / ".submitit").rglob("*_log.out"))
    assert len(task_logs) == 2  # one log per SLURM task (rank)
    job = task_logs[0].parent.name
    record("sacct: 2-task pipeline job", sacct_lines(job))


def test_preempted_run_resumes_to_the_uninterrupted_result(slurm_cluster, tmp_path):
    """Two jobs, same seed and config: job 0 is stopped by a signal at step 2 (the training loop
    checkpoints, submitit requeues it), job 1 runs straight through. The requeued job resumes from the
    checkpoint in its own folder, resumes its wandb run, and ends with exactly the same scores and bytes."""
    sweep = tmp_path / "sweep"
    name = f"crownq-preempt-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "-m", "hydra/launcher=crownq_slurm",
         f"hydra.launcher.name={name}", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", *SMALL,
         "seed=5",
         "+debug.signal_at_step=2,99", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        finish(proc, name, timeout=500)  # also lifts SLURM's ~2 min BeginTime hold on the requeued job
    finally:
        if proc.poll() is None:
            proc.kill()
    res = results(sweep)
    interrupted, straight = res["0"], res["1"]
    assert interrupted["status"] == straight["status"] == "ok", (interrupted, straight)
    for key in ("val_loss", "val_bpb", "prequant_val_bpb", "roundtrip_val_bpb", "artifact_bytes_model"):
        assert interrupted[key] == straight[key], key
    log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_0_log.out"))
    assert "resumed from" in log and "step 2" in log, log[-2000:]
    runs = sorted((sweep / "0" / "wandb").glob("offline-run-*"))
    run_id = (sweep / "0" / "wandb_run_id.txt").read_text().strip()
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)  # two attempts, one wandb run
    job = sorted((sweep / ".submitit").glob("*_0"))[0].name
    record("sacct: pipeline job preempted at step 2 and requeued", sacct_lines(job))
