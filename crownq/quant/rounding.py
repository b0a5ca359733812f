"""Per-row symmetric integer rounding with a clip search: the scale maths shared by GPTQ and RTN.

Export-time counterpart of fake_quant.rtn_per_row (the QAT rounding, clip = row max, fp32 scale): the
same grid and the same round-half-even, plus the clip search and fp16-exact scales the artifact needs.
A row's scale is `max(clip / qmax, floor)` where `clip` is a quantile of the row's absolute values.
Scales are rounded to fp16 *before* they are used, because fp16 is how the artifact stores them: the
integers are then chosen for exactly the scale the loader multiplies by. (fp16 rounding is monotone,
so flooring before or after the cast gives the same scale: the record floors before it.)

Switches (docs/departures.md):
- scale floor (`quantizer.scale_floor`): `record` = 1/qmax (1/31 for int6), the record's; `tiny` =
  2^-14, the smallest normal fp16 (rows whose weights are all small keep a fine grid); or a number.
- clip selection (`quantizer.clip_select`): `matrix_mse` = ONE quantile per matrix, the one with the
  least plain mean squared reconstruction error (the record's; ties keep the earlier quantile);
  `row_hessian` = each row its own quantile, least dW H dW^T (RTN: H = identity).
- int8 tensors (`quantizer.int8_clip`): `percentile` = the record's rule (clip every row at one fixed
  quantile, scale floor 1/qmax, codes rounded against the fp32 scale, the scale stored as fp16);
  `search` = the same clip search and fp16-exact scales as int6.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from crownq.quant.fake_quant import max_code

DEFAULT_CLIP_QUANTILES = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
# Smallest normal fp16 number: a floor that keeps every stored scale finite, positive and exact in
# fp16. (The `tiny` floor: far below the record's 1/qmax, which zeroes whole rows of small weights.)
MIN_SCALE = 2.0**-14
SCALE_FLOORS = ("record", "tiny")
# sdclip / sdclip_hessian: one fixed scale per row from the row's std (crownq/quant/sdclip.py).
CLIP_SELECTS = ("matrix_mse", "row_hessian", "sdclip", "sdclip_hessian")
INT8_CLIPS = ("percentile", "search")
RECORD_INT8_QUANTILE = 0.9999984  # the record's 99.99984th percentile


def qmax_for_bits(bits: int) -> int:
    """Largest magnitude of a symmetric signed `bits`-bit code: int6 -> 31 (range [-31, 31]).

    One definition for training and export: the QAT grid (fake_quant.max_code) is the export grid.
    """
    return max_code(bits)


def scale_floor_value(floor: str | float, bits: int) -> float:
    """The smallest row scale: `record` -> 1/qmax, `tiny` -> 2^-14, or a positive number as given."""
    if floor == "record":
        return 1.0 / qmax_for_bits(bits)
    if floor == "tiny":
        return MIN_SCALE
    try:
        value = float(floor)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0.0:
        raise ValueError(f"quantizer.scale_floor must be one of {SCALE_FLOORS} or a positive number, "
                         f"got {floor!r}")
    return value


def check_choice(field: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"quantizer.{field} must be one of {tuple(allowed)}, got {value!r}")


def row_quantiles(abs_w: Tensor, quantiles: Sequence[float]) -> Tensor:
    """Linear-interpolated quantiles of each row, exactly as torch.quantile computes them (the rank
    q * (K - 1) and its fraction in the input's dtype, then torch.lerp): [..., R, K] -> [C, ..., R].

    Bit-equal to torch.quantile matters: the record clips at these values, and a last-bit difference
    flips a code sitting at a .5 boundary. (torch.quantile itself sorts whole rows and refuses inputs
    over 2**24 elements.)
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
        rank = torch.tensor(q, dtype=abs_w.dtype) * (k - 1)
        lo = int(rank)
        hi = min(int(torch.ceil(rank)), k - 1)
        out.append(torch.lerp(ordered[..., lo - lowest], ordered[..., hi - lowest], rank - lo))
    return torch.stack(out)


def candidate_scales(w: Tensor, bits: int, quantiles: Sequence[float], floor: str | float = "record"
                     ) -> Tensor:
    """fp16-representable per-row scales, one set per clip quantile: [..., R, K] -> [C, ..., R]."""
    clip = row_quantiles(w.abs().float(), quantiles)
    if not torch.isfinite(clip).all():
        raise ValueError("weights contain inf/nan: cannot choose quantisation scales")
    scale = (clip / qmax_for_bits(bits)).clamp(min=scale_floor_value(floor, bits))
    if (scale > torch.finfo(torch.float16).max).any():
        raise ValueError(f"a row's scale {scale.max().item():.3g} does not fit fp16 storage")
    return scale.half().to(w.dtype if w.dtype == torch.float64 else torch.float32)


def quantize(w: Tensor, scale: Tensor, qmax: int) -> Tensor:
    """Round-half-even of w / scale clamped to [-qmax, qmax]; scale broadcasts against w."""
    return torch.clamp(torch.round(w / scale), -qmax, qmax)


def select_candidates(err: Tensor, clip_select: str, segments: Sequence[int] | None = None) -> Tensor:
    """Index of the kept clip candidate of every row, from squared errors err [..., C, R] -> [..., R].

    row_hessian: each row its own argmin. matrix_mse: one candidate per matrix, the least summed error
    (argmin of the mean, the matrix size being fixed); `segments` are the row counts of matrices
    stacked along R (None: one matrix). argmin keeps the first minimum: ties go to the earlier quantile.
    """
    check_choice("clip_select", clip_select, CLIP_SELECTS)
    if clip_select != "matrix_mse":  # row_hessian; SDClip has a single candidate, argmin is 0
        return err.argmin(-2)
    segments = list(segments) if segments is not None else [err.shape[-1]]
    if sum(segments) != err.shape[-1]:
        raise ValueError(f"row segments {segments} do not add up to the {err.shape[-1]} rows")
    parts = []
    for chunk in err.split(segments, dim=-1):
        best = chunk.sum(-1).argmin(-1)  # [...]
        parts.append(best.unsqueeze(-1).expand(*chunk.shape[:-2], chunk.shape[-1]))
    return torch.cat(parts, dim=-1)


def rtn_clip_search(w: Tensor, bits: int, quantiles: Sequence[float] = DEFAULT_CLIP_QUANTILES,
                    floor: str | float = "record", clip_select: str = "matrix_mse") -> tuple[Tensor, Tensor]:
    """Round-to-nearest per row with the clip search (`clip_select`: one quantile per matrix or per row).

    Returns (q int8 [R, K], scale fp32 [R]). All candidates are evaluated in one batched pass.
    """
    if w.ndim != 2:
        raise ValueError(f"rtn_clip_search expects a 2-D weight, got shape {tuple(w.shape)}")
    qmax = qmax_for_bits(bits)
    w = w.float()
    scales = candidate_scales(w, bits, quantiles, floor)  # [C, R]
    q = quantize(w.unsqueeze(0), scales.unsqueeze(-1), qmax)  # [C, R, K]
    err = (w.unsqueeze(0) - q * scales.unsqueeze(-1)).square().sum(-1)  # [C, R]
    best = select_candidates(err, clip_select)  # [R]
    rows = torch.arange(w.shape[0])
    return q[best, rows].to(torch.int8), scales[best, rows]


def percentile_per_row(w: Tensor, bits: int, quantile: float = RECORD_INT8_QUANTILE
                       ) -> tuple[Tensor, Tensor]:
    """The record's int8 rule: clip each row at one quantile of |w|, scale max(clip / qmax, 1/qmax).

    Unlike the clip search, the codes are rounded against the fp32 scale and only then is the scale
    stored as fp16 (so the loader's fp16 scale differs from the one the codes were chosen for by up
    to one fp16 rounding: the record's behaviour, kept for parity). Returns (q int8, scale fp32 [R]
    holding fp16-exact values).
    """
    if w.ndim != 2:
        raise ValueError(f"percentile_per_row expects a 2-D weight, got shape {tuple(w.shape)}")
    qmax = qmax_for_bits(bits)
    w = w.float()
    clip = row_quantiles(w.abs(), [quantile])[0]  # [R]
    if not torch.isfinite(clip).all():
        raise ValueError("weights contain inf/nan: cannot choose quantisation scales")
    scale = (clip / qmax).clamp(min=1.0 / qmax)
    clipped = torch.maximum(torch.minimum(w, clip[:, None]), -clip[:, None])
    q = quantize(clipped, scale[:, None], qmax)
    return q.to(torch.int8), scale.half().float()


def int8_row_absmax(w: Tensor) -> tuple[Tensor, Tensor]:
    """int8 per row, scale max|row| / 127 stored fp16, codes rounded against that fp16 scale (the
    frontier's attention-gate rule, spec 5.3). An all-zero row keeps scale 0 and codes 0."""
    if w.ndim != 2:
        raise ValueError(f"int8 per-row quantisation expects a 2-D weight, got shape {tuple(w.shape)}")
    w = w.float()
    if not torch.isfinite(w).all():
        raise ValueError("weights contain inf/nan: cannot choose quantisation scales")
    scale = (w.abs().amax(-1) / 127.0).half().float()
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(w / safe[:, None]), -127, 127)
    return q.to(torch.int8), scale
