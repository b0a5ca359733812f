"""Score-first test-time training: the ordering is enforced, the maths matches sliding when it learns
nothing, and it does learn when there is something to learn."""

import pytest
import torch
from eval_standin import StandInLM, hand_made_tables, random_stream

import crownq.eval.ttt as ttt_module
from crownq.config.eval import EvalConfig, TTTConfig
from crownq.distributed import DistEnv
from crownq.eval import ScoreFirstGuard, ScoreFirstViolation, score_first_ttt, sliding_window_eval
from crownq.eval.ttt import training_plan

SINGLE = DistEnv()


def ttt_config(**ttt):
    base = dict(enabled=True, chunk_tokens=100, optimizer="sgd", lr=0.05, epochs=2, batch_seqs=3)
    return EvalConfig(seq_len=32, stride=8, batch_seqs=4, ttt=TTTConfig(**{**base, **ttt}))


def test_guard_refuses_training_beyond_the_scored_prefix():
    guard = ScoreFirstGuard(num_targets=100)
    with pytest.raises(ScoreFirstViolation, match=r"targets \[0, 10\) but only \[0, 0\)"):
        guard.check_trainable(0, 10)
    guard.record_scored(0, 40)
    guard.check_trainable(8, 40)
    with pytest.raises(ScoreFirstViolation):
        guard.check_trainable(30, 41)
    with pytest.raises(ScoreFirstViolation, match="one left-to-right pass"):
        guard.record_scored(50, 60)  # a gap: targets 40..49 would be skipped
    assert guard.trained_upto == 40


@pytest.mark.parametrize("lo,hi,seq_len", [(0, 96, 32), (32, 100, 32), (100, 130, 32), (200, 231, 16)])
def test_training_plan_trains_each_chunk_target_once(lo, hi, seq_len):
    plan = training_plan(lo, hi, seq_len)
    counts = torch.zeros(hi + seq_len, dtype=torch.long)
    for start, first in zip(plan.starts.tolist(), plan.score_lo.tolist()):
        assert start >= 0 and start + seq_len <= hi  # no target at or beyond hi is even fed
        counts[start + first:start + seq_len] += 1
    assert torch.all(counts[lo:hi] == 1) and counts.sum() == hi - lo


def test_model_never_trains_on_a_token_before_it_is_scored():
    # Every position holds a distinct id, so the ids a call sees say exactly which positions it saw.
    vocab, length = 500, 401
    val = torch.randperm(vocab - 4, generator=torch.Generator().manual_seed(0))[:length] + 4
    model = StandInLM(vocab, dim=16, layers=2, max_len=64, record=True)
    cfg = ttt_config()
    result = score_first_ttt(model, val, hand_made_tables(vocab), cfg, SINGLE, copy_model=False)
    ids = val.tolist()
    scored: set[int] = set()
    trained: set[int] = set()
    train_calls = 0
    for grad_enabled, inputs, targets in model.calls:
        if grad_enabled:
            train_calls += 1
            seen = set(inputs.flatten().tolist()) | set(targets.flatten().tolist())
            assert seen <= scored | {ids[0]}, "trained on a token before it was scored"
            trained |= set(targets.flatten().tolist())
        else:
            scored |= set(targets.flatten().tolist())
    assert scored == set(ids[1:]) and result.tokens == length - 1
    assert train_calls > 0 and result.details["chunks"] >= 4
    last_chunk_start = result.details["trained_upto"]
    assert last_chunk_start < length - 1
    assert trained.isdisjoint(ids[last_chunk_start + 1:]), "the last chunk was trained on"


def test_training_past_the_scored_prefix_is_refused(monkeypatch):
    honest = ttt_module.training_plan
    monkeypatch.setattr(ttt_module, "training_plan", lambda lo, hi, seq_len: honest(lo, hi + 8, seq_len))
    model = StandInLM(96, dim=16, max_len=64)
    with pytest.raises(ScoreFirstViolation, match="must be scored before the model learns"):
        score_first_ttt(model, random_stream(401, 96), hand_made_tables(96), ttt_config(), SINGLE)


@pytest.mark.parametrize("change", [dict(lr=0.0), dict(epochs=0)])
def test_ttt_that_learns_nothing_equals_sliding(change):
    model = StandInLM(96, dim=16, max_len=64).eval()
    val, tables = random_stream(401, 96, seed=1), hand_made_tables(96)
    ttt = score_first_ttt(model, val, tables, ttt_config(**change), SINGLE)
    sliding = sliding_window_eval(model, val, tables, 32, 8, 4, SINGLE)
    assert (ttt.tokens, ttt.bytes) == (sliding.tokens, sliding.bytes) == (400, ttt.bytes)
    assert ttt.val_loss == pytest.approx(sliding.val_loss, rel=1e-6)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adamw", 0.01)])
def test_ttt_learns_a_pattern_sliding_cannot_see_and_leaves_the_model_alone(optimizer, lr):
    # A 23-token motif repeated: an untrained model cannot predict it, a few TTT steps can.
    motif = random_stream(23, 96, seed=2, bos_every=1000)
    val = motif.repeat(30)[:601]
    model = StandInLM(96, dim=32, max_len=64).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tables = hand_made_tables(96)
    cfg = ttt_config(optimizer=optimizer, lr=lr, lr_schedule="constant", momentum=0.0)
    ttt = score_first_ttt(model, val, tables, cfg, SINGLE)
    sliding = sliding_window_eval(model, val, tables, 32, 8, 4, SINGLE)
    assert ttt.val_bpb < 0.8 * sliding.val_bpb
    assert ttt.details["train_steps"] > 0 and ttt.method == "ttt_score_first"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_frozen_blocks_do_not_move():
    model = StandInLM(96, dim=16, max_len=64)
    first = [p.clone() for p in model.blocks[0].parameters()]
    second = [p.clone() for p in model.blocks[1].parameters()]
    score_first_ttt(model, random_stream(401, 96), hand_made_tables(96), ttt_config(frozen_blocks=1),
                    SINGLE, copy_model=False)
    assert all(torch.equal(a, b) for a, b in zip(first, model.blocks[0].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(second, model.blocks[1].parameters()))


@pytest.mark.parametrize("change,match", [(dict(frozen_blocks=3), "frozen_blocks=3 but the model has 2"),
                                          (dict(optimizer="lion"), "optimizer must be sgd or adamw"),
                                          (dict(lr_schedule="step"), "lr_schedule must be constant"),
                                          (dict(chunk_tokens=0), "chunk_tokens must be positive")])
def test_bad_ttt_settings_are_clear_errors(change, match):
    model = StandInLM(96, dim=16, max_len=64)
    with pytest.raises(ValueError, match=match):
        score_first_ttt(model, random_stream(401, 96), hand_made_tables(96), ttt_config(**change), SINGLE)
