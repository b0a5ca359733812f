"""Schema of the `data` config group (owned by the data layer)."""

from dataclasses import dataclass


@dataclass
class DataConfig:
    # "embedded": built on first use from text shipped with CPython; "files": shards already on disk.
    source: str = "embedded"
    name: str = "embedded_sp1024"
    # Folder holding the shards and tokenizer. For "embedded" an empty string means the user cache
    # folder (CROWNQ_DATA_DIR or ~/.cache/crownq, in a sub-folder keyed by the build's inputs).
    root: str = ""
    # Shard file patterns and tokenizer path, relative to `root` (an absolute tokenizer path is kept).
    train_pattern: str = "train_*.bin"
    val_pattern: str = "val_*.bin"
    # Byte sidecars of the validation shards (CaseOps data); never read as token shards themselves.
    val_bytes_pattern: str = "val_bytes_*.bin"
    tokenizer: str = "tokenizer.model"
    vocab_size: int = 1024
    # Embedded-corpus builder options (ignored for source=files).
    min_corpus_bytes: int = 2_000_000
    val_fraction: float = 0.1
    shard_tokens: int = 250_000  # tokens per train/val shard file (several, so the stream crosses files)
    # CaseOps text (lossless case operators): the embedded build transforms it; any source then must
    # have a validation byte sidecar, since bpb is charged on the original bytes.
    caseops: bool = False
    # Command shown when a path is missing.
    create_command: str = "crownq-data embedded"
