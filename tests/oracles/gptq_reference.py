"""Plain, unvectorised GPTQ: the textbook column-by-column algorithm, one matrix and one clip at a time.

It exists only to check crownq/quant/gptq.py (tests/quant/test_gptq.py): no blocks, no lazy updates,
no batching, numpy's own quantile for the clip, and the reconstruction error computed directly as
dW H dW^T instead of from GPTQ's running loss.
"""

import numpy as np
import torch
from torch import Tensor

from crownq.quant.rounding import MIN_SCALE, qmax_for_bits


def plain_gptq(w: Tensor, h: Tensor, bits: int, quantiles, damp: float = 0.01, act_order: bool = True,
               dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Returns (q int8 [R, K], scale [R]): per row, the clip candidate with the least dW H dW^T."""
    qmax = qmax_for_bits(bits)
    w = w.to(dtype).clone()
    h = h.to(dtype).clone()
    k = w.shape[1]
    for i in range(k):
        if h[i, i] == 0:  # dead input: its column can be anything, make it exactly zero
            h[i, i] = 1.0
            w[:, i] = 0.0
    h += damp * torch.diagonal(h).mean() * torch.eye(k, dtype=dtype)
    order = list(range(k))
    if act_order:
        order = sorted(range(k), key=lambda c: -float(h[c, c]))  # Python's sort is stable
    wp = w[:, order]
    hp = h[order][:, order]
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hp)), upper=True)
    abs_np = w.abs().double().numpy()
    best_q, best_s, best_err = None, None, None
    for quantile in quantiles:
        clip = torch.tensor([np.quantile(row, quantile) for row in abs_np], dtype=dtype)
        s = torch.clamp(clip / qmax, min=MIN_SCALE).half().to(dtype)
        work = wp.clone()
        q = torch.zeros_like(work)
        for i in range(k):
            q[:, i] = torch.clamp(torch.round(work[:, i] / s), -qmax, qmax)
            e = (work[:, i] - q[:, i] * s) / u[i, i]
            work[:, i + 1:] -= e.unsqueeze(1) * u[i, i + 1:].unsqueeze(0)
        q_orig = torch.empty_like(q)
        q_orig[:, order] = q
        dw = w - q_orig * s.unsqueeze(1)
        err = ((dw @ h) * dw).sum(1)  # damped Hessian, the objective GPTQ minimises
        if best_err is None:
            best_q, best_s, best_err = q_orig, s, err
        else:
            better = err < best_err
            best_q = torch.where(better.unsqueeze(1), q_orig, best_q)
            best_s = torch.where(better, s, best_s)
            best_err = torch.where(better, err, best_err)
    return best_q.to(torch.int8), best_s
