"""SDClip row scales (frontier spec 5.2): scale = k x std(row) / qmax, fixed before rounding.

Where the record's clip search tries five quantiles of |w| per matrix, SDClip sets each row's clip
point at k sample standard deviations (N - 1) of the ORIGINAL row (dead input columns included, as the
frontier does), with k chosen per tensor group: the frontier uses attention 13.0, MLP 11.5, embedding
14.0, other matrices 12.85. Larger k = coarser grid but fewer clipped outliers; since the entropy of
the codes is about b - log2(k) + const, k trades bits against error directly.

Hessian-aware variant (`sdclip_hessian`, spec 5.2, not used by the frontier): rows whose weights sit
on important inputs get a wider clip, s_i = k std_i [1 + lambda (r_i - 1)] / qmax with
r_i = mean_j(|W_ij| iota_j) normalised by its mean over rows, iota_j = diag(H)_j / mean(diag H) of the
damped Hessian (lambda 0.175; 0.30 was worse in the source).
"""

from __future__ import annotations

import torch
from torch import Tensor

from crownq.quant.rounding import qmax_for_bits

SDCLIP_SELECTS = ("sdclip", "sdclip_hessian")
# The frontier clamps the fp32 scale at 1e-10; its fp16 copy can still underflow to 0 for a constant
# row. A zero scale would turn the codes into NaN, so such rows get the smallest fp16 subnormal (a
# constant row then quantises to its exact zeros or to clamped codes, never to NaN).
SDCLIP_MIN = 1e-10
FP16_TINIEST = 2.0**-24

K_FIELDS = {"attn": "sdclip_k_attn", "mlp": "sdclip_k_mlp", "embed": "sdclip_k_embed",
            "other": "sdclip_k_other"}


def group_k(cfg, group: str) -> float:
    """The SDClip k of a tensor group (attn | mlp | embed | other) from the quantizer config."""
    if group not in K_FIELDS:
        raise ValueError(f"SDClip: group {group!r} has no k (expected one of {tuple(K_FIELDS)})")
    k = float(getattr(cfg, K_FIELDS[group]))
    if not k > 0:
        raise ValueError(f"quantizer.{K_FIELDS[group]} must be > 0, got {k}")
    return k


def row_importance(w: Tensor, hdiag: Tensor) -> Tensor:
    """r_i = mean_j(|W_ij| iota_j) / mean_i(...), iota = diag(H) / mean(diag H): [..., R, K] -> [..., R]."""
    iota = hdiag / hdiag.mean(-1, keepdim=True)
    r = (w.abs() * iota.unsqueeze(-2)).mean(-1)
    return r / r.mean(-1, keepdim=True)


def sdclip_scales(w: Tensor, k: Tensor | float, bits: int, hdiag: Tensor | None = None,
                  lam: float = 0.0) -> Tensor:
    """fp16-exact per-row scales k std(row) / qmax (times 1 + lam (r - 1) with a Hessian diagonal).

    w [..., R, K]; k a number or a per-row tensor [..., R]; hdiag [..., K] (the damped diagonal).
    Returned in w's float dtype (fp32 or fp64), every value representable in fp16.
    """
    if w.shape[-1] < 2:
        raise ValueError(f"SDClip needs rows of at least 2 values for a sample std, got shape "
                         f"{tuple(w.shape)}")
    wf = w.double() if w.dtype == torch.float64 else w.float()
    if not torch.isfinite(wf).all():
        raise ValueError("weights contain inf/nan: cannot choose quantisation scales")
    k = torch.as_tensor(k, dtype=wf.dtype, device=wf.device)
    scale = k * wf.std(-1) / qmax_for_bits(bits)
    if hdiag is not None and lam != 0.0:
        scale = scale * (1.0 + lam * (row_importance(wf, hdiag.to(wf.dtype)) - 1.0))
    scale = scale.clamp(min=SDCLIP_MIN)
    if (scale > torch.finfo(torch.float16).max).any():
        raise ValueError(f"a row's scale {scale.max().item():.3g} does not fit fp16 storage")
    return scale.half().clamp(min=FP16_TINIEST).to(wf.dtype)


def rtn_sdclip(w: Tensor, k: float, bits: int) -> tuple[Tensor, Tensor]:
    """Round-to-nearest with the SDClip scale: (q int8 [R, K], scale fp32 [R], fp16-exact)."""
    if w.ndim != 2:
        raise ValueError(f"rtn_sdclip expects a 2-D weight, got shape {tuple(w.shape)}")
    scale = sdclip_scales(w.float(), k, bits)
    qmax = qmax_for_bits(bits)
    return torch.clamp(torch.round(w.float() / scale[:, None]), -qmax, qmax).to(torch.int8), scale
