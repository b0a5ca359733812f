"""Embedded corpus: valid shards and tokenizer, byte-identical rebuilds, caching, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sentencepiece as spm
from datalayer_helpers import SMALL_OPTIONS

from crownq.data import cli, corpus
from crownq.data.embedded import EmbeddedOptions, build_embedded, build_key, default_output_dir
from crownq.data.shards import read_shard


def _check_build(folder, options: EmbeddedOptions) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    processor = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert processor.get_piece_size() == options.vocab_size == meta["tokenizer_vocab_size"]
    assert processor.bos_id() == 1 and processor.eos_id() == 2 and processor.unk_id() == 3
    assert sum(processor.is_byte(i) for i in range(options.vocab_size)) == 256  # byte_fallback on
    names = sorted(p.name for p in folder.glob("*.bin"))
    assert names == sorted(meta["shards"])
    assert any(n.startswith("train_") for n in names) and any(n.startswith("val_") for n in names)
    bos = {"train": 0, "val": 0}
    for name in names:
        tokens = read_shard(folder / name, vocab_size=options.vocab_size)  # header, size and ids checked
        assert len(tokens) == meta["shards"][name] <= options.shard_tokens
        bos[name.split("_")[0]] += int((tokens == 1).sum())
        assert not (tokens == 2).any()  # no EOS
    # One BOS per document, and each split starts with one.
    assert bos == meta["documents"]
    assert read_shard(folder / "train_000000.bin")[0] == 1 and read_shard(folder / "val_000000.bin")[0] == 1
    return meta


def test_small_build_is_valid(small_build):
    meta = _check_build(small_build, SMALL_OPTIONS)
    assert sum(meta["text_bytes"].values()) >= SMALL_OPTIONS.min_corpus_bytes
    assert len([n for n in meta["shards"] if n.startswith("train_")]) > 1  # the stream crosses files


def test_rebuild_is_byte_identical(small_build, tmp_path):
    again = build_embedded(SMALL_OPTIONS, out_dir=tmp_path / "again", progress=False)
    first = sorted(p.name for p in small_build.iterdir())
    assert first == sorted(p.name for p in again.iterdir())
    for name in first:
        assert (small_build / name).read_bytes() == (again / name).read_bytes(), name


def test_validation_documents_are_held_out_whole():
    documents = corpus.gather_documents(SMALL_OPTIONS.min_corpus_bytes)
    assert documents == corpus.gather_documents(SMALL_OPTIONS.min_corpus_bytes)  # deterministic
    assert len({d.text for d in documents}) == len(documents)  # deduplicated
    from crownq.data.embedded import split_documents

    train, val = split_documents(documents, 0.1)
    assert val and train and not {d.doc_id for d in train} & {d.doc_id for d in val}
    assert len(train) + len(val) == len(documents)


def test_cache_folder_is_keyed_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWNQ_DATA_DIR", str(tmp_path / "cache"))
    folder = build_embedded(SMALL_OPTIONS, progress=False)
    assert folder == default_output_dir(SMALL_OPTIONS, build_key(SMALL_OPTIONS))
    assert folder.parent == tmp_path / "cache" / "embedded"
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert build_embedded(SMALL_OPTIONS, progress=False) == folder  # cached: nothing rewritten
    assert stamp == {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    other = EmbeddedOptions(**{**SMALL_OPTIONS.__dict__, "vocab_size": 400})
    assert build_key(other) != build_key(SMALL_OPTIONS)
    (folder / "val_000000.bin").write_bytes(b"broken")  # a damaged cache is rebuilt, not used
    assert build_embedded(SMALL_OPTIONS, progress=False) == folder
    assert len(read_shard(folder / "val_000000.bin")) > 0
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an embedded-dataset folder"):
        build_embedded(SMALL_OPTIONS, out_dir=foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "precious"


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="vocab_size must lie in \\[300, 65536\\].*got 100"):
        build_embedded(EmbeddedOptions(vocab_size=100), progress=False)
    with pytest.raises(ValueError, match="val_fraction must lie in \\(0, 1\\), got 1.5"):
        build_embedded(EmbeddedOptions(val_fraction=1.5), progress=False)


def test_cli_builds_into_out_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "embedded",
        "--vocab-size",
        "512",
        "--min-bytes",
        "150000",
        "--shard-tokens",
        "20000",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _check_build(out, SMALL_OPTIONS)
    assert cli.main(["embedded", "--vocab-size", "50", "--out", str(out)]) == 1
    assert "vocab_size must lie in" in capsys.readouterr().err


def test_default_build_has_real_size(default_build):
    """The default `crownq-data embedded`: >= 2 MB of text, vocab 1024, several train shards."""
    meta = _check_build(default_build, EmbeddedOptions())
    assert sum(meta["text_bytes"].values()) >= 2_000_000
    assert meta["documents"]["val"] >= 10
    assert len([n for n in meta["shards"] if n.startswith("train_")]) >= 2
    assert os.stat(default_build / "tokenizer.model").st_size > 0
    tokens = np.asarray(read_shard(default_build / "train_000000.bin"))
    assert len(np.unique(tokens)) > 700  # most of the 764 merged pieces are actually used


@pytest.mark.slow
def test_default_rebuild_is_byte_identical(default_build, tmp_path):
    again = build_embedded(EmbeddedOptions(), out_dir=tmp_path / "again", progress=False)
    names = sorted(p.name for p in default_build.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (default_build / name).read_bytes() == (again / name).read_bytes(), name
