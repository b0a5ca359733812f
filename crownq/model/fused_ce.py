"""Softcapped cross-entropy from pre-softcap logits, frontier spec §3.8.

loss_i = logsumexp(z_i) - z_i[target_i] with z = cap * tanh(x / cap). The eager path materialises z and
its softmax for autograd; `SoftcapCE` keeps only the inputs and the per-row log-sum-exp and recomputes
the rest in backward (the memory the record's fused Triton kernel saves). On CUDA with Triton the same
function runs as one Triton kernel per direction (crownq/model/fused_ce_triton.py); everywhere else the
torch implementation below is the exact fallback.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def eager_softcap_ce(x: Tensor, targets: Tensor, cap: float) -> Tensor:
    """The reference: [N, V] raw logits, [N] targets -> [N] fp32 losses (what eval computes)."""
    z = x.float()
    if cap > 0:
        z = cap * torch.tanh(z / cap)
    return F.cross_entropy(z, targets, reduction="none")


class SoftcapCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, targets: Tensor, cap: float) -> Tensor:
        xf = x.float()
        z = cap * torch.tanh(xf / cap) if cap > 0 else xf
        lse = torch.logsumexp(z, dim=-1)
        loss = lse - z.gather(-1, targets[:, None]).squeeze(-1)
        ctx.save_for_backward(x, targets, lse)
        ctx.cap = cap
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, targets, lse = ctx.saved_tensors
        cap = ctx.cap
        xf = x.float()
        if cap > 0:
            t = torch.tanh(xf / cap)
            z, dz_dx = cap * t, 1 - t * t
        else:
            z, dz_dx = xf, None
        g = torch.exp(z - lse[:, None])
        g = g - F.one_hot(targets, x.size(-1)).to(g.dtype)
        g = g * grad[:, None]
        if dz_dx is not None:
            g = g * dz_dx
        return g.to(x.dtype), None, None


def _triton_kernel():
    try:
        from crownq.model import fused_ce_triton
    except Exception:  # no Triton (CPU wheels) or a broken install: the exact fallback is used
        return None
    return fused_ce_triton if fused_ce_triton.available() else None


def softcap_cross_entropy(x: Tensor, targets: Tensor, cap: float, backend: str = "auto") -> Tensor:
    """[N, V] raw logits -> [N] losses. backend: auto (Triton on CUDA when present) | torch | eager."""
    if backend == "eager":
        return eager_softcap_ce(x, targets, cap)
    if backend == "auto" and x.is_cuda:
        kernel = _triton_kernel()
        if kernel is not None:
            return kernel.softcap_ce(x, targets, cap)
    return SoftcapCE.apply(x, targets, cap)
