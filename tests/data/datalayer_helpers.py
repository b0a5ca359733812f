"""Constants and small helpers shared by the data-layer tests (unique module name: no tests/__init__.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crownq.data.embedded import EmbeddedOptions
from crownq.data.shards import HEADER_BYTES

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SHARED_TOKENIZER = SHARED_DATA / "fineweb_1024_bpe.model"
SHARED_MANIFEST = SHARED_DATA / "fineweb_manifest.json"
# Only the pydoc topics (~0.47 MB) are parsed for this size, so a build takes a few seconds.
SMALL_OPTIONS = EmbeddedOptions(
    vocab_size=512, min_corpus_bytes=150_000, val_fraction=0.1, shard_tokens=20_000
)


def raw_shard(
    path: Path, tokens, magic: int = 20240520, version: int = 1, count: int | None = None, extra: bytes = b""
) -> Path:
    """Write a shard byte by byte (bypassing write_shard) so malformed files can be made."""
    tokens = np.asarray(tokens, dtype="<u2")
    header = np.zeros(HEADER_BYTES // 4, dtype="<i4")
    header[:3] = magic, version, len(tokens) if count is None else count
    path.write_bytes(header.tobytes() + tokens.tobytes() + extra)
    return path
