"""Per-row symmetric integer rounding with a clip search: the scale maths shared by GPTQ and RTN.

Export-time counterpart of fake_quant.rtn_per_row (the QAT rounding, clip = row max, fp32 scale): the
same grid and the same round-half-even, plus the clip search and fp16-exact scales the artifact needs.
A row's scale is `clip / qmax` where `clip` is a quantile of the row's absolute values. Scales are
rounded to fp16 *before* they are used, because fp16 is how the artifact stores them: the integers
are then chosen for exactly the scale the loader multiplies by.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from crownq.quant.fake_quant import max_code

DEFAULT_CLIP_QUANTILES = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
# Smallest normal fp16 number: a floor that keeps every stored scale finite, positive and exact in
# fp16. (Deliberately far below the record's 1/qmax floor, which zeroes whole rows of small weights.)
MIN_SCALE = 2.0**-14


def qmax_for_bits(bits: int) -> int:
    """Largest magnitude of a symmetric signed `bits`-bit code: int6 -> 31 (range [-31, 31]).

    One definition for training and export: the QAT grid (fake_quant.max_code) is the export grid.
    """
    return max_code(bits)


def row_quantiles(abs_w: Tensor, quantiles: Sequence[float]) -> Tensor:
    """Linear-interpolated quantiles of each row (numpy's default rule): [..., R, K] -> [C, ..., R].

    (torch.quantile sorts whole rows and refuses inputs over 2**24 elements.)
    """
    k = abs_w.shape[-1]
    for q in quantiles:
        if not 0.0 < q <= 1.0:
            raise ValueError(f"clip quantile must be in (0, 1], got {q}")
    # Clip quantiles sit near the top of the row: only its largest few values are needed, and a
    # top-k is far cheaper than sorting whole rows.
    lowest = int(min(quantiles) * (k - 1))
    ordered = abs_w.topk(k - lowest, dim=-1, sorted=True).values.flip(-1)  # ascending, ranks lowest..k-1
    out = []
    for q in quantiles:
        pos = q * (k - 1)
        lo = int(pos)
        hi = min(lo + 1, k - 1)
        frac = pos - lo
        out.append(ordered[..., lo - lowest] + (ordered[..., hi - lowest] - ordered[..., lo - lowest]) * frac)
    return torch.stack(out)


def candidate_scales(w: Tensor, bits: int, quantiles: Sequence[float]) -> Tensor:
    """fp16-representable per-row scales, one set per clip quantile: [..., R, K] -> [C, ..., R]."""
    clip = row_quantiles(w.abs().float(), quantiles)
    if not torch.isfinite(clip).all():
        raise ValueError("weights contain inf/nan: cannot choose quantisation scales")
    scale = (clip / qmax_for_bits(bits)).clamp(min=MIN_SCALE)
    if (scale > torch.finfo(torch.float16).max).any():
        raise ValueError(f"a row's scale {scale.max().item():.3g} does not fit fp16 storage")
    return scale.half().to(w.dtype if w.dtype == torch.float64 else torch.float32)


def quantize(w: Tensor, scale: Tensor, qmax: int) -> Tensor:
    """Round-half-even of w / scale clamped to [-qmax, qmax]; scale broadcasts against w."""
    return torch.clamp(torch.round(w / scale), -qmax, qmax)


def rtn_clip_search(w: Tensor, bits: int, quantiles: Sequence[float] = DEFAULT_CLIP_QUANTILES
                    ) -> tuple[Tensor, Tensor]:
    """Round-to-nearest per row, each row keeping the clip quantile with the smallest squared error.

    Returns (q int8 [R, K], scale fp32 [R]). All candidates are evaluated in one batched pass.
    """
    if w.ndim != 2:
        raise ValueError(f"rtn_clip_search expects a 2-D weight, got shape {tuple(w.shape)}")
    qmax = qmax_for_bits(bits)
    w = w.float()
    scales = candidate_scales(w, bits, quantiles)  # [C, R]
    q = quantize(w.unsqueeze(0), scales.unsqueeze(-1), qmax)  # [C, R, K]
    err = (w.unsqueeze(0) - q * scales.unsqueeze(-1)).square().sum(-1)  # [C, R]
    best = err.argmin(0)  # [R]
    rows = torch.arange(w.shape[0])
    return q[best, rows].to(torch.int8), scales[best, rows]
