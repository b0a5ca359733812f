"""Muon: momentum SGD whose update for each matrix is replaced by its nearest semi-orthogonal matrix.

The orthogonalisation (a quintic Newton-Schulz iteration) is the expensive part, so with several ranks
each rank orthogonalises a disjoint subset of the matrices and one all-reduce shares the results. The
cheap element-wise momentum is kept on every rank, so every rank holds the same optimizer state and a
checkpoint written by rank 0 is complete.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

# Quintic coefficients tuned (modded-nanogpt) to push all singular values into ~[0.7, 1.2] in 5 steps,
# trading exactness for speed: Muon only needs an approximately orthogonal update.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

# Polar Express (frontier spec 4.3): one (a, b, c) per iteration, applied in order; with steps > 5 only
# these five run (as in the frontier record), with steps < 5 the first `steps`.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
NS_VARIANTS = ("quintic", "polar_express")


def ns_schedule(variant: str, steps: int) -> list[tuple[float, float, float]]:
    """`train.muon_ns_coefficients`: the (a, b, c) of every Newton-Schulz iteration."""
    if variant == "quintic":
        return [NS_COEFFICIENTS] * steps
    if variant == "polar_express":
        return list(POLAR_EXPRESS_COEFFICIENTS[:steps])
    raise ValueError(f"train.muon_ns_coefficients must be one of {NS_VARIANTS}, got {variant!r}")


def row_normalize(u: Tensor, eps: float = 1e-7) -> Tensor:
    """MuonEq-R (frontier spec 4.2): each output row divided by max(its L2 norm, eps).

    The norm is computed in fp32, the division in u's own dtype (as the record does: a bf16 u is divided
    by its bf16-rounded norms). Dividing in fp32 and rounding once afterwards moves three frontier steps
    from ~1e-3 to ~4e-3 off the record's parameters (tests/parity/test_parity_frontier_optim.py).
    """
    norms = u.float().norm(dim=-1, keepdim=True).clamp_min(eps)
    return u / norms.to(u.dtype)


NS_DTYPES = ("auto", "bf16", "fp32")


def ns_dtype_for(name: str, device: torch.device) -> torch.dtype:
    """`train.muon_ns_dtype`: bf16 (the record, on every device), fp32, or auto (bf16 on CUDA, where
    tensor cores make it fast, fp32 elsewhere: CPU bf16 matmuls are slow and no more faithful)."""
    if name not in NS_DTYPES:
        raise ValueError(f"train.muon_ns_dtype must be one of {NS_DTYPES}, got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def newton_schulz_orthogonalize(g: Tensor, steps: int = 5, eps: float = 1e-7,
                                dtype: torch.dtype | None = None, variant: str = "quintic") -> Tensor:
    """Approximate U V^T of the SVD g = U S V^T, iterated in `dtype` (default: bf16 on CUDA, else fp32)."""
    if g.ndim != 2:
        raise ValueError(f"Newton-Schulz needs a 2-D matrix, got shape {tuple(g.shape)}")
    schedule = ns_schedule(variant, steps)
    x = g.to(dtype or (torch.bfloat16 if g.is_cuda else torch.float32))
    x = x / (x.norm() + eps)
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    for a, b, c in schedule:
        gram = x @ x.T
        # In bf16 the rounding order matters: the March record computes (c * gram) @ gram, the frontier's
        # Polar Express c * (gram @ gram) (measured: the other order is 5% off its golden outputs).
        poly = b * gram + (c * (gram @ gram) if variant == "polar_express" else c * gram @ gram)
        x = a * x + poly @ x
    if transposed:
        x = x.T
    return x


class Muon(torch.optim.Optimizer):
    """Muon with Nesterov momentum, decoupled weight decay and update sharding across ranks.

    update = NS(g + m * buf) * sqrt(max(1, rows / cols)); p <- p * (1 - lr * wd) - lr * update.
    Gradients must already be identical on all ranks (all-reduced) when `step` is called.
    With `row_normalize` (MuonEq-R, the frontier's Muon) g, buf and the row-normalised g + m * buf are in
    the Newton-Schulz dtype, as in the record; without it (the March record's Muon) the momentum stays in
    the gradient's dtype.
    """

    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5,
                 weight_decay: float = 0.0, nesterov: bool = True, rank: int = 0, world_size: int = 1,
                 ns_dtype: str = "auto", row_normalize: bool = False, ns_variant: str = "quintic"):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or backend_steps < 1:
            raise ValueError(f"Muon: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay} "
                             f"or backend_steps={backend_steps}")
        defaults = dict(lr=lr, momentum=momentum, backend_steps=backend_steps,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only takes 2-D matrices, got shape {tuple(p.shape)}")
        self.rank = rank
        self.world_size = world_size
        self.ns_dtype = ns_dtype
        self.row_norm = row_normalize  # MuonEq-R
        self.ns_variant = ns_variant
        ns_schedule(ns_variant, 1)  # a bad variant name fails here
        ns_dtype_for(ns_dtype, torch.device("cpu"))  # a bad name fails here, not at the first step

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim signature
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if not params:
                continue
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            # Updates are kept (and all-reduced) in the Newton-Schulz dtype, as the record does.
            dtype = ns_dtype_for(self.ns_dtype, params[0].device)
            updates = torch.zeros(sum(p.numel() for p in params), dtype=dtype, device=params[0].device)
            offset = 0
            for i, p in enumerate(params):
                n = p.numel()
                if p.grad is not None:
                    # The March record keeps momentum in the gradient's dtype (fp32); the frontier's
                    # MuonEq-R casts the gradient to bf16 first and keeps buffer, Nesterov sum and row
                    # normalisation in bf16 (frontier golden README, "One step, per matrix").
                    grad = p.grad.to(dtype) if self.row_norm else p.grad
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = torch.zeros_like(grad)
                    elif buf.dtype != grad.dtype:  # load_state_dict casts state to the param's dtype
                        buf = self.state[p]["momentum_buffer"] = buf.to(grad.dtype)
                    buf.mul_(mom).add_(grad)
                    if i % self.world_size == self.rank:
                        g = grad.add(buf, alpha=mom) if group["nesterov"] else buf
                        if self.row_norm:
                            g = row_normalize(g)
                        u = newton_schulz_orthogonalize(g, group["backend_steps"], dtype=dtype,
                                                        variant=self.ns_variant)
                        u = u * max(1.0, p.size(0) / p.size(1)) ** 0.5
                        updates[offset:offset + n] = u.flatten().to(dtype)
                offset += n
            if self.world_size > 1:
                # Every slot is written by exactly one rank and zero elsewhere, so the sum is exact.
                dist.all_reduce(updates)
            offset = 0
            for p in params:
                n = p.numel()
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(updates[offset:offset + n].view_as(p).to(p.dtype), alpha=-lr)
                offset += n
