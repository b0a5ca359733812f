"""The errors that used to be unclear (issue 11): each names its field or file and what to do."""

from __future__ import annotations

import errno
import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from integrity_helpers import REPO_ROOT, compose, fake_outcome, run_config
from omegaconf import OmegaConf

import crownq.pipeline as pipeline
from crownq.config.validate import CODECS
from crownq.results import read_result, write_json_atomic


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# A forged artifact header -------------------------------------------------------------------------
def test_a_forged_header_missing_a_key_names_the_entry_and_key():
    from crownq.quant import artifact
    from crownq.quant.artifact import ArtifactError, QuantTensor, pack, unpack

    blob = pack({"w": QuantTensor(torch.zeros(4, 8, dtype=torch.int8), torch.ones(4), 6)}, lzma_preset=0)
    header, payload = artifact._read_header(blob, "x")
    del header["sections"][0]["raw_len"]
    text = json.dumps(header, separators=(",", ":")).encode()
    hbytes = lzma.compress(text, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    forged = artifact.PREFIX.pack(artifact.MAGIC, artifact.FORMAT_VERSION, len(hbytes),
                                  hashlib.sha256(hbytes).digest()) + hbytes + payload
    with pytest.raises(ArtifactError, match=r"header sections\[0\] lacks key 'raw_len'"):
        unpack(forged, "forged.ptz")


# crownq-report on an empty folder -----------------------------------------------------------------
def test_a_report_on_an_empty_folder_exits_non_zero(tmp_path, capsys):
    from crownq.report import main as report_main

    assert report_main([str(tmp_path)]) != 0
    assert "holds no runs" in capsys.readouterr().err


# Disk full ----------------------------------------------------------------------------------------
def test_disk_full_gives_a_failed_result_a_clear_error_and_no_temporary_file(tmp_path, monkeypatch):
    from crownq.train.checkpoint import save_checkpoint

    def full_disk_save(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    def recipe(cfg, dist_env, run_dir, log, **_):
        monkeypatch.setattr(torch, "save", full_disk_save)
        save_checkpoint(run_dir / "checkpoints" / "train_state.pt", {"step": 1})
        return fake_outcome()

    monkeypatch.setattr(pipeline, "run_recipe", recipe)
    with pytest.raises(OSError):
        pipeline.run(run_config(tmp_path), tmp_path)
    result = read_result(tmp_path / "result.json")
    assert result["status"] == "failed" and result["error"].startswith("no space left on device")
    assert "free space there and rerun" in result["error"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_results_and_artifacts_are_created_with_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        path = write_json_atomic(tmp_path / "result.json", {"status": "ok"})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o664


# A seed that never ran ----------------------------------------------------------------------------
def test_the_report_lists_planned_seeds_that_never_started(tmp_path):
    from crownq.report.collect import collect_runs

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    planned = compose(["+sweeps=seeds"], hydra_node=True)  # the sweep file's params: seed 1337,42,7
    OmegaConf.save(OmegaConf.create({"hydra": {"sweeper": {"params": dict(planned.hydra.sweeper.params)},
                                               "overrides": {"task": ["+sweeps=seeds", "seed=42,7,5"]}}}),
                   sweep / "multirun.yaml")
    (sweep / "0_seed42").mkdir()
    (sweep / "0_seed42" / "result.json").write_text(json.dumps(
        {"status": "ok", "seed": 42, "overrides": ["+sweeps=seeds", "seed=42"], "config_digest": "a" * 64,
         **fake_outcome(), "hardware": "cpu", "torch_version": "x"}))
    runs = collect_runs(sweep)
    missing = sorted(r["seed"] for r in runs if r["status"] == "missing")
    assert missing == [5, 7]
    assert all("never started" in r["error"] for r in runs if r["status"] == "missing")


# Divergence ---------------------------------------------------------------------------------------
def test_training_stops_at_the_first_non_finite_loss_naming_the_step(monkeypatch, tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "tests" / "train"))
    from train_helpers import build_micro_model, micro_config, write_token_shards

    from crownq.distributed import DistEnv
    from crownq.train import loop, train_model
    from crownq.train.divergence import TrainingDiverged

    steps = []
    real_step = loop.Trainer.step

    def step(self, i, scale):
        steps.append(i)
        loss = real_step(self, i, scale)
        return loss * float("nan") if i == 2 else loss

    monkeypatch.setattr(loop.Trainer, "step", step)
    files, _ = write_token_shards(tmp_path, n_tokens=8_000)
    cfg = micro_config(iterations=10)
    with pytest.raises(TrainingDiverged, match="train_loss is nan at step 3"):
        train_model(build_micro_model(cfg), cfg, DistEnv(), files, None, None, None, log=lambda _: None)
    assert steps == [0, 1, 2]  # no step after the non-finite one


def test_a_diverged_run_has_status_diverged(tmp_path, monkeypatch):
    from crownq.train.divergence import TrainingDiverged

    def recipe(*args, **kwargs):
        raise TrainingDiverged(7, float("nan"))

    monkeypatch.setattr(pipeline, "run_recipe", recipe)
    with pytest.raises(TrainingDiverged):
        pipeline.run(run_config(tmp_path), tmp_path)
    result = read_result(tmp_path / "result.json")
    assert result["status"] == "diverged" and "at step 7" in result["error"]


# A data path that is not UTF-8 --------------------------------------------------------------------
def test_a_tokenizer_under_a_non_utf8_path_loads(tmp_path):
    import sentencepiece as spm

    from crownq.data.byte_tables import byte_tables_from_sentencepiece
    from crownq.data.resolve import tokenizer_vocab_size

    folder = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/data_\xff"))
    folder.mkdir()
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "tok"), vocab_size=40,
                                   model_type="bpe", minloglevel=2)
    (folder / "tokenizer.model").write_bytes((tmp_path / "tok.model").read_bytes())
    assert tokenizer_vocab_size(folder / "tokenizer.model") == 40
    assert byte_tables_from_sentencepiece(folder / "tokenizer.model", 40) is not None


# Sweeps: validation of every job first, and the exit status ---------------------------------------
def test_a_bad_sweep_cell_is_refused_before_the_first_seed_trains(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _launch("-m", "seed=1,2", "quantizer.codec=lzma,lzmaa", "logger=none", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode != 0
    assert "2 of 4 sweep jobs have invalid configs; no job was started" in proc.stderr
    assert f"quantizer.codec='lzmaa': expected one of {', '.join(CODECS)}" in proc.stderr
    assert not list(sweep.rglob("result.json"))


def test_a_failed_seed_makes_the_sweep_exit_non_zero_unless_allowed(tmp_path):
    args = ("-m", "seed=42", "+debug.fail_seed=42", "logger=none")
    proc = _launch(*args, f"hydra.sweep.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 sweep job(s) did not finish ok" in proc.stderr and "allow_failed_seeds=true" in proc.stderr
    proc = _launch(*args, "allow_failed_seeds=true", f"hydra.sweep.dir={tmp_path / 'b'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_typo_on_the_record_presets_is_refused_in_seconds(tmp_path):
    import time

    t0 = time.perf_counter()
    proc = _launch("arch=crownq_11l", "train=record_8xh100", "quantizer=gptq_int6", "averaging=swa_ema",
                   "eval=sliding64", "quantizer.codec=lzmaa", cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2
    assert f"quantizer.codec='lzmaa': expected one of {', '.join(CODECS)}" in proc.stderr
    assert not list(tmp_path.rglob("result.json"))
    assert elapsed < 10, f"{elapsed:.1f} s"  # measured ~1.2 s idle; generous for a loaded CI machine
