"""`torchrun launch.py` with 2 CPU ranks (gloo): the ranks agree on one run folder and one result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["train.iterations=3", "train.train_batch_tokens=1024", "train.seq_len=128", "train.warmdown_iters=2",
         "train.val_every=0", "train.val_max_tokens=1024", "eval.max_val_tokens=2048", "eval.batch_seqs=8",
         "quantizer.calibration_batches=2", "logger=none"]

pytestmark = pytest.mark.slow


def test_two_ranks_share_rank0_run_folder(tmp_path):
    # Each rank gets its own Hydra folder (as when torchrun's ranks start in different seconds of the
    # timestamped default); the run must still use rank 0's folder for the artifact and result.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "launch.py"), *SMALL, f"hydra.run.dir={tmp_path}/rank_${{oc.env:RANK}}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = tmp_path / "rank_0", tmp_path / "rank_1"
    result = json.loads((rank0 / "result.json").read_text())
    assert result["status"] == "ok" and result["world_size"] == 2
    artifact_bytes = (rank0 / "artifact.ptz").stat().st_size
    assert artifact_bytes == result["artifact_bytes_total"] - result["artifact_bytes_code"]
    assert not (rank1 / "result.json").exists() and not (rank1 / "artifact.ptz").exists()
    assert proc.stdout.count("crownq seed 1337") == 1  # one headline: only rank 0 prints results
