"""The six ways crownq used to report a wrong number with exit code 0, each now a refusal (issue 11)."""

from __future__ import annotations

import json
import lzma
import os
import sys
from pathlib import Path

import brotli
import pytest
import zstandard
from integrity_helpers import REPO_ROOT, fake_outcome, run_config

import crownq.pipeline as pipeline
from crownq.distributed import DistEnv
from crownq.report.collect import collect_runs, group_runs
from crownq.results import read_result
from crownq.run_lock import RunFolderBusy, RunLock
from crownq.train import TrainingPreempted, train_model
from crownq.train.checkpoint import checkpoint_path

sys.path.insert(0, str(REPO_ROOT / "tests" / "train"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "pipeline"))
from train_helpers import build_micro_model, micro_config, torch_threads, write_token_shards  # noqa: E402


# 1. Resume ignores seed and config ----------------------------------------------------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_token_shards(tmp_path_factory.mktemp("shards"), n_tokens=8_000)


def _train(cfg, shards, ckpt_dir):
    files, val = shards
    with torch_threads(1):
        return train_model(build_micro_model(cfg), cfg, DistEnv(), files, None, None, ckpt_dir,
                           log=lambda _: None)


def test_a_checkpoint_resumes_only_its_own_seed_and_config(shards, tmp_path):
    cfg = micro_config(iterations=4)
    cfg.debug = {"stop_after_step": 2}
    with pytest.raises(TrainingPreempted):
        _train(cfg, shards, tmp_path)
    ckpt = checkpoint_path(tmp_path)
    other_seed = micro_config(iterations=4)
    other_seed.seed = 42
    with pytest.raises(ValueError, match=r"seed 1337.*this run is seed 42.*seed differs.*new folder") as info:
        _train(other_seed, shards, tmp_path)
    assert "deletes nothing" in str(info.value)
    with pytest.raises(ValueError, match="training_digest differs"):
        _train(micro_config(iterations=4, matrix_lr=0.01), shards, tmp_path)
    assert ckpt.is_file()  # nothing was deleted
    cfg.debug = {}
    assert _train(cfg, shards, tmp_path).steps == 4  # the run it belongs to still resumes it


# 2. Two runs in one folder ------------------------------------------------------------------------
def test_a_second_run_in_a_live_runs_folder_is_refused_naming_the_holder(tmp_path, monkeypatch):
    seen = {}

    def recipe(cfg, dist_env, run_dir, log, **_):
        with pytest.raises(RunFolderBusy) as info:  # a second run while this one is live
            pipeline.run(cfg, run_dir)
        seen["message"] = str(info.value)
        return fake_outcome()

    monkeypatch.setattr(pipeline, "run_recipe", recipe)
    result = pipeline.run(run_config(tmp_path), tmp_path)
    assert result["status"] == "ok" and read_result(tmp_path / "result.json")["status"] == "ok"
    assert f"pid {os.getpid()} on host" in seen["message"] and str(tmp_path) in seen["message"]


def test_a_crashed_run_leaves_no_stuck_lock(tmp_path):
    lock = RunLock(tmp_path).acquire()
    os.close(lock._fd)  # what the kernel does when the holder dies: the flock goes with the descriptor
    lock._fd = None
    RunLock(tmp_path).acquire().release()


# 3. Same-second default folders; finished results are never overwritten ---------------------------
def test_default_run_folders_are_unique_per_start_and_seed():
    from integrity_helpers import compose

    a = compose(["seed=1"], hydra_node=True).hydra.run.dir
    b = compose(["seed=2"], hydra_node=True).hydra.run.dir
    assert a != b and a.endswith("_seed1") and b.endswith("_seed2")
    assert "." in Path(a).name  # sub-second time


def test_a_finished_result_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_recipe", lambda *a, **k: fake_outcome())
    first = pipeline.run(run_config(tmp_path), tmp_path)
    before = (tmp_path / "result.json").read_text()
    with pytest.raises(RunFolderBusy, match="holds a finished run"):
        pipeline.run(run_config(tmp_path, "seed=42"), tmp_path)
    assert (tmp_path / "result.json").read_text() == before and first["seed"] == 1337


# 4. Report over a parent folder -------------------------------------------------------------------
def test_a_report_over_a_parent_folder_never_counts_a_seed_twice(tmp_path):
    from pipeline_synthetic import ok_result, write_run

    for sweep in ("sweep_a", "sweep_b"):
        for seed in (1337, 42):
            write_run(tmp_path / sweep, f"0_seed{seed}", ok_result(seed, "a" * 64, 1.9))
    twice = r"2 \(configuration, seed\) pair\(s\) finished more than once"
    with pytest.raises(ValueError, match=twice) as info:
        group_runs(collect_runs(tmp_path))
    assert "sweep_a/0_seed42 and sweep_b/0_seed42" in str(info.value)
    assert len(group_runs(collect_runs(tmp_path / "sweep_a"))[0].ok) == 2  # one sweep: fine


# 5. rescore_from into its own folder --------------------------------------------------------------
@pytest.mark.parametrize("target", [".", "0_seed1337", "0_seed1337/deeper"])
def test_rescoring_into_the_source_folder_is_refused(tmp_path, monkeypatch, target):
    source = tmp_path / "sweep"
    (source / "0_seed1337").mkdir(parents=True)
    finished = json.dumps({"status": "ok", "seed": 1337})
    (source / "0_seed1337" / "result.json").write_text(finished)
    monkeypatch.setattr(pipeline, "run_recipe", lambda *a, **k: pytest.fail("the recipe must not run"))
    run_dir = (source / target)
    with pytest.raises(ValueError, match="rescore_from=.*the folder it reads"):
        pipeline.run(run_config(tmp_path, f"rescore_from={source}"), run_dir)
    assert (source / "0_seed1337" / "result.json").read_text() == finished


# 6. Decompression bombs ---------------------------------------------------------------------------
BOMB = bytes(64 << 20)  # 64 MiB of zeros: compresses to a few KB with every codec


@pytest.mark.parametrize("codec, encode", [
    ("lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_RAW,
                                     filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}])),
    ("brotli", lambda d: brotli.compress(d, quality=1)),
    ("zstd", lambda d: zstandard.ZstdCompressor(level=1).compress(d)),
])
def test_a_decompression_bomb_stops_at_the_declared_length(codec, encode):
    import tracemalloc

    from crownq.quant.codecs import CodecError, decompress

    spec = {"codec": codec, "preset": 0}
    data = encode(BOMB)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="decodes to more bytes than the header says 4096"):
            decompress(data, spec, 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{codec} held {peak:,} bytes while refusing a 64 MiB bomb"


def test_a_declared_length_above_what_the_tensors_need_is_refused_before_decoding(monkeypatch):
    import torch

    from crownq.quant import artifact
    from crownq.quant.artifact import ArtifactError, QuantTensor, pack, unpack

    q = torch.zeros(4, 8, dtype=torch.int8)
    blob = pack({"w": QuantTensor(q, torch.ones(4), 6)}, codec="lzma", lzma_preset=0)
    header, _ = artifact._read_header(blob, "x")
    forged = json.loads(json.dumps(header))
    forged["sections"][0]["raw_len"] = 100 << 30  # asks for 100 GiB

    monkeypatch.setattr(artifact, "decompress", lambda *a: pytest.fail("decoded before checking"))
    monkeypatch.setattr(artifact, "_read_header", lambda b, w: (forged, b""))
    with pytest.raises(ArtifactError, match=r"declares 107,374,182,400 raw bytes but its tensors need 32"):
        unpack(blob)


def test_a_rans_stream_cannot_ask_for_huge_tables():
    import struct

    from crownq.quant import rans

    stream = rans.encode(bytes(100))
    forged = stream[:4] + struct.pack("<HH", rans.LANES, 60000) + stream[8:]
    with pytest.raises(ValueError, match="declares 60000 frequency tables"):
        rans.decode(forged, 100)
