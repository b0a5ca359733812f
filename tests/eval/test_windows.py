"""Window planning: every target scored exactly once, with as much context as fits."""

import pytest
import torch

from crownq.eval.windows import group_into_chunks, plan_fixed_sequences, plan_sliding_windows

# (targets, seq_len, stride): exact fits, ragged tails of several sizes, stride == seq_len, stride 1.
CASES = [(256, 64, 16), (257, 64, 16), (300, 64, 16), (319, 64, 16), (64, 64, 16), (65, 64, 64),
         (1000, 128, 48), (999, 100, 7), (50, 10, 1), (512, 128, 128), (130, 128, 128), (77, 13, 5)]


def score_counts(plan, num_targets):
    counts = torch.zeros(num_targets, dtype=torch.long)
    for start, lo in zip(plan.starts.tolist(), plan.score_lo.tolist()):
        counts[start + lo:start + plan.seq_len] += 1
    return counts


@pytest.mark.parametrize("num_targets,seq_len,stride", CASES)
def test_every_target_scored_exactly_once(num_targets, seq_len, stride):
    plan = plan_sliding_windows(num_targets, seq_len, stride)
    assert torch.equal(score_counts(plan, num_targets), torch.ones(num_targets, dtype=torch.long))
    assert int(plan.starts.min()) >= 0 and int(plan.scored_hi.max()) == num_targets


@pytest.mark.parametrize("num_targets,seq_len,stride", CASES)
def test_windows_use_all_the_context_that_fits(num_targets, seq_len, stride):
    plan = plan_sliding_windows(num_targets, seq_len, stride)
    lo = plan.scored_lo
    # Scored targets are in order, each window ends at its last scored target, and the context before
    # a window's first scored target is seq_len - (scored count), i.e. the full window.
    assert torch.all(lo[1:] == plan.scored_hi[:-1])
    assert int(plan.score_lo[0]) == 0
    scored = (plan.seq_len - plan.score_lo).tolist()
    assert scored[0] == seq_len
    assert all(n == stride for n in scored[1:-1])
    if len(plan) > 1:
        assert 0 < scored[-1] <= stride


def test_stride_equal_to_seq_len_is_the_roundtrip_plan():
    sliding = plan_sliding_windows(512, 128, 128)
    fixed = plan_fixed_sequences(512, 128)
    assert torch.equal(sliding.starts, fixed.starts) and torch.equal(sliding.score_lo, fixed.score_lo)


@pytest.mark.parametrize("seq_len,stride,match", [(64, 65, "eval.stride"), (64, 0, "eval.stride"),
                                                  (0, 1, "eval.seq_len"), (64, -3, "eval.stride")])
def test_bad_window_args_name_the_field(seq_len, stride, match):
    with pytest.raises(ValueError, match=match):
        plan_sliding_windows(1000, seq_len, stride)


def test_split_shorter_than_one_window_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one sequence of eval.seq_len=64"):
        plan_sliding_windows(63, 64, 16)


def test_roundtrip_needs_whole_sequences():
    with pytest.raises(ValueError, match="not a multiple of eval.seq_len=64"):
        plan_fixed_sequences(130, 64)


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_rank_shards_partition_the_plan(world_size):
    plan = plan_sliding_windows(999, 100, 7)
    shards = [plan.shard(r, world_size) for r in range(world_size)]
    assert torch.equal(torch.cat([s.starts for s in shards]), plan.starts)
    assert torch.equal(torch.cat([s.score_lo for s in shards]), plan.score_lo)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("chunk_tokens", [64, 100, 333, 10_000])
def test_chunks_are_contiguous_and_never_split_a_window(chunk_tokens):
    plan = plan_sliding_windows(999, 100, 7)
    chunks = group_into_chunks(plan, chunk_tokens)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(plan)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for w_lo, w_hi in chunks:
        ids = torch.div(plan.scored_lo[w_lo:w_hi], chunk_tokens, rounding_mode="floor")
        assert torch.all(ids == ids[0])
    if chunk_tokens >= 999:
        assert len(chunks) == 1
