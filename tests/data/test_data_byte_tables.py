"""Byte tables and bpb: vs a per-token reference, vs decoded text, and on the published tokenizer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sentencepiece as spm
import torch
from datalayer_helpers import SHARED_TOKENIZER

from crownq.data.byte_tables import bits_per_byte, byte_tables_from_sentencepiece, target_byte_counts
from crownq.data.shards import read_shard


def _reference_bytes(processor: spm.SentencePieceProcessor, prev: int, target: int) -> int:
    """The accounting rules written out one token at a time."""
    if target >= processor.get_piece_size():
        return 0
    if processor.is_control(target) or processor.is_unknown(target) or processor.is_unused(target):
        return 0
    if processor.is_byte(target):
        return 1
    piece = processor.id_to_piece(target)
    count = len(piece.removeprefix("\u2581").encode("utf-8"))
    prev_is_boundary = (
        prev >= processor.get_piece_size()
        or processor.is_control(prev)
        or processor.is_unknown(prev)
        or processor.is_unused(prev)
    )
    if piece.startswith("\u2581") and not prev_is_boundary:
        count += 1
    return count


def _check_against_reference(model_path, vocab_size):
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    tables = byte_tables_from_sentencepiece(model_path, vocab_size)
    rng = np.random.default_rng(0)
    prev = torch.from_numpy(rng.integers(0, vocab_size, size=(4, 500)))
    target = torch.from_numpy(rng.integers(0, vocab_size, size=(4, 500)))
    fast = target_byte_counts(prev, target, tables)
    assert fast.shape == target.shape and fast.dtype == torch.long
    slow = [
        [_reference_bytes(processor, int(p), int(t)) for p, t in zip(pr, tr)] for pr, tr in zip(prev, target)
    ]
    assert fast.tolist() == slow


def _scored_bytes(processor, tables, ids: list[int]) -> int:
    stream = torch.tensor([1, *ids])  # BOS before the document, as in the shards
    return int(target_byte_counts(stream[:-1], stream[1:], tables).sum())


def test_tables_match_per_token_reference_on_random_ids(small_build):
    _check_against_reference(small_build / "tokenizer.model", 512)
    _check_against_reference(small_build / "tokenizer.model", 600)  # padded ids are boundaries


def test_byte_count_equals_decoded_utf8_length_on_real_text(small_build):
    processor = spm.SentencePieceProcessor(model_file=str(small_build / "tokenizer.model"))
    tables = byte_tables_from_sentencepiece(small_build / "tokenizer.model", 512)
    # Real documents: the held-out validation split, cut at its BOS tokens.
    val = np.asarray(read_shard(small_build / "val_000000.bin")).astype(np.int64)
    starts = np.flatnonzero(val == 1).tolist() + [len(val)]
    documents = [val[a + 1 : b].tolist() for a, b in zip(starts[:-1], starts[1:])]
    assert len(documents) == json.loads((small_build / "meta.json").read_text())["documents"]["val"]
    extra = "Unicode text: naïve café — 日本語 ✓ «quotes» 12345 ümlaut\ttab"  # forces byte-fallback pieces
    documents.append(processor.encode(extra))
    byte_pieces = 0
    for ids in documents:
        byte_pieces += sum(processor.is_byte(i) for i in ids)
        assert _scored_bytes(processor, tables, ids) == len(processor.decode(ids).encode("utf-8"))
    assert byte_pieces > 20  # the check did cover byte-fallback tokens


def test_bits_per_byte():
    assert bits_per_byte(100 * math.log(2), 100) == pytest.approx(1.0)
    assert bits_per_byte(torch.tensor(3.0), 4) == pytest.approx(3.0 / math.log(2) / 4)
    with pytest.raises(ValueError, match="byte_count must be > 0, got 0"):
        bits_per_byte(1.0, 0)
    with pytest.raises(ValueError, match="must be finite"):
        bits_per_byte(float("nan"), 10)


def test_too_small_vocab_is_refused(small_build):
    with pytest.raises(ValueError, match="has 512 pieces but vocab_size is 100"):
        byte_tables_from_sentencepiece(small_build / "tokenizer.model", 100)


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_TOKENIZER.exists(), reason="../shared/data/fineweb_1024_bpe.model is absent")
def test_published_sp1024_tokenizer():
    tables = byte_tables_from_sentencepiece(SHARED_TOKENIZER, 1024)
    processor = spm.SentencePieceProcessor(model_file=str(SHARED_TOKENIZER))
    assert processor.id_to_piece(940) == "\u2581"
    assert tables.base_bytes[940] == 0 and tables.has_leading_space[940] and not tables.is_boundary[940]
    assert tables.is_boundary[:4].all() and not tables.is_boundary[4:].any()  # pad, bos, eos, unk
    assert not any(processor.is_byte(i) for i in range(1024))  # no byte-fallback pieces
    _check_against_reference(SHARED_TOKENIZER, 1024)
    # Text inside its vocabulary: counted bytes == the decoded (nmt_nfkc-normalised) text.
    text = "The quick brown fox jumps over the lazy dog. In 2024, 17 people met at noon."
    ids = processor.encode(text)
    assert 3 not in ids
    assert _scored_bytes(processor, tables, ids) == len(processor.decode(ids).encode("utf-8"))
    # A character outside it becomes <unk> (id 3), worth 0 bytes, and the next word's space is not counted.
    ids = processor.encode("snow \u2603 falls")
    assert 3 in ids
    # "snow" + lone U+2581 (1) + <unk> (0) + "falls" (its space follows a boundary): "snow falls".
    assert _scored_bytes(processor, tables, ids) == len(b"snow falls")
