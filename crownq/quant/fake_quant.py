"""Training-time quantisation: per-row round-to-nearest, fake quantisation for late QAT, CROWN-Q penalty.

`rtn_per_row` is the one reference rounding shared with export: the fake-quantised forward value of a
matrix is exactly its round-to-nearest dequantisation, so what QAT trains against is what RTN exports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

# A zero row would give scale 0 and 0/0 codes; any positive floor keeps its codes at 0.
_MIN_SCALE = 1e-12


def max_code(bits: int) -> int:
    """Largest code of a symmetric signed grid: 31 for int6 (codes -31..31), 127 for int8."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"quantisation bits must be an int in 2..8, got {bits!r}")
    return (1 << (bits - 1)) - 1


def per_row_scale(w: Tensor, bits: int, floor: float = 0.0) -> Tensor:
    """scale[r] = max(max|w[r, :]| / max_code(bits), floor), shape [rows, 1] (fp32).

    The record floors every row's scale at 1/max_code (`quantizer.scale_floor: record`): rows whose
    weights are all below 1 get a coarser grid than their own maximum asks for (fewer distinct codes,
    fewer bytes after compression).
    """
    if w.ndim != 2:
        raise ValueError(f"per-row quantisation needs a 2-D matrix, got shape {tuple(w.shape)}")
    row_max = w.detach().float().abs().amax(dim=1, keepdim=True)
    return (row_max / max_code(bits)).clamp_min(max(floor, _MIN_SCALE))


def rtn_per_row(w: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Round-to-nearest per-row symmetric quantisation -> (q int8 [rows, cols], scale fp32 [rows]).

    Dequantise with `q.float() * scale[:, None]`. Ties round half to even (torch.round).
    """
    scale = per_row_scale(w, bits)
    limit = max_code(bits)
    q = torch.round(w.detach().float() / scale).clamp_(-limit, limit).to(torch.int8)
    return q, scale.squeeze(1)


def soft_round(x: Tensor, temperature: float) -> Tensor:
    """A differentiable stand-in for round(): floor(x) + sigmoid((frac(x) - 1/2) / temperature).

    It tends to round() as temperature -> 0; its slope peaks (1 / (4 * temperature)) half-way between
    grid points and is small next to them, so gradients mostly move weights that are close to flipping.
    """
    floor = torch.floor(x)
    return floor + torch.sigmoid((x - floor - 0.5) / temperature)


def make_fake_quant(bits: int, temperature: float | None = None, floor: float = 0.0
                    ) -> Callable[[Tensor], Tensor]:
    """w -> fake-quantised w: forward value = RTN dequantisation of w (hard rounding, per row, the
    row scale floored at `floor`).

    temperature None or 0: straight-through gradient (d out / d w = 1): the record's gradient
    (`quantizer.qat_gradient: ste`; its soft-round term is detached, so its temperature changes nothing).
    temperature > 0: the gradient of the soft-round surrogate at that temperature (`soft_round`).
    The per-row scale is treated as a constant in the backward pass.
    """
    limit = max_code(bits)
    if temperature is not None and temperature < 0:
        raise ValueError(f"soft-round temperature must be >= 0, got {temperature}")

    def fake_quant(w: Tensor) -> Tensor:
        scale = per_row_scale(w, bits, floor).to(w.dtype)
        x = w / scale
        hard = torch.round(x).clamp(-limit, limit)
        if temperature:
            surrogate = soft_round(x, temperature)
        else:
            surrogate = x
        # Value exactly hard * scale (s - s == 0 in floating point), gradient that of surrogate * scale.
        return (hard + (surrogate - surrogate.detach())) * scale

    fake_quant.bits = bits  # type: ignore[attr-defined]
    fake_quant.temperature = temperature  # type: ignore[attr-defined]
    fake_quant.floor = floor  # type: ignore[attr-defined]
    return fake_quant


def crownq_penalty(weights: Iterable[Tensor], divisor: float) -> Tensor:
    """sum over matrices, sum over rows of mean(w_row^2) * (max|w_row| / divisor)^2 / 12.

    (max/divisor)^2 / 12 is the variance of uniform rounding noise with step max/divisor; weighting it by
    the row's mean square penalises rows whose quantisation error will be large relative to their signal.
    The caller multiplies by lambda. Gradients flow through both factors.
    """
    if divisor <= 0:
        raise ValueError(f"quantizer.crownq_divisor must be > 0, got {divisor}")
    total: Tensor | None = None
    for w in weights:
        if w.ndim != 2:
            raise ValueError(f"CROWN-Q penalty needs 2-D matrices, got shape {tuple(w.shape)}")
        w32 = w.to(torch.promote_types(w.dtype, torch.float32))  # fp32 at least (bf16 weights)
        mean_sq = w32.square().mean(dim=1)
        # The record clamps row maxima at 1e-10 (only an all-zero row, e.g. a zero-initialised output
        # projection, reaches it; its term is 0 either way).
        step = w32.abs().amax(dim=1).clamp_min(1e-10) / divisor
        term = (mean_sq * step.square() / 12.0).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("crownq_penalty got no matrices")
    return total
