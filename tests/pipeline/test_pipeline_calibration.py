"""The pipeline's GPTQ calibration sources: training batches, or text the trained model writes itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pipeline_compose import compose_run_config

from crownq import recipe
from crownq.distributed import DistEnv
from crownq.model import build_model

SMALL = ["quantizer.calibration_batches=2", "quantizer.calibration_seqs_per_batch=2", "train.seq_len=16"]


def tiny_model(cfg):
    torch.manual_seed(0)
    return build_model(cfg.arch).eval()


def test_self_generated_calibration_reads_no_training_data(monkeypatch):
    cfg = compose_run_config([*SMALL, "quantizer.calibration_source=self_generated"])
    model = tiny_model(cfg)
    monkeypatch.setattr(recipe, "_bos_id", lambda path: 1)
    missing = [Path("/nonexistent/fineweb_train_000000.bin")]  # would raise if anything opened it
    hessians = recipe._collect_hessians(model, cfg, missing, Path("/nonexistent/tok.model"),
                                          DistEnv(device=torch.device("cpu")))
    names = {f"{name}.weight" for name, _ in model.quantizable_linears()}
    assert set(hessians) == names
    for name, h in hessians.items():
        assert h.shape[0] == h.shape[1], name
        assert torch.isfinite(h).all() and h.diagonal().gt(0).any(), name
        assert torch.allclose(h, h.T, atol=1e-5), name


def test_self_generated_hessians_depend_on_the_seed(monkeypatch):
    monkeypatch.setattr(recipe, "_bos_id", lambda path: 1)
    env = DistEnv(device=torch.device("cpu"))
    out = []
    for seed in (1, 2):
        cfg = compose_run_config([*SMALL, "quantizer.calibration_source=self_generated", f"seed={seed}"])
        out.append(recipe._collect_hessians(tiny_model(cfg), cfg, [], Path("x"), env))
    key = next(iter(out[0]))
    assert not torch.equal(out[0][key], out[1][key])


def test_unknown_calibration_source_names_the_field():
    cfg = compose_run_config([*SMALL, "quantizer.calibration_source=validation"])
    with pytest.raises(ValueError, match="quantizer.calibration_source='validation'"):
        recipe._collect_hessians(tiny_model(cfg), cfg, [], Path("x"), DistEnv(device=torch.device("cpu")))


def test_calibration_batches_follow_the_training_preset():
    assert compose_run_config([]).quantizer.calibration_batches == 16  # cpu_tiny
    assert compose_run_config(["train=record_8xh100"]).quantizer.calibration_batches == 256
    assert compose_run_config(["quantizer.calibration_batches=3"]).quantizer.calibration_batches == 3
