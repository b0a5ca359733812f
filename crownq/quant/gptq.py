"""GPTQ, vectorised: act-order, Cholesky of the inverse Hessian, lazy block updates, per-row clip search.

Clip choice (`clip_select`, crownq/quant/rounding.py): `matrix_mse` (the record's) keeps ONE clip
quantile per matrix, the one whose GPTQ result has the least plain squared error |W - Q s|^2 over the
whole matrix; `row_hessian` lets each row keep its own, by the Hessian-weighted error. The clip
quantiles are taken from the weights as given (dead input columns included, as the record does),
before dead columns are zeroed.

Vectorisation (all results equal the plain column-by-column algorithm, see tests/quant/test_gptq.py):
- every clip candidate is run at once: GPTQ treats rows independently given the Hessian, so the C
  candidate scalings of a matrix are just C times as many rows; the Hessian-weighted error comes
  for free (sum of squared errors scaled by the Cholesky diagonal equals dW H dW^T), the plain one
  from the codes at the end;
- matrices with the same Hessian (q, k, v read the same input) are stacked along rows, and
  same-shaped problems of different layers are batched along a leading dimension (bmm);
- the working matrix is kept transposed ([K, N]) so a column update touches contiguous memory, and
  inside each outer block a second level of lazy updates keeps the rank-1 updates cache-sized.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from crownq.progress import Progress
from crownq.quant.rounding import (
    CLIP_SELECTS,
    DEFAULT_CLIP_QUANTILES,
    candidate_scales,
    check_choice,
    qmax_for_bits,
    quantize,
    select_candidates,
)
from crownq.quant.sdclip import SDCLIP_SELECTS, sdclip_scales

INNER_BLOCK = 16
MAX_DAMP_RETRIES = 6


@dataclass
class GPTQResult:
    q: Tensor  # int8 [L, R, K]
    scale: Tensor  # fp32 [L, R]
    error: Tensor  # [L, R] Hessian-weighted reconstruction error (dW H dW^T) of the kept candidate


GPTQ_PRECISIONS = ("fp64", "fp32")

def prepare_hessian(h: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    """Damped copy of a batch of Hessians [L, K, K] with dead columns (zero diagonal) made harmless.

    Returns (damped H, dead mask [L, K]). A dead input never fires, so its weight column is zeroed
    and its diagonal set to 1 (any positive value works: the column then quantises to exact zeros).
    """
    h = h.clone()
    diag = h.diagonal(dim1=-2, dim2=-1)
    dead = diag == 0
    diag[dead] = 1.0
    diag += damp * diag.mean(-1, keepdim=True)
    return h, dead


def inverse_cholesky_upper(h: Tensor, damp: float) -> Tensor:
    """Upper Cholesky factor U of H^-1 (H^-1 = U^T U), adding damping where a factorisation fails.

    (Measured: Cholesky -> cholesky_inverse -> Cholesky beats one Cholesky plus a triangular solve
    against the identity on CPU, as torch has no LAPACK trtri.)
    """
    h = h.clone()
    extra = damp if damp > 0 else 0.01
    for _ in range(MAX_DAMP_RETRIES + 1):
        chol, info = torch.linalg.cholesky_ex(h)
        failed = info != 0
        if not bool(failed.any()):
            u, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(chol), upper=True)
            failed = info != 0
            if not bool(failed.any()):
                return u
        # Only the failing problems get extra damping; the others must stay bit-identical.
        diag = h.diagonal(dim1=-2, dim2=-1)
        diag += extra * diag.abs().mean(-1, keepdim=True) * failed.unsqueeze(-1)
        extra *= 10
    raise torch.linalg.LinAlgError("GPTQ: Hessian is not positive definite even after extra damping")


def _quantize_block(wt: Tensor, u: Tensor, scale: Tensor, qmax: int, q_out: Tensor, loss: Tensor,
                    i1: int, i2: int, inner: int) -> None:
    """GPTQ columns [i1, i2) of wt [L, K, N] (transposed weights), updating wt in place.

    Columns after i2 receive their update lazily, in one matmul, at the end of the block.
    """
    w1 = wt[:, i1:i2].clone()
    err1 = torch.empty_like(w1)
    for j1 in range(0, i2 - i1, inner):
        j2 = min(j1 + inner, i2 - i1)
        for j in range(j1, j2):
            col = w1[:, j]
            q = quantize(col, scale, qmax)
            d = u[:, i1 + j, i1 + j].unsqueeze(-1)
            e = (col - q * scale) / d
            q_out[:, i1 + j] = q
            err1[:, j] = e
            if j + 1 < j2:
                w1[:, j + 1:j2] -= u[:, i1 + j, i1 + j + 1:i1 + j2].unsqueeze(-1) * e.unsqueeze(1)
        if j2 < i2 - i1:
            w1[:, j2:] -= u[:, i1 + j1:i1 + j2, i1 + j2:i2].transpose(1, 2) @ err1[:, j1:j2]
    loss += err1.square().sum(1)
    if i2 < wt.shape[1]:
        wt[:, i2:].baddbmm_(u[:, i1:i2, i2:].transpose(1, 2), err1, alpha=-1.0)


def gptq_batch(w: Tensor, h: Tensor, bits: int, quantiles: Sequence[float] = DEFAULT_CLIP_QUANTILES,
               block_size: int = 128, damp: float = 0.01, act_order: bool = True,
               floor: str | float = "record", clip_select: str = "matrix_mse",
               segments: Sequence[int] | None = None, sd_k: Tensor | None = None,
               sd_lambda: float = 0.0) -> GPTQResult:
    """GPTQ of L independent problems: weights w [L, R, K] with Hessians h [L, K, K] (X^T X of inputs).

    `segments`: row counts of the matrices stacked along R in every problem (for matrix_mse, each
    matrix picks its own clip quantile); None = each problem is one matrix. SDClip (`clip_select`
    sdclip | sdclip_hessian) needs `sd_k` [L, R], each row's k; sdclip_hessian uses `sd_lambda`.
    """
    if w.ndim != 3 or h.ndim != 3 or h.shape[0] != w.shape[0] or h.shape[1:] != (w.shape[2], w.shape[2]):
        raise ValueError(f"gptq_batch: weights {tuple(w.shape)} and Hessians {tuple(h.shape)} do not match "
                         "(expected [L, R, K] and [L, K, K])")
    if block_size < 1:
        raise ValueError(f"quantizer.block_size must be >= 1, got {block_size}")
    check_choice("clip_select", clip_select, CLIP_SELECTS)
    dtype = torch.float64 if w.dtype == torch.float64 else torch.float32
    n_layers, rows, k = w.shape
    qmax = qmax_for_bits(bits)
    h, dead = prepare_hessian(h.to(dtype), damp)
    if clip_select in SDCLIP_SELECTS:
        if sd_k is None or tuple(sd_k.shape) != (n_layers, rows):
            raise ValueError(f"gptq_batch: clip_select={clip_select} needs sd_k of shape {(n_layers, rows)}")
        # One candidate: the row scale is fixed before GPTQ, from the weights as given (dead columns
        # included) and, for the Hessian-aware variant, the damped Hessian's diagonal.
        hdiag = h.diagonal(dim1=-2, dim2=-1) if clip_select == "sdclip_hessian" else None
        scales = sdclip_scales(w.to(dtype), sd_k.to(w.device, dtype), bits, hdiag, sd_lambda).unsqueeze(0)
    else:
        scales = candidate_scales(w.to(dtype), bits, quantiles, floor)  # [C, L, R], from the weights as given
    w = w.to(dtype).masked_fill(dead.unsqueeze(1), 0.0)
    n_cand = scales.shape[0]
    if act_order:
        perm = torch.argsort(h.diagonal(dim1=-2, dim2=-1), dim=-1, descending=True, stable=True)
        layer = torch.arange(n_layers, device=w.device)
        w = w[layer[:, None, None], torch.arange(rows, device=w.device)[None, :, None], perm[:, None, :]]
        h = h[layer[:, None, None], perm[:, :, None], perm[:, None, :]]
    u = inverse_cholesky_upper(h, damp)
    w0t = w.transpose(1, 2)  # [L, K, R]: the target of the plain squared error
    # Candidates become extra rows: [L, K, C*R] (transposed, so each column is contiguous).
    wt = w0t.repeat(1, 1, n_cand).contiguous()
    scale_flat = scales.permute(1, 0, 2).reshape(n_layers, n_cand * rows)
    q_t = torch.empty_like(wt)
    loss = torch.zeros(n_layers, n_cand * rows, dtype=dtype, device=w.device)
    for i1 in range(0, k, block_size):
        _quantize_block(wt, u, scale_flat, qmax, q_t, loss, i1, min(i1 + block_size, k), INNER_BLOCK)
    loss = loss.view(n_layers, n_cand, rows)
    q_all = q_t.view(n_layers, k, n_cand, rows)
    if clip_select == "matrix_mse":
        recon = q_all * scales.permute(1, 0, 2).unsqueeze(1)  # [L, K, C, R]
        err = (w0t.unsqueeze(2) - recon).square().sum(1)  # [L, C, R]
        del recon
    else:
        err = loss
    best = select_candidates(err, clip_select, segments)  # [L, R]
    q = torch.gather(q_all, 2, best.view(n_layers, 1, 1, rows).expand(-1, k, 1, -1)).squeeze(2)
    q = q.transpose(1, 2)  # [L, R, K] in act-order column order
    if act_order:
        q = torch.empty_like(q).scatter_(2, perm.unsqueeze(1).expand(-1, rows, -1), q)
    scale = torch.gather(scales.permute(1, 0, 2), 1, best.unsqueeze(1)).squeeze(1)
    return GPTQResult(q.to(torch.int8), scale.float(), torch.gather(loss, 1, best.unsqueeze(1)).squeeze(1))


def _share_groups(names: list[str], hessians: dict[str, Tensor]) -> list[list[str]]:
    """Partition names into groups whose Hessians are identical (same object or bit-equal)."""
    groups: list[list[str]] = []
    for name in names:
        h = hessians[name]
        for g in groups:
            ref = hessians[g[0]]
            if ref is h or (ref.shape == h.shape and torch.equal(ref, h)):
                g.append(name)
                break
        else:
            groups.append([name])
    return groups


def gptq_tensors(weights: dict[str, Tensor], hessians: dict[str, Tensor], bits: dict[str, int],
                 quantiles: Sequence[float] = DEFAULT_CLIP_QUANTILES, block_size: int = 128,
                 damp: float = 0.01, act_order: bool = True, device: torch.device | str | None = None,
                 floor: str | float = "record", clip_select: str = "matrix_mse",
                 sd_k: dict[str, float] | None = None, sd_lambda: float = 0.0, precision: str = "fp64"
                 ) -> dict[str, tuple[Tensor, Tensor]]:
    """GPTQ of many named 2-D weights, batched. Returns name -> (q int8 [R, K], scale fp32 [R]) on CPU.

    `precision` (`quantizer.gptq_precision`): fp64 (default) or fp32 arithmetic for the Cholesky and
    the error feedback. In fp32 the codes depend on the BLAS's summation order: on the record's golden
    matrix m1, one CPU thread instead of two flips 68 of 49,152 codes (one flip moves the error fed to
    the next columns). In fp64 both thread counts give exactly the record's codes.

    SDClip (`clip_select` sdclip | sdclip_hessian): `sd_k` gives each weight's k (its group's)."""
    if clip_select in SDCLIP_SELECTS and (sd_k is None or set(weights) - set(sd_k)):
        raise ValueError(f"GPTQ: clip_select={clip_select} needs an SDClip k for every weight")
    for name, w in weights.items():
        if name not in hessians:
            raise KeyError(f"GPTQ: no Hessian for weight '{name}' (collect_hessians covers "
                           "model.quantizable_linears())")
        h = hessians[name]
        if w.ndim != 2 or h.shape != (w.shape[1], w.shape[1]):
            raise ValueError(f"GPTQ: weight '{name}' {tuple(w.shape)} needs a [{w.shape[-1]}, {w.shape[-1]}] "
                             f"Hessian, got {tuple(h.shape)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if precision not in GPTQ_PRECISIONS:
        raise ValueError(f"quantizer.gptq_precision must be one of {GPTQ_PRECISIONS}, got {precision!r}")
    dtype = torch.float64 if precision == "fp64" else torch.float32
    # Same Hessian and bit width -> one problem with the matrices' rows stacked.
    problems: dict[tuple[int, tuple[int, ...], int], list[list[str]]] = {}
    by_bits: dict[int, list[str]] = {}
    for name in weights:
        by_bits.setdefault(bits[name], []).append(name)
    for b, names in by_bits.items():
        for group in _share_groups(names, hessians):
            seg = tuple(weights[n].shape[0] for n in group)
            problems.setdefault((b, seg, weights[group[0]].shape[1]), []).append(group)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    shown = Progress("gptq", total=len(weights), unit="matrices")  # export runs on rank 0 only
    for (b, _seg, _k), groups in problems.items():
        w = torch.stack([torch.cat([weights[n].to(dtype) for n in g]) for g in groups]).to(device)
        h = torch.stack([hessians[g[0]].to(dtype) for g in groups]).to(device)
        # Same-shaped problems are batched only when their matrices stack alike (matrix_mse picks
        # one clip per matrix, so the row segments must be shared by every problem of the batch).
        segments = [weights[n].shape[0] for n in groups[0]]
        row_k = None
        if clip_select in SDCLIP_SELECTS:
            row_k = torch.stack([torch.cat([torch.full((weights[n].shape[0],), float(sd_k[n])) for n in g])
                                 for g in groups])
        res = gptq_batch(w, h, b, quantiles, block_size, damp, act_order, floor, clip_select, segments,
                         row_k, sd_lambda)
        for li, g in enumerate(groups):
            r0 = 0
            for n in g:
                r1 = r0 + weights[n].shape[0]
                out[n] = (res.q[li, r0:r1].cpu(), res.scale[li, r0:r1].cpu())
                r0 = r1
        shown.update(sum(len(g) for g in groups))
    shown.close()
    return out
