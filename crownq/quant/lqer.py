"""LQER (frontier spec 5.5): a low-rank repair of the largest quantisation errors, stored in the artifact.

For the `top_k` quantised tensors with the largest error norm |W - Q s|_F, the error E is factored by
a thin SVD, E ~ A B with A = U[:, :r] S[:r] (rows x r) and B = Vh[:r] (r x cols), and the factors are
stored in a few bits; the loader adds (A B) back. Packing:
- asymmetric (`asym`, used whenever the group size divides B's size, i.e. always in the frontier):
  A int2 in {-2, -1, 0, 1} with ONE fp16 scale max|A| / 1.5; B int4 in [-8, 7] with one fp16 scale
  per group of `group` consecutive values of B flattened row-major, max|group| / 7.5;
- symmetric fallback (`sym`): A and B int4 in [-7, 7], one fp16 scale per row, max|row| / 7.
Codes are rounded against the fp16 scale the loader multiplies by (round half to even, as torch).
The SVD's sign convention matters for the packing (an opposite sign moves the rounding ties), so
this runs torch.linalg.svd in float32 on CPU, as the frontier does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# In a submission bundle only when this holds for its configuration (crownq/submit/closure.py).
BUNDLE_WHEN = 'cfg.quantizer.lqer_rank > 0'

LQER_MODES = ("asym", "sym")
# Code ranges of each packing: (A lo, A hi, B lo, B hi).
CODE_RANGES = {"asym": (-2, 1, -8, 7), "sym": (-7, 7, -7, 7)}


@dataclass
class LQERFactors:
    qa: Tensor  # int8 [R, r]
    sa: Tensor  # fp32 (fp16-exact): [1] (asym) or [R] (sym)
    qb: Tensor  # int8 [r, K]
    sb: Tensor  # fp32 (fp16-exact): [r*K / group] (asym) or [r] (sym)
    mode: str
    group: int

    @property
    def rank(self) -> int:
        return int(self.qa.shape[1])

    def num_scales(self) -> int:
        return int(self.sa.numel() + self.sb.numel())

    def correction(self) -> Tensor:
        """The dequantised low-rank term (qA sA) @ (qB sB), fp32 [R, K]."""
        sa, sb = self.sa.half().float(), self.sb.half().float()
        if self.mode == "asym":
            a = self.qa.float() * sa.reshape(())
            b = (self.qb.float().reshape(-1, self.group) * sb.unsqueeze(-1)).reshape(self.qb.shape)
        else:
            a = self.qa.float() * sa.unsqueeze(-1)
            b = self.qb.float() * sb.unsqueeze(-1)
        return a @ b


def _codes(x: Tensor, scale: Tensor, lo: int, hi: int) -> Tensor:
    # A zero scale (an all-zero factor) gives zero codes instead of 0/0.
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(x / safe), lo, hi)
    return torch.where(scale == 0, torch.zeros_like(q), q).to(torch.int8)


def svd_factors(err: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """A [R, r] = U[:, :r] S[:r] and B [r, K] = Vh[:r] of the error, r = min(rank, R, K); fp32 on CPU."""
    if err.ndim != 2:
        raise ValueError(f"LQER: the error must be 2-D, got shape {tuple(err.shape)}")
    if rank < 1:
        raise ValueError(f"quantizer.lqer_rank must be >= 1 to factor an error, got {rank}")
    u, s, vh = torch.linalg.svd(err.detach().float().cpu(), full_matrices=False)
    r = min(rank, s.numel())
    return u[:, :r] * s[:r], vh[:r]


def pack_asym(a: Tensor, b: Tensor, group: int) -> LQERFactors:
    if b.numel() % group:
        raise ValueError(f"LQER asym packing: B has {b.numel()} values, not a multiple of the group {group}")
    sa = (a.abs().max() / 1.5).half().float().reshape(1)
    groups = b.reshape(-1, group)
    sb = (groups.abs().amax(-1) / 7.5).half().float()
    qb = _codes(groups, sb.unsqueeze(-1), -8, 7).reshape(b.shape)
    return LQERFactors(_codes(a, sa, -2, 1), sa, qb, sb, "asym", group)


def pack_sym(a: Tensor, b: Tensor) -> LQERFactors:
    sa = (a.abs().amax(-1) / 7.0).half().float()
    sb = (b.abs().amax(-1) / 7.0).half().float()
    qa, qb = _codes(a, sa.unsqueeze(-1), -7, 7), _codes(b, sb.unsqueeze(-1), -7, 7)
    return LQERFactors(qa, sa, qb, sb, "sym", 0)


def pack(a: Tensor, b: Tensor, group: int) -> LQERFactors:
    """Asymmetric packing when `group` divides B's size, else the symmetric fallback (as the frontier)."""
    return pack_asym(a, b, group) if group > 0 and b.numel() % group == 0 else pack_sym(a, b)


def choose_targets(errors: dict[str, float], top_k: int) -> list[str]:
    """Names of the `top_k` largest error norms (ties: the earlier name first)."""
    order = sorted(errors, key=lambda n: -errors[n])  # sorted() is stable
    return order[:max(0, top_k)]


def lqer_repair(weights: dict[str, Tensor], dequantised: dict[str, Tensor], rank: int, top_k: int,
                group: int) -> dict[str, LQERFactors]:
    """{name: factors} for the top_k tensors by |W - deq|_F (the frontier's selection over GPTQ tensors)."""
    errors = {n: (weights[n].float().cpu() - dequantised[n].float().cpu()) for n in dequantised}
    norms = {n: float(e.norm()) for n, e in errors.items()}
    return {n: pack(*svd_factors(errors[n], rank), group) for n in choose_targets(norms, top_k)}
