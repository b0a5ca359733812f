"""The validation byte sidecar: original UTF-8 bytes per validation token, in the shard format.

When the text was rewritten before tokenizing (CaseOps), a token's piece no longer says how many
bytes of the original text it covers (an operator covers none), so bpb is charged from a second file
per validation shard: `fineweb_val_000000.bin` -> `fineweb_val_bytes_000000.bin`, same header, one
uint16 per token. Counts come from each piece's surface text run through the CaseOps byte counter
(`caseops.ByteCounter`): control pieces (BOS) 0, byte-fallback pieces 1, other pieces the original
bytes of their characters, the U+2581 space mark counting as the one space it stands for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crownq.data import caseops
from crownq.data.shards import MAX_TOKEN_ID, ShardError, read_shard, write_shard

if TYPE_CHECKING:  # torch is imported only where tables are built: the embedded builder needs none
    from crownq.data.byte_tables import ByteTables

CONTROL, BYTE, TEXT = 0, 1, 2
SPACE_MARK = "\u2581"

__all__ = [
    "PieceTable", "is_caseops_tokenizer", "load_byte_tables", "load_sidecar", "sidecar_name",
    "stream_byte_counts", "write_sidecar",
]


def sidecar_name(val_shard_name: str) -> str:
    """`fineweb_val_000000.bin` -> `fineweb_val_bytes_000000.bin` (the published naming)."""
    head, found, tail = val_shard_name.rpartition("val_")
    if not found:
        raise ValueError(f"sidecar_name: {val_shard_name!r} is not a validation shard name (no 'val_')")
    return f"{head}val_bytes_{tail}"


@dataclass(frozen=True)
class PieceTable:
    kinds: list[int]  # CONTROL (control/unknown/unused), BYTE (byte fallback) or TEXT
    surfaces: list[str]  # TEXT pieces with U+2581 turned back into a space; "" otherwise

    @classmethod
    def from_processor(cls, processor) -> PieceTable:
        kinds, surfaces = [], []
        for token_id in range(processor.get_piece_size()):
            special = processor.is_control(token_id) or processor.is_unknown(token_id)
            if special or processor.is_unused(token_id):
                kinds.append(CONTROL)
                surfaces.append("")
            elif processor.is_byte(token_id):
                kinds.append(BYTE)
                surfaces.append("")
            else:
                kinds.append(TEXT)
                surfaces.append(processor.id_to_piece(token_id).replace(SPACE_MARK, " "))
        return cls(kinds, surfaces)


def _processor(model_path: str | os.PathLike):
    import sentencepiece as spm

    # From bytes, not a path: sentencepiece cannot open a path that is not valid UTF-8.
    return spm.SentencePieceProcessor(model_proto=Path(model_path).read_bytes())


def is_caseops_tokenizer(processor) -> bool:
    """True when the tokenizer has the CaseOps operators as pieces (its text is CaseOps text)."""
    return any(processor.id_to_piece(processor.piece_to_id(op)) == op for op in caseops.OPERATORS)


def stream_byte_counts(tokens: np.ndarray, table: PieceTable) -> np.ndarray:
    """Original bytes of every token of a token stream (documents separated by control tokens)."""
    counter = caseops.ByteCounter()
    counts = np.zeros(len(tokens), dtype=np.int64)
    for index, token_id in enumerate(np.asarray(tokens).tolist()):
        kind = table.kinds[token_id] if token_id < len(table.kinds) else CONTROL
        if kind == CONTROL:
            counter.reset()  # BOS starts a document: no escape carries across it
        elif kind == BYTE:
            counts[index] = counter.count_raw_bytes(1)
        else:
            counts[index] = counter.count(table.surfaces[token_id])
    return counts


def write_sidecar(path: str | os.PathLike, counts: np.ndarray) -> Path:
    counts = np.asarray(counts)
    if counts.size and int(counts.max()) > MAX_TOKEN_ID:
        raise ValueError(f"write_sidecar({path}): a token covers {int(counts.max())} bytes, over uint16")
    return write_shard(path, counts)


def load_sidecar(sidecar_files: list[Path], val_files: list[Path]) -> np.ndarray:
    """The sidecars of `val_files` (paired by name), concatenated; each must match its shard's count."""
    by_name = {Path(f).name: Path(f) for f in sidecar_files}
    expected = [sidecar_name(Path(f).name) for f in val_files]
    unmatched = sorted(set(by_name) - set(expected))
    if unmatched:
        raise ShardError(
            f"byte sidecar(s) {unmatched} belong to no validation shard: expected only {expected}"
        )
    parts = []
    for val_file, name in zip(val_files, expected):
        if name not in by_name:
            raise ShardError(
                f"validation shard {val_file} has no byte sidecar: expected {Path(val_file).parent / name}"
            )
        counts = read_shard(by_name[name])
        tokens = read_shard(val_file)
        if len(counts) != len(tokens):
            raise ShardError(
                f"byte sidecar {by_name[name]}: {len(counts)} entries, expected one per token of {val_file} "
                f"({len(tokens)})"
            )
        parts.append(np.asarray(counts, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def load_byte_tables(tokenizer_path: str | os.PathLike, vocab_size: int, val_files: list[Path],
                     sidecar_files: list[Path], num_tokens: int) -> ByteTables:
    """Byte tables for scoring `num_tokens` validation tokens: the sidecar's bytes when the data has
    one, else the tokenizer's token rule. CaseOps data without a sidecar is refused: the token rule
    would charge the transformed text, whose operators are not bytes of the original."""
    import torch

    from crownq.data.byte_tables import ByteTables, byte_tables_from_sentencepiece

    tables = byte_tables_from_sentencepiece(tokenizer_path, vocab_size)
    processor = _processor(tokenizer_path)
    caseops_data = is_caseops_tokenizer(processor)
    if caseops_data:
        # The token rule (used without positions, e.g. training-time validation) charges operators 0:
        # exact except for escaped literal operator characters.
        base = tables.base_bytes.clone()
        for op in caseops.OPERATORS:
            base[processor.piece_to_id(op)] = 0
        tables = ByteTables(base, tables.has_leading_space, tables.is_boundary)
    if not sidecar_files:
        if caseops_data:
            raise ValueError(
                f"tokenizer {tokenizer_path} is a CaseOps tokenizer but the validation split "
                f"({val_files[0] if val_files else 'no files'} ...) has no byte sidecar (*val_bytes_*.bin): "
                "bpb must be charged on the original bytes; fetch or rebuild the data with its sidecar"
            )
        return tables
    counts = load_sidecar(sidecar_files, val_files)
    if len(counts) < num_tokens:
        raise ValueError(
            f"byte sidecar holds {len(counts)} entries, fewer than the {num_tokens} tokens scored"
        )
    return ByteTables(tables.base_bytes, tables.has_leading_space, tables.is_boundary,
                      torch.from_numpy(counts[:num_tokens].copy()))
