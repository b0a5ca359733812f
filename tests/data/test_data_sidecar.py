"""The CaseOps embedded build and its byte sidecar: layout, per-token counts, loading, and bpb charged
on the original text's bytes through the evaluation's scoring loop."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import sentencepiece as spm
import torch

from crownq.data import caseops
from crownq.data.byte_tables import target_byte_counts
from crownq.data.embedded import BOS_ID, TOKENIZER_FILE
from crownq.data.shards import ShardError, read_shard, write_shard
from crownq.data.sidecar import (
    PieceTable,
    is_caseops_tokenizer,
    load_byte_tables,
    load_sidecar,
    sidecar_name,
    stream_byte_counts,
    write_sidecar,
)
from crownq.eval.scoring import EvalRuntime, score_windows
from crownq.eval.windows import plan_sliding_windows

# Single spaces, no newlines: text the tokenizer's normaliser (nmt_nfkc) leaves as it is, so the
# tokens spell exactly the transformed text and the sidecar must sum to the original's bytes.
PLAIN_TEXTS = ["The NASA Launch", "iPhone OpenAI", f"An {caseops.ESC}escaped {caseops.TITLE} Operator, café"]


def _processor(folder):
    return spm.SentencePieceProcessor(model_proto=(folder / TOKENIZER_FILE).read_bytes())


def _documents(stream: np.ndarray) -> list[np.ndarray]:
    starts = np.flatnonzero(stream == BOS_ID).tolist() + [len(stream)]
    return [stream[a:b] for a, b in zip(starts[:-1], starts[1:])]


def test_sidecar_name():
    assert sidecar_name("fineweb_val_000000.bin") == "fineweb_val_bytes_000000.bin"
    assert sidecar_name("val_000003.bin") == "val_bytes_000003.bin"
    with pytest.raises(ValueError, match="not a validation shard name"):
        sidecar_name("train_000000.bin")


def test_caseops_build_layout(small_caseops_build):
    processor = _processor(small_caseops_build)
    # The operators are reserved right after pad/bos/eos/unk, as in the published CaseOps tokenizer.
    assert [processor.id_to_piece(i) for i in range(4, 8)] == list(caseops.OPERATORS)
    assert is_caseops_tokenizer(processor)
    meta = json.loads((small_caseops_build / "meta.json").read_text())
    val_shards = sorted(n for n in meta["shards"] if n.startswith("val_") and "bytes" not in n)
    for name in val_shards:
        tokens = read_shard(small_caseops_build / name)
        counts = read_shard(small_caseops_build / sidecar_name(name))
        assert len(tokens) == len(counts) == meta["shards"][sidecar_name(name)]
    assert not any("bytes" in n for n in meta["shards"] if n.startswith("train_"))
    stream = np.concatenate([read_shard(small_caseops_build / n) for n in val_shards])
    assert stream[0] == BOS_ID and len(_documents(stream)) == meta["documents"]["val"]


def test_sidecar_counts_the_original_bytes_of_every_document(small_caseops_build):
    processor = _processor(small_caseops_build)
    names = sorted(p.name for p in small_caseops_build.glob("val_0*.bin"))
    stream = np.concatenate([read_shard(small_caseops_build / n) for n in names]).astype(np.int64)
    counts = np.concatenate([read_shard(small_caseops_build / sidecar_name(n)) for n in names])
    counts = counts.astype(np.int64)
    operators = np.isin(stream, [processor.piece_to_id(op) for op in caseops.OPERATORS])
    assert operators.sum() > 5 and counts[operators].sum() == 0 and counts[stream == BOS_ID].sum() == 0
    start = 0
    for document in _documents(stream):
        # The bytes of the text the tokens spell, with the case operators applied (decoded).
        spelled = caseops.decode(processor.decode(document[1:].tolist()))
        assert counts[start : start + len(document)].sum() == len(spelled.encode("utf-8"))
        start += len(document)


def test_sidecar_of_the_worked_examples(small_caseops_build):
    processor = _processor(small_caseops_build)
    table = PieceTable.from_processor(processor)
    for text in PLAIN_TEXTS:
        ids = processor.encode(caseops.encode(text))
        assert caseops.decode(processor.decode(ids)) == text  # no normalisation on these texts
        counts = stream_byte_counts(np.array([BOS_ID, *ids]), table)
        assert counts.sum() == len(text.encode("utf-8"))
        pieces = [processor.id_to_piece(i) for i in ids]
        for previous, piece, count in zip(["<s>", *pieces], pieces, counts[1:].tolist()):
            if piece in caseops.OPERATORS:  # an operator is free unless it is an escaped literal
                assert count == (3 if previous == caseops.ESC else 0)
    # The escaped literal TITLE is charged its 3 bytes, the ESC before it nothing.
    ids = processor.encode(caseops.encode(f"x{caseops.TITLE}"))
    assert stream_byte_counts(np.array(ids), table).tolist()[-2:] == [0, 3]


def _sidecar_folder(tmp_path, small_caseops_build, texts):
    """A validation shard of `texts` (CaseOps, BOS before each) with its sidecar and the tokenizer."""
    processor = _processor(small_caseops_build)
    stream = np.array([t for text in texts for t in [BOS_ID, *processor.encode(caseops.encode(text))]])
    shutil.copy(small_caseops_build / TOKENIZER_FILE, tmp_path / TOKENIZER_FILE)
    write_shard(tmp_path / "val_000000.bin", stream)
    counts = stream_byte_counts(stream, PieceTable.from_processor(processor))
    write_sidecar(tmp_path / "val_bytes_000000.bin", counts)
    return stream


def test_bpb_on_caseops_text_equals_bpb_on_the_original_bytes(tmp_path, small_caseops_build):
    stream = _sidecar_folder(tmp_path, small_caseops_build, PLAIN_TEXTS * 3)
    tables = load_byte_tables(tmp_path / TOKENIZER_FILE, 512, [tmp_path / "val_000000.bin"],
                              [tmp_path / "val_bytes_000000.bin"], len(stream))
    # Any per-token losses will do: a fixed random loss per (previous, target) pair.
    pair_loss = torch.rand(512, 512, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    val_tokens = torch.from_numpy(stream.astype(np.int64))
    plan = plan_sliding_windows(len(stream) - 1, seq_len=16, stride=5)  # overlapping windows
    sums = score_windows(lambda x, y: pair_loss[x, y], val_tokens, tables, plan, batch_seqs=3,
                         runtime=EvalRuntime(torch.device("cpu")))
    loss_sum, tokens, nbytes = sums.tolist()
    original_bytes = sum(len(t.encode("utf-8")) for t in PLAIN_TEXTS * 3)
    expected_loss = float(pair_loss[val_tokens[:-1], val_tokens[1:]].sum())
    assert tokens == len(stream) - 1 and nbytes == original_bytes
    bpb_on_original = expected_loss / math.log(2) / original_bytes
    assert loss_sum / math.log(2) / nbytes == pytest.approx(bpb_on_original, rel=1e-12)
    # The token rule alone would charge the transformed text (a different number of bytes).
    token_rule = target_byte_counts(val_tokens[:-1], val_tokens[1:], tables.without_sidecar())
    transformed = sum(len(caseops.encode(t).encode("utf-8")) for t in PLAIN_TEXTS * 3)
    assert int(token_rule.sum()) != original_bytes and transformed != original_bytes
    with pytest.raises(ValueError, match="byte sidecar .* stream positions are needed"):
        target_byte_counts(val_tokens[:-1], val_tokens[1:], tables)


def test_caseops_data_without_sidecar_is_refused(tmp_path, small_caseops_build):
    stream = _sidecar_folder(tmp_path, small_caseops_build, PLAIN_TEXTS)
    with pytest.raises(ValueError, match="CaseOps tokenizer but the validation split .* has no byte sidecar"):
        load_byte_tables(tmp_path / TOKENIZER_FILE, 512, [tmp_path / "val_000000.bin"], [], len(stream))


def test_plain_tokenizer_without_sidecar_uses_the_token_rule(small_build):
    val_files = sorted(small_build.glob("val_*.bin"))
    tables = load_byte_tables(small_build / TOKENIZER_FILE, 512, val_files, [], 10)
    assert tables.sidecar is None


def test_load_sidecar_errors(tmp_path):
    val = write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(10))
    with pytest.raises(ShardError, match=r"has no byte sidecar: expected .*fineweb_val_bytes_000000\.bin"):
        load_sidecar([], [val])
    short = write_sidecar(tmp_path / "fineweb_val_bytes_000000.bin", np.ones(9))
    with pytest.raises(ShardError, match=r"9 entries, expected one per token of .* \(10\)"):
        load_sidecar([short], [val])
    stray = write_sidecar(tmp_path / "fineweb_val_bytes_000001.bin", np.ones(10))
    with pytest.raises(ShardError, match="belong to no validation shard"):
        load_sidecar([short, stray], [val])
    good = write_sidecar(tmp_path / "fineweb_val_bytes_000000.bin", np.arange(10) % 4)
    assert load_sidecar([good], [val]).tolist() == (np.arange(10) % 4).tolist()
    with pytest.raises(ValueError, match="over uint16"):
        write_sidecar(tmp_path / "x_val_bytes_000000.bin", np.array([70_000]))


def test_cli_embedded_vocab_and_caseops(monkeypatch, tmp_path, capsys):
    from crownq.data import cli

    built = []

    def build(options, out_dir, force):
        built.append(options)
        return tmp_path

    monkeypatch.setattr(cli, "build_embedded", build)
    assert cli.main(["embedded", "--vocab", "4096", "--caseops"]) == 0
    assert cli.main(["embedded", "--vocab-size", "2048"]) == 0
    assert [(o.vocab_size, o.caseops) for o in built] == [(4096, True), (2048, False)]
    assert capsys.readouterr().out.split() == [str(tmp_path)] * 2


def test_sidecar_total_equals_the_token_rule_on_the_plain_build(small_build, small_caseops_build):
    # Same documents, same normaliser: CaseOps changes the tokens, never the bytes charged for them.
    def charged(folder):
        val_files = sorted(folder.glob("val_0*.bin"))
        stream = torch.from_numpy(np.concatenate([read_shard(p) for p in val_files]).astype(np.int64))
        sidecars = sorted(folder.glob("val_bytes_*.bin"))
        tables = load_byte_tables(folder / TOKENIZER_FILE, 512, val_files, sidecars, len(stream))
        counts = target_byte_counts(stream[:-1], stream[1:], tables, torch.arange(1, len(stream)))
        return int(counts.sum()), tables.sidecar is None

    plain, caseops_ = charged(small_build), charged(small_caseops_build)
    assert plain[1] and not caseops_[1]  # the token rule there, the sidecar here
    assert plain[0] == caseops_[0] > 1000
