"""prepare_data on CaseOps data: sidecars kept out of the token split, required when data.caseops, and
the new conf/data options composing to the schema with the right names and vocabularies."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from datalayer_helpers import SMALL_OPTIONS
from omegaconf import OmegaConf

from crownq.config.data import DataConfig
from crownq.data.resolve import prepare_data
from crownq.data.sidecar import load_byte_tables

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"


def _caseops_cfg(root: Path, **changes) -> DataConfig:
    options = replace(SMALL_OPTIONS, caseops=True)
    cfg = DataConfig(source="embedded", root=str(root), vocab_size=options.vocab_size,
                     min_corpus_bytes=options.min_corpus_bytes, val_fraction=options.val_fraction,
                     shard_tokens=options.shard_tokens, caseops=True)
    return replace(cfg, **changes)


def test_sidecars_are_not_token_shards(small_caseops_build, tmp_path):
    root = tmp_path / "caseops"
    shutil.copytree(small_caseops_build, root)  # same key: reused, not rebuilt
    paths = prepare_data(_caseops_cfg(root), progress=False)
    assert [p.name for p in paths.val_files] == ["val_000000.bin"]  # val_*.bin also matches val_bytes_*
    assert [p.name for p in paths.val_byte_files] == ["val_bytes_000000.bin"]
    tables = load_byte_tables(paths.tokenizer_path, paths.vocab_size, paths.val_files,
                              paths.val_byte_files, 100)
    assert tables.sidecar is not None and tables.sidecar.numel() == 100


def test_caseops_data_needs_its_sidecar(small_caseops_build, tmp_path):
    root = tmp_path / "caseops"
    shutil.copytree(small_caseops_build, root)
    cfg = _caseops_cfg(root, source="files", create_command="crownq-data embedded --vocab 512 --caseops")
    (root / "val_bytes_000000.bin").unlink()
    missing = r"data.caseops is true but no byte sidecar matches .*val_bytes_\*\.bin .*create it with: "
    with pytest.raises(FileNotFoundError, match=missing + "crownq-data embedded --vocab 512 --caseops"):
        prepare_data(cfg)
    # Declared plain, the tokenizer still gives the data away: scoring refuses it.
    paths = prepare_data(replace(cfg, caseops=False))
    with pytest.raises(ValueError, match="CaseOps tokenizer but the validation split"):
        load_byte_tables(paths.tokenizer_path, paths.vocab_size, paths.val_files, paths.val_byte_files, 100)


@pytest.mark.parametrize(
    ("option", "vocab", "caseops", "tokenizer"),
    [
        ("fineweb_sp4096", 4096, False, "fineweb_4096_bpe.model"),
        ("fineweb_sp8192", 8192, False, "fineweb_8192_bpe.model"),
        ("fineweb_caseops_sp8192", 8192, True, "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"),
        ("embedded_caseops_4096", 4096, True, "tokenizer.model"),
    ],
)
def test_new_conf_options(option, vocab, caseops, tokenizer, tmp_path, monkeypatch):
    for name in ("SP4096", "SP8192", "CASEOPS"):
        monkeypatch.setenv(f"CROWNQ_FINEWEB_{name}_DIR", str(tmp_path / name))
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DIR / f"{option}.yaml"))
    data_cfg: DataConfig = OmegaConf.to_object(cfg)  # a misspelt key or wrong type fails here
    assert (data_cfg.vocab_size, data_cfg.caseops, data_cfg.tokenizer) == (vocab, caseops, tokenizer)
    if data_cfg.source == "files":
        assert data_cfg.val_bytes_pattern == "fineweb_val_bytes_*.bin"
        variant = option.removeprefix("fineweb_")
        assert data_cfg.create_command.startswith(f"crownq-data fineweb --variant {variant} ")
        with pytest.raises(FileNotFoundError, match=f"--out {tmp_path}"):
            prepare_data(data_cfg)
    else:
        assert data_cfg.create_command == "crownq-data embedded --vocab 4096 --caseops"
