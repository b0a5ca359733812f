"""`python launch.py` end to end on a shrunken CPU default, a seed sweep, and a sweep with a failing seed.

These run the real stages (data, model, train, export, eval) in subprocesses, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_log_reader import read_offline_run

from crownq.report import main as report_main
from crownq.results import REQUIRED_OK_KEYS, read_result

REPO = Path(__file__).resolve().parents[2]
# A few steps on a few short sequences: this checks the wiring, not the model.
SMALL = ["train.iterations=3", "train.train_batch_tokens=512", "train.seq_len=128", "train.warmdown_iters=2",
         "train.val_every=0", "train.val_max_tokens=1024", "train.log_every=1", "eval.max_val_tokens=1024",
         "eval.batch_seqs=8", "quantizer.calibration_batches=2"]

pytestmark = pytest.mark.slow


def launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)
    proc = subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


def test_single_run_prints_headline_and_writes_everything(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(*SMALL, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = read_result(run_dir / "result.json")
    assert result["status"] == "ok" and set(REQUIRED_OK_KEYS) <= set(result)
    assert result["steps"] == 3 and result["seed"] == 1337
    assert result["val_bpb"] == result["sliding_val_bpb"]  # sliding is on in the default eval
    assert result["artifact_bytes_total"] == result["artifact_bytes_model"] + result["artifact_bytes_code"]
    assert (run_dir / "artifact.ptz").stat().st_size == result["artifact_bytes_model"]
    assert f"val_bpb {result['val_bpb']:.5f}" in proc.stdout  # the headline
    (wandb_dir,) = (run_dir / "wandb").glob("offline-run-*")
    logged = read_offline_run(wandb_dir)
    assert logged["summary"]["val_bpb"] == pytest.approx(result["val_bpb"])
    assert any("train_loss" in row for row in logged["history"])  # curves logged during training


def test_seed_sweep_writes_three_results_and_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = launch("-m", "+sweeps=seeds", "logger=none", *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = sorted(sweep.glob("*/result.json"))
    assert [p.parent.name for p in results] == ["0_seed1337", "1_seed42", "2_seed7"]
    assert {read_result(p)["status"] for p in results} == {"ok"}
    report = json.loads((sweep / "report" / "report.json").read_text())
    (group,) = report["groups"]
    assert group["seeds_ok"] == [7, 42, 1337] and group["val_bpb"]["n"] == 3
    assert "## Summary" in proc.stdout
    # Re-running the report by hand gives the same numbers.
    assert report_main([str(sweep), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["groups"] == report["groups"]


def test_a_failing_seed_still_yields_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    # Seeds given on the command line take precedence over the sweep file's list.
    proc = launch("-m", "+sweeps=seeds", "seed=42,7", "+debug.fail_seed=42", "logger=none", *SMALL,
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]  # a failed seed fails the sweep (issue 11)
    failed = read_result(sweep / "0_seed42" / "result.json")
    assert failed["status"] == "failed" and "debug.fail_seed=42" in failed["error"]
    assert read_result(sweep / "1_seed7" / "result.json")["status"] == "ok"
    markdown = (sweep / "report" / "report.md").read_text()
    assert "## Failed runs" in markdown and "debug.fail_seed=42: injected failure" in markdown


def test_a_signal_stops_a_local_sweep_instead_of_starting_the_next_seed(tmp_path):
    """SIGTERM/SIGUSR1 in a local multirun is the user or the machine ending the sweep: the job saves
    its checkpoint and the launcher starts no further job (upstream's would record it and go on)."""
    sweep = tmp_path / "sweep"
    proc = launch("-m", "+sweeps=seeds", "seed=42,7", "+debug.signal_at_step=2", "logger=none", *SMALL,
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "sweep stopped by SIGUSR1 in job #0" in proc.stderr + proc.stdout
    assert read_result(sweep / "0_seed42" / "result.json")["status"] == "interrupted"
    assert (sweep / "0_seed42" / "checkpoints" / "train_state.pt").is_file()
    assert not (sweep / "1_seed7").exists()


def test_a_failing_single_run_exits_non_zero_with_a_failed_result(tmp_path):
    run_dir = tmp_path / "run"
    proc = launch("+debug.fail_seed=1337", "logger=none", *SMALL, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode != 0
    result = read_result(run_dir / "result.json")
    assert result["status"] == "failed" and "Traceback" in result["traceback"]


def test_eval_ablation_rescores_the_seed_sweep_artifacts(tmp_path):
    # Train two seeds once, then score their artifacts with two strides without training again.
    seeds = tmp_path / "seeds"
    proc = launch("-m", "+sweeps=seeds", "seed=1337,42", "logger=none", *SMALL, f"hydra.sweep.dir={seeds}",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    strides = tmp_path / "strides"
    proc = launch("-m", "+sweeps=ablate_eval_stride", "seed=1337,42", "eval=sliding32,sliding128",
                  "logger=none", *SMALL, f"rescore_from={seeds}", f"hydra.sweep.dir={strides}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[crownq] train" not in proc.stdout and "[crownq] rescore" in proc.stdout
    sources = {r["seed"]: (p.parent, r) for p in seeds.glob("*/result.json") for r in [read_result(p)]}
    rescored = [read_result(p) for p in sorted(strides.glob("*/result.json"))]
    assert len(rescored) == 4 and {r["status"] for r in rescored} == {"ok"}
    for r in rescored:
        source_dir, source = sources[r["seed"]]
        assert r["rescored_from"] == str(source_dir)
        for key in ("train_seconds", "steps", "artifact_bytes_total", "prequant_val_bpb"):
            assert r[key] == source[key], key
        assert r["training_digest"] == source["training_digest"]
    # Stride 32 gives every scored token at least as much context as stride 128: a different number.
    by_cell = {(r["seed"], r["config_digest"]): r["sliding_val_bpb"] for r in rescored}
    assert len(by_cell) == 4 and len(set(by_cell.values())) == 4
    report = json.loads((strides / "report" / "report.json").read_text())
    assert len(report["groups"]) == 2  # one per stride


def test_rescoring_a_run_trained_with_another_config_fails_clearly(tmp_path):
    run_dir = tmp_path / "run"
    assert launch(*SMALL, "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    proc = launch(*SMALL, "logger=none", "train.iterations=4", f"rescore_from={run_dir}",
                  f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert proc.returncode != 0
    failed = read_result(tmp_path / "again" / "result.json")
    assert failed["status"] == "failed" and "trained with another config" in failed["error"]
    assert read_result(run_dir / "result.json")["status"] == "ok"  # the source is untouched
