"""Shard format: round trip, and every malformed case fails with a message naming file, expected, found."""

from __future__ import annotations

import re

import numpy as np
import pytest
from datalayer_helpers import raw_shard

from crownq.data.shards import HEADER_BYTES, ShardError, read_shard, read_shard_header, write_shard


def test_round_trip_is_memory_mapped_and_matches_official_layout(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 1024, size=5000).astype(np.uint16)
    path = write_shard(tmp_path / "train_000000.bin", tokens)
    raw = path.read_bytes()
    assert len(raw) == HEADER_BYTES + 2 * len(tokens)
    header = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert list(header[:3]) == [20240520, 1, 5000] and not header[3:].any()
    assert np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").tolist() == tokens.tolist()
    loaded = read_shard(path, vocab_size=1024)
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(loaded, tokens)
    assert read_shard_header(path) == 5000
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_empty_shard_is_valid(tmp_path):
    path = write_shard(tmp_path / "empty.bin", np.zeros(0, dtype=np.uint16))
    assert len(read_shard(path, vocab_size=10)) == 0


def _error(path, vocab_size=None) -> str:
    with pytest.raises(ShardError) as info:
        read_shard(path, vocab_size)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_truncated_header(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\x00" * 100)
    assert "truncated: expected at least a 1024-byte header, found 100 bytes" in _error(path)


def test_truncated_tokens(tmp_path):
    path = raw_shard(tmp_path / "cut.bin", np.arange(100))
    path.write_bytes(path.read_bytes()[:-10])
    message = _error(path)
    assert "truncated" in message and "header says 100 tokens" in message
    assert "expected 1224 bytes" in message and "found 1214 bytes" in message


def test_wrong_magic(tmp_path):
    message = _error(raw_shard(tmp_path / "magic.bin", np.arange(10), magic=12345))
    assert "bad magic number: expected 20240520, found 12345" in message


def test_wrong_version(tmp_path):
    message = _error(raw_shard(tmp_path / "version.bin", np.arange(10), version=2))
    assert "unsupported version: expected 1, found 2" in message


def test_count_does_not_match_size(tmp_path):
    # Header claims fewer tokens than the file holds (trailing bytes).
    message = _error(raw_shard(tmp_path / "long.bin", np.arange(10), count=8))
    assert "size does not match token count" in message
    assert "header says 8 tokens, so expected 1040 bytes" in message and "found 1044 bytes" in message


def test_token_id_out_of_vocab(tmp_path):
    tokens = np.arange(20) % 7
    tokens[13] = 1030
    message = _error(raw_shard(tmp_path / "vocab.bin", tokens), vocab_size=1024)
    assert re.search(r"token id 1030 is out of range: expected ids < vocab_size 1024", message)
    assert "at token 13" in message
    read_shard(tmp_path / "vocab.bin", vocab_size=1031)  # the same file passes a large enough vocab


def test_missing_file(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.bin")


def test_vocab_check_matches_python_reference_on_random_shards(tmp_path):
    rng = np.random.default_rng(1)
    for trial in range(20):
        tokens = rng.integers(0, 600, size=int(rng.integers(1, 300)))
        vocab = int(rng.integers(300, 700))
        path = raw_shard(tmp_path / f"r{trial}.bin", tokens)
        expected_ok = all(int(t) < vocab for t in tokens)
        if expected_ok:
            read_shard(path, vocab)
        else:
            with pytest.raises(ShardError):
                read_shard(path, vocab)


def test_write_rejects_bad_tokens_and_keeps_existing_file(tmp_path):
    path = write_shard(tmp_path / "keep.bin", np.arange(10))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"keep.bin.*\[0, 65535\].*found range \[-1, 9\]"):
        write_shard(path, np.arange(-1, 10))
    with pytest.raises(ValueError, match="1-D"):
        write_shard(path, np.zeros((2, 2), dtype=np.int64))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]
