"""Document-aware ("VarLen") attention, frontier spec §3.10: inside a packed row a token attends only to
earlier tokens of its own document (BOS starts a document), and a document longer than `max_len` is cut
into segments that cannot see each other. The mask is block-diagonal causal, one block per segment.

Two exact paths compute it: PyTorch SDPA with a boolean [B, 1, T, T] mask (CPU, or CUDA without
FlashAttention), and FlashAttention's varlen kernel on the flattened rows with `cu_seqlens` (CUDA).
Both are built once per forward (`DocLayout`) and shared by every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crownq.model.attention_backend import _flash_module, _half, resolve_backend


def segment_starts(input_ids: Tensor, bos_id: int, max_len: int = 0) -> Tensor:
    """[B, T] bool: True where a segment starts (row start, every BOS, every max_len-th token of a doc)."""
    b, t = input_ids.shape
    pos = torch.arange(t, device=input_ids.device).expand(b, t)
    starts = input_ids == bos_id
    starts = starts | (pos == 0)
    if max_len > 0:
        doc_start = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=1).values
        starts = starts | ((pos - doc_start) % max_len == 0)
    return starts


def segment_ids(input_ids: Tensor, bos_id: int, max_len: int = 0) -> Tensor:
    """[B, T] long: the segment each token belongs to (equal ids = may attend to each other)."""
    return torch.cumsum(segment_starts(input_ids, bos_id, max_len).long(), dim=1)


@dataclass
class DocLayout:
    """What every attention layer of one forward needs to stay inside its document."""

    mask: Tensor | None  # [B, 1, T, T] bool for SDPA (True = may attend)
    cu_seqlens: Tensor | None  # [B*T + 1] int32 for FlashAttention varlen, padded with B*T
    max_seqlen: int


def doc_layout(input_ids: Tensor, bos_id: int, max_len: int, backend: str) -> DocLayout:
    b, t = input_ids.shape
    starts = segment_starts(input_ids, bos_id, max_len)
    if resolve_backend(backend, input_ids.device) in ("fa3", "fa2"):
        total = b * t
        # A fixed-size (static-shape) boundary list: torch.compile needs no data-dependent shapes. Unused
        # entries repeat `total`, i.e. empty sequences, which the kernel skips.
        idx = torch.nonzero_static(starts.flatten(), size=total, fill_value=total).flatten()
        cu = torch.cat((idx, idx.new_full((1,), total))).to(torch.int32)
        return DocLayout(None, cu, min(t, max_len) if max_len > 0 else t)
    seg = torch.cumsum(starts.long(), dim=1)
    causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
    mask = (seg[:, :, None] == seg[:, None, :]) & causal
    return DocLayout(mask.unsqueeze(1), None, t)


def doc_attention(q: Tensor, k: Tensor, v: Tensor, layout: DocLayout) -> Tensor:
    """[B, T, H(_kv), D] in and out, attention confined to each token's own segment."""
    if layout.cu_seqlens is not None:
        b, t, h, d = q.shape
        mod = _flash_module("flash_attn_interface") or _flash_module("flash_attn")
        flat = [_half(x).reshape(b * t, x.size(2), d) for x in (q, k, v)]
        out = mod.flash_attn_varlen_func(*flat, layout.cu_seqlens, layout.cu_seqlens, layout.max_seqlen,
                                         layout.max_seqlen, causal=True)
        out = out[0] if isinstance(out, tuple) else out
        return out.reshape(b, t, h, d).to(q.dtype)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask, enable_gqa=q.size(1) != k.size(1))
    return y.transpose(1, 2)
