"""The official parameter-golf token shard format: read (memory-mapped), write (atomic), validate.

Layout: 256 little-endian int32 header words ([0] magic 20240520, [1] version 1, [2] token count),
then `count` little-endian uint16 tokens. The file size must be exactly 1024 + 2 * count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_WORDS = 256
HEADER_BYTES = HEADER_WORDS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = np.iinfo(np.uint16).max

__all__ = [
    "HEADER_BYTES",
    "SHARD_MAGIC",
    "SHARD_VERSION",
    "ShardError",
    "read_shard",
    "read_shard_header",
    "shard_token_count",
    "write_shard",
]


class ShardError(ValueError):
    """A shard file violates the format; the message names the file, what was expected and found."""


def write_shard(path: str | os.PathLike, tokens: np.ndarray | list[int]) -> Path:
    """Write `tokens` as a shard at `path` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"write_shard({path}): expected a 1-D token array, got shape {array.shape}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > MAX_TOKEN_ID):
        raise ValueError(
            f"write_shard({path}): token ids must lie in [0, {MAX_TOKEN_ID}] to fit uint16, "
            f"found range [{int(array.min())}, {int(array.max())}]"
        )
    header = np.zeros(HEADER_WORDS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, array.size
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(header.tobytes())
            handle.write(array.astype(TOKEN_DTYPE, copy=False).tobytes())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; shards are shared data, not secrets
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_shard_header(path: str | os.PathLike) -> int:
    """Validate a shard's header and size; return its token count (reads only the header)."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard {path}: file not found")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(
            f"shard {path}: truncated: expected at least a {HEADER_BYTES}-byte header, found {size} bytes"
        )
    header = np.fromfile(path, dtype="<i4", count=HEADER_WORDS)
    magic, version, count = int(header[0]), int(header[1]), int(header[2])
    if magic != SHARD_MAGIC:
        raise ShardError(f"shard {path}: bad magic number: expected {SHARD_MAGIC}, found {magic}")
    if version != SHARD_VERSION:
        raise ShardError(f"shard {path}: unsupported version: expected {SHARD_VERSION}, found {version}")
    if count < 0:
        raise ShardError(f"shard {path}: negative token count in header: {count}")
    expected_size = HEADER_BYTES + 2 * count
    if size != expected_size:
        kind = "truncated" if size < expected_size else "size does not match token count"
        raise ShardError(
            f"shard {path}: {kind}: header says {count} tokens, so expected {expected_size} bytes "
            f"(1024 + 2 * {count}), found {size} bytes"
        )
    return count


def shard_token_count(path: str | os.PathLike) -> int:
    """Token count of a valid shard (alias of `read_shard_header`, reads only the header)."""
    return read_shard_header(path)


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map a validated shard's tokens (uint16, read-only).

    With `vocab_size`, every token id is checked to be < vocab_size (one vectorised max over the
    file, ~0.1 s per 100M tokens) so a shard from another tokenizer fails here, not as a CUDA assert.
    """
    path = Path(path)
    count = read_shard_header(path)
    if count == 0:
        tokens = np.zeros(0, dtype=TOKEN_DTYPE)
    else:
        tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(count,))
    if vocab_size is not None and count:
        max_id = int(tokens.max())
        if max_id >= vocab_size:
            position = int(np.argmax(tokens >= vocab_size))
            raise ShardError(
                f"shard {path}: token id {max_id} is out of range: expected ids < vocab_size "
                f"{vocab_size} (first offending id {int(tokens[position])} at token {position})"
            )
    return tokens
