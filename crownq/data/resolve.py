"""Turn the `data` config into concrete, checked file paths (building the embedded corpus if needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crownq.config.data import DataConfig
from crownq.data.shards import read_shard, read_shard_header
from crownq.data.sidecar import load_sidecar

__all__ = ["DataPaths", "prepare_data", "tokenizer_vocab_size"]


@dataclass(frozen=True)
class DataPaths:
    train_files: list[Path]
    val_files: list[Path]
    tokenizer_path: Path
    vocab_size: int
    val_byte_files: list[Path] = field(default_factory=list)  # byte sidecars (CaseOps data), else empty


def tokenizer_vocab_size(path: Path) -> int:
    import sentencepiece as spm

    # From bytes, not a path: sentencepiece cannot open a path that is not valid UTF-8.
    return spm.SentencePieceProcessor(model_proto=Path(path).read_bytes()).get_piece_size()


def prepare_data(data_cfg: DataConfig, progress: bool = True) -> DataPaths:
    """Paths of the train/val shards and tokenizer named by `data_cfg`, after checking them.

    Checks: both splits non-empty, every shard's header and size valid, token ids of the validation
    shards and the first train shard < vocab_size (reading every train shard would take minutes on
    FineWeb; the loader's `vocab_size` argument checks the rest as they are opened), and the
    tokenizer's vocabulary size equal to data_cfg.vocab_size.
    """
    if data_cfg.source == "embedded":
        # Imported here: a bundle for shard data carries no corpus builder (BUNDLE_WHEN).
        from crownq.data.embedded import TOKENIZER_FILE, EmbeddedOptions, build_embedded

        options = EmbeddedOptions(
            vocab_size=data_cfg.vocab_size,
            min_corpus_bytes=data_cfg.min_corpus_bytes,
            val_fraction=data_cfg.val_fraction,
            shard_tokens=data_cfg.shard_tokens,
            caseops=data_cfg.caseops,
        )
        root = build_embedded(options, out_dir=data_cfg.root or None, progress=progress)
        tokenizer = root / TOKENIZER_FILE
    elif data_cfg.source == "files":
        if not data_cfg.root:
            raise ValueError(
                f"data.root is empty: source=files needs the folder holding the {data_cfg.name} shards"
            )
        root = Path(data_cfg.root).expanduser()
        tokenizer = Path(data_cfg.tokenizer).expanduser()
        tokenizer = tokenizer if tokenizer.is_absolute() else root / tokenizer
    else:
        raise ValueError(f"data.source must be 'embedded' or 'files', got {data_cfg.source!r}")

    hint = f"create it with: {data_cfg.create_command}"
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} (data.root for {data_cfg.name}) does not exist; {hint}")
    if not tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer {tokenizer} (data.tokenizer) does not exist; {hint}")
    train_files = sorted(root.glob(data_cfg.train_pattern))
    # `val_*.bin` also matches the sidecars `val_bytes_*.bin`: they are byte counts, not tokens.
    val_byte_files = sorted(root.glob(data_cfg.val_bytes_pattern)) if data_cfg.val_bytes_pattern else []
    val_files = sorted(set(root.glob(data_cfg.val_pattern)) - set(val_byte_files))
    splits = (("train", train_files, "train_pattern"), ("validation", val_files, "val_pattern"))
    for split, files, key in splits:
        if not files:
            pattern = getattr(data_cfg, key)
            raise FileNotFoundError(
                f"the {split} split is empty: no file matches {root / pattern} (data.{key}); {hint}"
            )
    if sum(read_shard_header(path) for path in train_files) == 0:
        raise ValueError(f"the train split is empty: the {len(train_files)} shard(s) in {root} hold 0 tokens")
    if sum(read_shard_header(path) for path in val_files) == 0:
        raise ValueError(
            f"the validation split is empty: the {len(val_files)} shard(s) in {root} hold 0 tokens"
        )

    found_vocab = tokenizer_vocab_size(tokenizer)
    if found_vocab != data_cfg.vocab_size:
        raise ValueError(
            f"tokenizer {tokenizer} has vocab size {found_vocab} but data.vocab_size is "
            f"{data_cfg.vocab_size}: they must be equal (pick the matching data option or set "
            "data.vocab_size)"
        )
    for path in [*val_files, train_files[0]]:
        read_shard(path, vocab_size=data_cfg.vocab_size)
    if data_cfg.caseops and not val_byte_files:
        raise FileNotFoundError(
            f"data.caseops is true but no byte sidecar matches {root / data_cfg.val_bytes_pattern} "
            f"(data.val_bytes_pattern): CaseOps bpb is charged on the original bytes; {hint}"
        )
    if val_byte_files:
        load_sidecar(val_byte_files, val_files)  # one per validation shard, one entry per token
    return DataPaths(train_files, val_files, tokenizer, data_cfg.vocab_size, val_byte_files)
