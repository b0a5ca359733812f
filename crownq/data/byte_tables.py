"""Per-token byte tables of a sentencepiece tokenizer and the bits-per-byte score built on them.

The rules (parameter-golf accounting): control, unknown and unused ids are boundary tokens worth 0
bytes; byte-fallback pieces `<0xXX>` are worth 1 byte; any other piece is worth the UTF-8 length of
its text after stripping one leading U+2581, which is remembered: that space is counted only when the
previous token is not a boundary (a document's first word after BOS has no space before it).

Data whose text was transformed before tokenizing (CaseOps) ships a byte sidecar instead: the
original bytes of every validation token, by stream position. Tables that carry one charge those
values and need the targets' positions; the token rule would charge the transformed text.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

SPACE_MARK = "\u2581"

__all__ = ["ByteTables", "bits_per_byte", "byte_tables_from_sentencepiece", "target_byte_counts"]


@dataclass(frozen=True)
class ByteTables:
    base_bytes: torch.Tensor  # LongTensor[V]: bytes of the piece without its leading U+2581
    has_leading_space: torch.Tensor  # BoolTensor[V]: the piece started with U+2581
    is_boundary: torch.Tensor  # BoolTensor[V]: control / unknown / unused ids
    # LongTensor[N] or None: original bytes of validation token p (charged when p is a target)
    sidecar: torch.Tensor | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.base_bytes.numel())

    def to(self, device: torch.device | str) -> ByteTables:
        sidecar = None if self.sidecar is None else self.sidecar.to(device)
        return ByteTables(self.base_bytes.to(device), self.has_leading_space.to(device),
                          self.is_boundary.to(device), sidecar)

    def without_sidecar(self) -> ByteTables:
        """The token rule only, for callers that score contiguous text without positions."""
        return ByteTables(self.base_bytes, self.has_leading_space, self.is_boundary)


def byte_tables_from_sentencepiece(model_path: str | os.PathLike, vocab_size: int) -> ByteTables:
    """Build the tables for ids 0..vocab_size-1; ids the model lacks are boundaries (0 bytes)."""
    import sentencepiece as spm  # local import: only this function needs it

    # From bytes, not a path: sentencepiece cannot open a path that is not valid UTF-8.
    processor = spm.SentencePieceProcessor(model_proto=Path(model_path).read_bytes())
    pieces = processor.get_piece_size()
    if pieces > vocab_size:
        raise ValueError(
            f"tokenizer {model_path} has {pieces} pieces but vocab_size is {vocab_size}: "
            f"expected at most {vocab_size}"
        )
    base = torch.zeros(vocab_size, dtype=torch.long)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    boundary = torch.ones(vocab_size, dtype=torch.bool)
    for token_id in range(pieces):
        if processor.is_control(token_id) or processor.is_unknown(token_id) or processor.is_unused(token_id):
            continue
        boundary[token_id] = False
        if processor.is_byte(token_id):
            base[token_id] = 1
            continue
        piece = processor.id_to_piece(token_id)
        if piece.startswith(SPACE_MARK):
            space[token_id] = True
            piece = piece[1:]
        base[token_id] = len(piece.encode("utf-8"))
    return ByteTables(base, space, boundary)


def target_byte_counts(prev_ids: torch.Tensor, target_ids: torch.Tensor, tables: ByteTables,
                       positions: torch.Tensor | None = None) -> torch.Tensor:
    """Bytes each target token covers: base[target] + (leading space and previous is not a boundary),
    or, for tables with a sidecar, the sidecar at the targets' stream `positions` (same shape)."""
    if prev_ids.shape != target_ids.shape:
        raise ValueError(
            f"target_byte_counts: prev_ids shape {tuple(prev_ids.shape)} != target_ids shape "
            f"{tuple(target_ids.shape)}"
        )
    if tables.sidecar is not None:
        if positions is None or positions.shape != target_ids.shape:
            found = None if positions is None else tuple(positions.shape)
            raise ValueError(
                "target_byte_counts: these byte tables carry a byte sidecar (CaseOps data), so the "
                f"targets' stream positions are needed: expected shape {tuple(target_ids.shape)}, got {found}"
            )
        return tables.sidecar[positions.to(tables.sidecar.device).long()].to(target_ids.device)
    device = target_ids.device
    base = tables.base_bytes.to(device)
    space = tables.has_leading_space.to(device)
    boundary = tables.is_boundary.to(device)
    target_ids = target_ids.long()
    prev_ids = prev_ids.long()
    return base[target_ids] + (space[target_ids] & ~boundary[prev_ids]).long()


def bits_per_byte(loss_sum_nats: float, byte_count: int) -> float:
    """Summed cross-entropy (nats) over the scored tokens -> bits per byte of the text they cover."""
    loss_sum_nats = float(loss_sum_nats)
    byte_count = int(byte_count)
    if byte_count <= 0:
        raise ValueError(f"bits_per_byte: byte_count must be > 0, got {byte_count}")
    if not math.isfinite(loss_sum_nats):
        raise ValueError(f"bits_per_byte: loss_sum_nats must be finite, got {loss_sum_nats}")
    return loss_sum_nats / math.log(2.0) / byte_count
