"""From a finished CPU run to a records folder whose train_gpt.py, run from an empty folder, reproduces
the run: same val_bpb (to 1e-6), same artifact bytes, same code bytes. 1 process and 2 gloo ranks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crownq.submit.cli import main as submit_main

REPO = Path(__file__).resolve().parents[2]
TINY = ["logger=none", "train.iterations=3", "train.train_batch_tokens=1024", "train.seq_len=128",
        "train.warmdown_iters=2", "train.val_every=0", "train.val_max_tokens=1024",
        "eval.max_val_tokens=1024", "eval.batch_seqs=8", "quantizer.calibration_batches=2"]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    env.pop("PYTHONPATH", None)  # the bundle must not need the checkout
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_reproduces(original_dir: Path, bundled_dir: Path) -> None:
    a = json.loads((original_dir / "result.json").read_text())
    b = json.loads((bundled_dir / "result.json").read_text())
    assert b["status"] == "ok" and b["config_digest"] == a["config_digest"]
    assert abs(b["val_bpb"] - a["val_bpb"]) <= 1e-6
    assert b["artifact_bytes_code"] == a["artifact_bytes_code"]
    assert b["artifact_code_sha256"] == a["artifact_code_sha256"]
    assert _sha(bundled_dir / "artifact.ptz") == _sha(original_dir / "artifact.ptz")


@pytest.mark.parametrize("mode", ["raw", "compressed"])
def test_bundle_reproduces_a_single_process_run(tmp_path, mode):
    sweep = tmp_path / "sweep"
    _run([sys.executable, str(REPO / "launch.py"), "-m", "seed=42", f"quantizer.code_bytes_mode={mode}",
          *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    out = str(tmp_path / "rec")
    assert submit_main([str(sweep), "--group", "default", "--name", "tiny", "--out", out]) == 0
    (folder,) = (tmp_path / "rec").iterdir()
    names = {p.name for p in folder.iterdir()}
    assert {"train_gpt.py", "README.md", "submission.json", "requirements.txt", "train_seed42.log"} <= names
    original = json.loads((sweep / "0_seed42" / "result.json").read_text())
    submission = json.loads((folder / "submission.json").read_text())
    counted = (folder / "train_gpt.py").stat().st_size
    assert submission["bytes_code"] == counted == original["artifact_bytes_code"]
    assert submission["seed_results"]["42"]["val_bpb"] == original["val_bpb"]
    assert "torch==" in (folder / "requirements.txt").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_gpt.py").write_bytes((folder / "train_gpt.py").read_bytes())
    _run([sys.executable, "train_gpt.py"], cwd=empty, extra_env={"SEED": "42"})
    _check_reproduces(sweep / "0_seed42", empty / "run_seed42")


def test_bundle_reproduces_a_two_rank_torchrun_run(tmp_path):
    sweep = tmp_path / "sweep"
    _run([*_torchrun(2), str(REPO / "launch.py"), *TINY, f"hydra.run.dir={sweep}/rank_${{oc.env:RANK}}"],
         cwd=tmp_path)
    out = str(tmp_path / "rec")
    assert submit_main([str(sweep), "--group", "default", "--name", "ddp", "--out", out]) == 0
    (folder,) = (tmp_path / "rec").iterdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_gpt.py").write_bytes((folder / "train_gpt.py").read_bytes())
    _run([*_torchrun(2), "train_gpt.py"], cwd=empty, extra_env={"SEED": "1337"})
    _check_reproduces(sweep / "rank_0", empty / "run_seed1337")
    assert json.loads((empty / "run_seed1337" / "result.json").read_text())["world_size"] == 2
