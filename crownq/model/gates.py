"""The frontier's small gates (spec §3.1, §3.3, §3.5): windowed SmearGate with the BOS mask, the sparse
per-head attention-output gate, and the sigmoid-gated U-Net skip merge."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def not_bos(input_ids: Tensor, bos_id: int) -> Tensor:
    """[B, T] -> [B, T, 1] float mask: 0 where the token is BOS (nothing may flow into a document's
    first token from the document before it), 1 elsewhere."""
    return (input_ids != bos_id).unsqueeze(-1)


class WindowSmearGate(nn.Module):
    """e'_t = e_t + lam * sigmoid(w . e_t[:window]) * e_{t-1} (* [ids_t != BOS]); e'_0 = e_0.

    One scalar gate per position from the current token's first `window` raw embedding channels; lam
    starts at 0, so the gate is transparent at init.
    """

    def __init__(self, window: int):
        super().__init__()
        self.window = window
        self.weight = nn.Parameter(torch.zeros(1, window))
        self.lam = nn.Parameter(torch.zeros(1))

    def forward(self, e: Tensor, keep: Tensor | None) -> Tensor:
        gate = torch.sigmoid(F.linear(e[..., :self.window], self.weight.to(e.dtype)))  # [B, T, 1]
        prev = F.pad(e[:, :-1], (0, 0, 1, 0))  # position 0 has no predecessor
        term = self.lam.to(e.dtype) * gate * prev
        if keep is not None:
            term = term * keep.to(e.dtype)
        return e + term


def sparse_head_gate(y: Tensor, n: Tensor, weight: Tensor, scale: float) -> Tensor:
    """y [B, T, H, D] <- sigmoid(scale * W[h] . n_t[:window]) * y_{t,h}, W: [H, window].

    The gate reads the normalised attention input n [B, T, d]; at zero init every head is halved.
    """
    g = torch.sigmoid(scale * F.linear(n[..., :weight.size(1)], weight.to(n.dtype)))  # [B, T, H]
    return y * g.unsqueeze(-1)


def merge_skip(x: Tensor, skip: Tensor, weight: Tensor, gate: Tensor | None) -> Tensor:
    """U-Net skip merge: x + w * skip, or with a gate the per-channel interpolation
    sigmoid(gate) * x + (1 - sigmoid(gate)) * (w * skip) (0.5 / 0.5 at zero init)."""
    weighted = weight.to(x.dtype) * skip
    if gate is None:
        return x + weighted
    s = torch.sigmoid(gate.to(x.dtype))
    return s * x + (1 - s) * weighted
