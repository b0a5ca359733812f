"""Token stream, distributed loader (rank slices vs accumulation, resume) and validation trimming."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from crownq.data.loader import DistributedTokenLoader, TokenStream, load_validation_tokens
from crownq.data.shards import ShardError, write_shard

# Token value = position in the stream (mod 65536), so every batch says where it came from.
SHARD_SIZES = (1000, 1, 2500, 700)


@pytest.fixture()
def shards(tmp_path):
    files, start = [], 0
    for index, size in enumerate(SHARD_SIZES):
        files.append(write_shard(tmp_path / f"train_{index:06d}.bin", np.arange(start, start + size)))
        start += size
    return files


def _reference_stream(length: int) -> np.ndarray:
    total = sum(SHARD_SIZES)
    return np.arange(length) % total


def test_stream_reads_sorted_shards_and_wraps_around(shards):
    stream = TokenStream(list(reversed(shards)))  # order given must not matter
    pieces = [stream.take(n) for n in (3, 999, 1, 1, 2000, 4000, 777)]
    np.testing.assert_array_equal(np.concatenate(pieces), _reference_stream(sum(len(p) for p in pieces)))
    assert stream.epoch == 1


def _all_pieces(world_size, grad_accum, steps, files, global_tokens, seq_len):
    """For each step, the (x, y) of every (rank, micro-step) in piece order m * W + r."""
    loaders = [DistributedTokenLoader(files, rank, world_size) for rank in range(world_size)]
    out = []
    for _ in range(steps):
        step = {}
        for micro in range(grad_accum):
            for rank, loader in enumerate(loaders):
                step[micro * world_size + rank] = loader.next_batch(global_tokens, seq_len, grad_accum)
        out.append([step[i] for i in sorted(step)])
    return out


@pytest.mark.parametrize("world_size,grad_accum", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (1, 4)])
def test_pieces_tile_each_global_chunk_exactly(shards, world_size, grad_accum):
    global_tokens, seq_len, steps = 512, 32, 9  # 9 steps cross every shard boundary and wrap around
    reference = _reference_stream(steps * (global_tokens + 1))
    for step, pieces in enumerate(_all_pieces(world_size, grad_accum, steps, shards, global_tokens, seq_len)):
        chunk = reference[step * (global_tokens + 1) : (step + 1) * (global_tokens + 1)]
        xs = torch.cat([x.reshape(-1) for x, _ in pieces]).numpy()
        ys = torch.cat([y.reshape(-1) for _, y in pieces]).numpy()
        np.testing.assert_array_equal(xs, chunk[:-1])
        np.testing.assert_array_equal(ys, chunk[1:])
        for x, y in pieces:
            assert x.dtype == torch.long and x.shape == (
                global_tokens // (world_size * grad_accum) // seq_len,
                seq_len,
            )
            np.testing.assert_array_equal(y.reshape(-1)[:-1].numpy(), x.reshape(-1)[1:].numpy())


def test_two_ranks_see_what_one_rank_with_accumulation_sees(shards):
    ranks = _all_pieces(2, 1, 5, shards, 256, 16)
    accumulation = _all_pieces(1, 2, 5, shards, 256, 16)
    for step_ranks, step_accum in zip(ranks, accumulation):
        for (x_r, y_r), (x_a, y_a) in zip(step_ranks, step_accum):
            assert torch.equal(x_r, x_a) and torch.equal(y_r, y_a)
        # ranks get disjoint target positions
        assert not set(step_ranks[0][1].flatten().tolist()) & set(step_ranks[1][1].flatten().tolist())


def test_deterministic(shards):
    first = _all_pieces(2, 2, 4, shards, 256, 16)
    second = _all_pieces(2, 2, 4, shards, 256, 16)
    for a, b in zip(first, second):
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("stop_after_micro_steps", [6, 7])  # at a step boundary and mid-step
def test_resume_from_state_dict_continues_identically(shards, stop_after_micro_steps):
    args = (512, 32, 2)
    uninterrupted = DistributedTokenLoader(shards, 1, 2)
    expected = [uninterrupted.next_batch(*args) for _ in range(stop_after_micro_steps + 8)]
    loader = DistributedTokenLoader(shards, 1, 2)
    for _ in range(stop_after_micro_steps):
        loader.next_batch(*args)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain ints/strings only
    resumed = DistributedTokenLoader(shards, 1, 2)
    resumed.load_state_dict(state)
    for want in expected[stop_after_micro_steps:]:
        got = resumed.next_batch(*args)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_resume_on_other_files_is_refused(shards):
    state = DistributedTokenLoader(shards, 0, 1).state_dict()
    with pytest.raises(ValueError, match="other shard files"):
        DistributedTokenLoader(shards[:2], 0, 1).load_state_dict(state)


def test_indivisible_batch_is_a_clear_error(shards):
    loader = DistributedTokenLoader(shards, 0, 2)
    with pytest.raises(
        ValueError,
        match=r"global_batch_tokens=500 must be divisible by "
        r"world_size\*grad_accum_steps\*seq_len = 2\*2\*32 = 128",
    ):
        loader.next_batch(500, 32, 2)


def test_bad_rank_and_empty_split(shards, tmp_path):
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\), got 2"):
        DistributedTokenLoader(shards, 2, 2)
    with pytest.raises(ValueError, match="no shard files given"):
        DistributedTokenLoader([], 0, 1)
    empty = write_shard(tmp_path / "empty" / "train_000000.bin", [])
    with pytest.raises(ValueError, match="hold 0 tokens"):
        DistributedTokenLoader([empty], 0, 1)


def test_loader_checks_token_ids_when_given_vocab(shards):
    loader = DistributedTokenLoader(shards, 0, 1, vocab_size=1500)
    loader.next_batch(512, 32, 1)  # the first shard holds ids < 1000
    with pytest.raises(ShardError, match="out of range: expected ids < vocab_size 1500"):
        for _ in range(10):
            loader.next_batch(512, 32, 1)


@pytest.mark.parametrize("seq_len", [1, 7, 64, 1000, 4200])
def test_validation_tokens_are_trimmed_to_whole_sequences(shards, seq_len):
    tokens = load_validation_tokens(list(reversed(shards)), seq_len)
    total = sum(SHARD_SIZES)
    expected_length = ((total - 1) // seq_len) * seq_len + 1
    assert tokens.dtype == torch.long and len(tokens) == expected_length
    np.testing.assert_array_equal(tokens.numpy(), np.arange(expected_length))


def test_validation_errors(shards, tmp_path):
    with pytest.raises(ValueError, match="holds 4201 tokens: expected at least seq_len \\+ 1 = 4202"):
        load_validation_tokens(shards, 4201)
    with pytest.raises(ValueError, match="no shard files given \\(the split is empty\\)"):
        load_validation_tokens([], 64)
    empty = write_shard(tmp_path / "val_000000.bin", [])
    with pytest.raises(ValueError, match="holds 0 tokens"):
        load_validation_tokens([empty], 64)
    with pytest.raises(ShardError, match="expected ids < vocab_size 1024"):
        load_validation_tokens(shards, 64, vocab_size=1024)
