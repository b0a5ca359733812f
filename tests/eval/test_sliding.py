"""Sliding-window and roundtrip evaluation against straightforward implementations."""

import math

import pytest
import torch
from eval_standin import StandInLM, bytes_by_rule, hand_made_tables, random_stream
from oracles.sliding_reference import sliding_window_reference

from crownq.data.byte_tables import bits_per_byte, target_byte_counts
from crownq.distributed import DistEnv
from crownq.eval import roundtrip_eval, sliding_window_eval
from crownq.eval.scoring import EvalRuntime, resolve_runtime, score_windows
from crownq.eval.windows import plan_sliding_windows

VOCAB = 96
SINGLE = DistEnv()


@pytest.fixture(scope="module")
def model():
    return StandInLM(VOCAB, dim=32, layers=2, max_len=128).eval()


@pytest.fixture(scope="module")
def tables():
    return hand_made_tables(VOCAB)


# (stream length, seq_len, stride, batch): exact fits and ragged tails; batches that do not divide.
CASES = [(257, 64, 16, 8), (300, 64, 16, 5), (401, 100, 30, 3), (257, 32, 32, 4), (80, 16, 1, 32),
         (129, 128, 64, 2)]


@pytest.mark.parametrize("length,seq_len,stride,batch", CASES)
def test_batched_sliding_equals_one_window_at_a_time(model, tables, length, seq_len, stride, batch):
    val = random_stream(length, VOCAB, seed=length)
    fast = sliding_window_eval(model, val, tables, seq_len, stride, batch, SINGLE)
    ref = sliding_window_reference(model, val, tables, seq_len, stride)
    assert fast.tokens == ref.tokens == length - 1
    assert fast.bytes == ref.bytes == bytes_by_rule(val, tables)
    # Same maths, different batch shapes: fp32 GEMM summation order may differ in the last bits.
    assert fast.val_loss == pytest.approx(ref.val_loss, rel=1e-6)
    assert fast.val_bpb == pytest.approx(ref.val_bpb, rel=1e-6)


def test_stride_equal_to_seq_len_reduces_to_roundtrip(model, tables):
    val = random_stream(8 * 64 + 1, VOCAB, seed=3)
    sliding = sliding_window_eval(model, val, tables, 64, 64, 4, SINGLE)
    roundtrip = roundtrip_eval(model, val, tables, 64, 4, SINGLE)
    assert (sliding.tokens, sliding.bytes) == (roundtrip.tokens, roundtrip.bytes)
    assert sliding.val_loss == roundtrip.val_loss and sliding.val_bpb == roundtrip.val_bpb


def test_roundtrip_equals_direct_computation(model, tables):
    seq_len, n_seq = 50, 6
    val = random_stream(seq_len * n_seq + 1, VOCAB, seed=4)
    result = roundtrip_eval(model, val, tables, seq_len, 4, SINGLE)
    x, y = val[:-1].view(n_seq, seq_len), val[1:].view(n_seq, seq_len)
    with torch.no_grad():
        nats = model.per_token_loss(x, y).double().sum().item()
    nbytes = int(target_byte_counts(x, y, tables).sum())
    assert result.tokens == n_seq * seq_len and result.bytes == nbytes == bytes_by_rule(val, tables)
    assert result.val_loss == pytest.approx(nats / result.tokens, rel=1e-6)
    assert result.val_bpb == pytest.approx(bits_per_byte(nats, nbytes), rel=1e-6)
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2) * result.tokens / result.bytes)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_add_up_to_the_single_process_sums(model, tables, world_size):
    val = random_stream(400, VOCAB, seed=5)
    plan = plan_sliding_windows(399, 64, 24)
    runtime = resolve_runtime(torch.device("cpu"))
    whole = score_windows(model.per_token_loss, val, tables, plan, 8, runtime)
    parts = sum(score_windows(model.per_token_loss, val, tables, plan.shard(r, world_size), 8, runtime)
                for r in range(world_size))
    assert parts[1:].tolist() == whole[1:].tolist()
    assert parts[0].item() == pytest.approx(whole[0].item(), rel=1e-9)


def test_boundary_tokens_do_not_earn_a_space_byte(tables):
    # After BOS (a boundary) a leading-space piece counts its base bytes only.
    spaced = int(torch.nonzero(tables.has_leading_space)[0])
    val = torch.tensor([1, spaced, spaced] * 30 + [1])
    model = StandInLM(VOCAB, max_len=64).eval()
    result = sliding_window_eval(model, val, tables, 30, 10, 4, SINGLE)
    base = int(tables.base_bytes[spaced])
    assert result.bytes == 30 * (base + base + 1)


def test_result_reports_time_and_budget(model, tables):
    val = random_stream(257, VOCAB, seed=6)
    result = sliding_window_eval(model, val, tables, 64, 32, 4, SINGLE)
    assert result.seconds > 0 and result.within_budget and result.method == "sliding32"
    late = sliding_window_eval(model, val, tables, 64, 32, 4, SINGLE, budget_seconds=0.0)
    assert not late.within_budget and late.to_dict()["within_budget"] is False


def test_bf16_autocast_on_cpu_runs_and_stays_close(model, tables):
    val = random_stream(257, VOCAB, seed=7)
    fp32 = sliding_window_eval(model, val, tables, 64, 32, 4, SINGLE)
    bf16 = sliding_window_eval(model, val, tables, 64, 32, 4, SINGLE, autocast="bf16")
    assert bf16.details["autocast"] and not fp32.details["autocast"]
    assert bf16.val_bpb == pytest.approx(fp32.val_bpb, rel=2e-2)


def test_cpu_defaults_run_without_autocast_or_compile(model, tables):
    result = roundtrip_eval(model, random_stream(129, VOCAB), tables, 64, 2, SINGLE)
    assert result.details["autocast"] is False and result.details["compile"] is False


def test_bad_stride_is_a_clear_error(model, tables):
    with pytest.raises(ValueError, match="eval.stride must be an integer in 1..seq_len=64, got 65"):
        sliding_window_eval(model, random_stream(300, VOCAB), tables, 64, 65, 4, SINGLE)


def test_distributed_world_without_process_group_is_a_clear_error(model, tables):
    with pytest.raises(RuntimeError, match="not initialised"):
        roundtrip_eval(model, random_stream(129, VOCAB), tables, 64, 2, DistEnv(rank=0, world_size=2))


def test_padded_last_batch_scores_the_same(model, tables):
    # With compile on, the last batch is padded to a full one (static shapes); padding must score nothing.
    # The eager loss is passed in so this runs in a second; only the batching differs.
    val = random_stream(300, VOCAB, seed=8)
    plan = plan_sliding_windows(299, 64, 16)
    assert len(plan) % 5 != 0
    plain = score_windows(model.per_token_loss, val, tables, plan, 5, EvalRuntime(torch.device("cpu")))
    padded = score_windows(model.per_token_loss, val, tables, plan, 5,
                           EvalRuntime(torch.device("cpu"), compile=True))
    assert padded[1:].tolist() == plain[1:].tolist()
    assert padded[0].item() == pytest.approx(plain[0].item(), rel=1e-9)
