"""train_model end to end on a micro GPT: resume bit-identity, signals, priming, phases, budget."""

import math
import sys
from pathlib import Path

import pytest
import torch

from crownq.distributed import DistEnv
from crownq.train import TrainingPreempted, train_model
from crownq.train.checkpoint import checkpoint_path, load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import build_micro_model, micro_config, torch_threads, write_token_shards  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_token_shards(tmp_path_factory.mktemp("shards"))


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def train(cfg, data, ckpt_dir=None):
    files, val = data
    logged = []
    model = build_micro_model(cfg)
    result = train_model(model, cfg, DistEnv(), files, val, None, ckpt_dir, log=logged.append)
    return result, logged


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="module")
def uninterrupted(data):
    return train(micro_config(), data)


def test_full_run_trains_and_goes_through_every_phase(uninterrupted):
    result, logged = uninterrupted
    assert result.steps == 12 and result.averaging == "swa_ema"
    phases = [h["qat_phase"] for h in result.history]
    assert phases[0] == "off" and "ste" in phases and phases[-1] == "soft"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] - 0.3
    assert result.prequant_val_loss < result.history[0]["train_loss"]
    assert logged == result.history
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in result.state_dict.values()
               if t.is_floating_point())


def test_resume_after_stop_is_bit_identical(data, tmp_path, uninterrupted):
    cfg = micro_config()
    cfg.debug = {"stop_after_step": 5}
    with pytest.raises(TrainingPreempted) as info:
        train(cfg, data, tmp_path)
    assert info.value.step == 5 and Path(info.value.checkpoint) == checkpoint_path(tmp_path)
    # The checkpoint loads without unpickling objects and holds what a resume needs.
    saved = load_checkpoint(checkpoint_path(tmp_path))
    assert saved["step"] == 5 and saved["per_rank"][0]["loader"]["stream_position"] > 0
    resumed, _ = train(cfg, data, tmp_path)  # same config, fresh process state: resumes at step 5
    assert resumed.steps == 12
    assert_bit_identical(resumed.state_dict, uninterrupted[0].state_dict)
    # History is restored from the checkpoint; apart from wall times it matches the uninterrupted run.
    def strip(history):
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]

    assert strip(resumed.history) == strip(uninterrupted[0].history)


def test_sigusr1_checkpoints_then_raises_and_resumes_bit_identically(data, tmp_path, uninterrupted):
    cfg = micro_config(checkpoint_every=4)
    cfg.debug = {"signal_at_step": 9}  # a real signal, delivered to this process after step 9
    with pytest.raises(TrainingPreempted, match="SIGUSR1") as info:
        train(cfg, data, tmp_path)
    assert info.value.step == 9
    resumed, _ = train(cfg, data, tmp_path)
    assert_bit_identical(resumed.state_dict, uninterrupted[0].state_dict)


def test_priming_steps_change_nothing(data, uninterrupted):
    primed, _ = train(micro_config(warmup_steps=3), data)
    assert_bit_identical(primed.state_dict, uninterrupted[0].state_dict)


def test_wallclock_cap_stops_training_and_burst_counts_inside_it(data):
    cfg = micro_config(iterations=10**6, max_wallclock_seconds=1.5, warmdown_iters=5, burst_steps=3)
    result, _ = train(cfg, data)
    assert result.train_seconds < 1.5 + 0.5  # burst steps were reserved inside the cap (+ one step's slack)
    assert result.history[-1]["lr_scale"] == cfg.train.burst_lr_scale  # the last steps were the burst
    assert result.steps > 3


def test_crownq_penalty_changes_training_only_when_enabled(data, uninterrupted):
    cfg = micro_config()
    cfg.quantizer.crownq_lambda = 0.0
    off, _ = train(cfg, data)
    on = uninterrupted[0]
    first_warmdown = 12 - 8  # step-based: LR scale < 1 from step 5 (0-based 4)
    assert off.history[first_warmdown - 1]["train_loss"] == on.history[first_warmdown - 1]["train_loss"]
    assert any(not torch.equal(off.state_dict[k], on.state_dict[k]) for k in on.state_dict)


def test_bad_batch_geometry_names_the_fields(data):
    with pytest.raises(ValueError, match="train.train_batch_tokens"):
        train(micro_config(train_batch_tokens=100), data)


def test_validation_every_k_steps_and_bpb_wiring(data):
    from crownq.data.byte_tables import ByteTables

    files, val = data
    # Every token worth exactly 1 byte: bpb must equal loss / ln 2.
    tables = ByteTables(torch.ones(64, dtype=torch.long), torch.zeros(64, dtype=torch.bool),
                        torch.zeros(64, dtype=torch.bool))
    cfg = micro_config(iterations=8, val_every=4, log_every=100)  # validation does not wait for logging
    result = train_model(build_micro_model(cfg), cfg, DistEnv(), files, val, tables, None, log=lambda m: None)
    with_val = [h["step"] for h in result.history if "val_loss" in h]
    assert with_val == [4, 8]
    assert result.prequant_val_bpb == pytest.approx(result.prequant_val_loss / math.log(2), rel=1e-9)


def test_stop_requested_before_training_checkpoints_at_step_zero(data, tmp_path):
    from crownq.train import request_stop

    request_stop("test: SLURM warning before training")
    with pytest.raises(TrainingPreempted, match="SLURM warning") as info:
        train(micro_config(iterations=2), data, tmp_path)
    assert info.value.step == 0 and checkpoint_path(tmp_path).exists()
    # Same config (a checkpoint resumes only its own run); the request was consumed.
    resumed, _ = train(micro_config(iterations=2), data, tmp_path)
    assert resumed.steps == 2
