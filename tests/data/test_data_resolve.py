"""prepare_data: the embedded and files sources, conf/data options, and each missing/mismatch error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from datalayer_helpers import SMALL_OPTIONS
from omegaconf import OmegaConf

from crownq.config.data import DataConfig
from crownq.data.resolve import DataPaths, prepare_data
from crownq.data.shards import ShardError, write_shard

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"


def _small_embedded_cfg(root: Path) -> DataConfig:
    return DataConfig(
        source="embedded",
        root=str(root),
        vocab_size=SMALL_OPTIONS.vocab_size,
        min_corpus_bytes=SMALL_OPTIONS.min_corpus_bytes,
        val_fraction=SMALL_OPTIONS.val_fraction,
        shard_tokens=SMALL_OPTIONS.shard_tokens,
    )


def _files_cfg(root: Path, vocab_size: int = 512) -> DataConfig:
    return DataConfig(
        source="files",
        name="copy",
        root=str(root),
        vocab_size=vocab_size,
        create_command="crownq-data fineweb --variant sp1024 --train-shards 2",
    )


@pytest.fixture()
def copied(small_build, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(small_build, root)
    return root


def test_embedded_source_builds_into_root(small_build, tmp_path):
    root = tmp_path / "embedded"
    shutil.copytree(small_build, root)  # same key: reused, not rebuilt
    paths = prepare_data(_small_embedded_cfg(root), progress=False)
    assert isinstance(paths, DataPaths) and paths.vocab_size == 512
    assert paths.tokenizer_path == root / "tokenizer.model"
    assert [p.name for p in paths.train_files] == sorted(p.name for p in root.glob("train_*.bin"))
    assert len(paths.train_files) > 1 and [p.name for p in paths.val_files] == ["val_000000.bin"]


def test_files_source(copied):
    paths = prepare_data(_files_cfg(copied))
    assert paths.train_files == sorted(copied.glob("train_*.bin"))


def test_missing_root_names_the_create_command(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"data folder .*nowhere.* does not exist; create it with: "
        r"crownq-data fineweb --variant sp1024 --train-shards 2",
    ):
        prepare_data(_files_cfg(tmp_path / "nowhere"))


def test_missing_tokenizer(copied):
    (copied / "tokenizer.model").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"tokenizer .*tokenizer.model \(data.tokenizer\) does not exist; "
        r"create it with: crownq-data fineweb",
    ):
        prepare_data(_files_cfg(copied))


def test_empty_validation_split(copied):
    (copied / "val_000000.bin").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"the validation split is empty: no file matches .*val_\*\.bin "
        r"\(data.val_pattern\); create it with: crownq-data fineweb",
    ):
        prepare_data(_files_cfg(copied))
    write_shard(copied / "val_000000.bin", [])
    with pytest.raises(
        ValueError, match=r"the validation split is empty: the 1 shard\(s\) in .* hold 0 tokens"
    ):
        prepare_data(_files_cfg(copied))


def test_empty_train_split(copied):
    for path in copied.glob("train_*.bin"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"the train split is empty: .*\(data.train_pattern\)"):
        prepare_data(_files_cfg(copied))


def test_vocab_size_differs_from_config(copied):
    with pytest.raises(
        ValueError,
        match=r"tokenizer .*tokenizer.model has vocab size 512 but data.vocab_size "
        r"is 1024: they must be equal",
    ):
        prepare_data(_files_cfg(copied, vocab_size=1024))


def test_shard_with_ids_beyond_vocab(copied):
    write_shard(copied / "val_000000.bin", [1, 5, 700])
    with pytest.raises(
        ShardError,
        match=r"val_000000.bin: token id 700 is out of range: expected ids < "
        r"vocab_size 512",
    ):
        prepare_data(_files_cfg(copied))


def test_unknown_source():
    with pytest.raises(ValueError, match="data.source must be 'embedded' or 'files', got 'ftp'"):
        prepare_data(DataConfig(source="ftp"))


@pytest.mark.parametrize("option", ["embedded", "fineweb_sp1024"])
def test_conf_options_match_the_schema(option, monkeypatch, tmp_path):
    monkeypatch.setenv("CROWNQ_FINEWEB_DIR", str(tmp_path / "fw"))
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DIR / f"{option}.yaml"))
    data_cfg: DataConfig = OmegaConf.to_object(cfg)  # a misspelt key or wrong type fails here
    assert data_cfg.vocab_size == 1024
    if option == "fineweb_sp1024":
        assert (data_cfg.source, data_cfg.root) == ("files", str(tmp_path / "fw"))
        assert (data_cfg.train_pattern, data_cfg.val_pattern) == ("fineweb_train_*.bin", "fineweb_val_*.bin")
        assert data_cfg.tokenizer == "fineweb_1024_bpe.model"
        with pytest.raises(
            FileNotFoundError,
            match=r"create it with: crownq-data fineweb --variant sp1024 "
            r"--train-shards 80 --out " + str(tmp_path / "fw"),
        ):
            prepare_data(data_cfg)
    else:
        assert data_cfg == DataConfig()  # the yaml spells out the schema defaults
