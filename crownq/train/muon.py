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


def newton_schulz_orthogonalize(g: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate U V^T of the SVD g = U S V^T. bf16 on CUDA (tensor cores), fp32 elsewhere."""
    if g.ndim != 2:
        raise ValueError(f"Newton-Schulz needs a 2-D matrix, got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    if transposed:
        x = x.T
    return x


class Muon(torch.optim.Optimizer):
    """Muon with Nesterov momentum, decoupled weight decay and update sharding across ranks.

    update = NS(g + m * buf) * sqrt(max(1, rows / cols)); p <- p * (1 - lr * wd) - lr * update.
    Gradients must already be identical on all ranks (all-reduced) when `step` is called.
    """

    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5,
                 weight_decay: float = 0.0, nesterov: bool = True, rank: int = 0, world_size: int = 1):
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

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim signature
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if not params:
                continue
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            updates = torch.zeros(sum(p.numel() for p in params), dtype=torch.float32,
                                  device=params[0].device)
            offset = 0
            for i, p in enumerate(params):
                n = p.numel()
                if p.grad is not None:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf.mul_(mom).add_(p.grad)
                    if i % self.world_size == self.rank:
                        g = p.grad.add(buf, alpha=mom) if group["nesterov"] else buf
                        u = newton_schulz_orthogonalize(g, group["backend_steps"])
                        u = u.float() * max(1.0, p.size(0) / p.size(1)) ** 0.5
                        updates[offset:offset + n] = u.flatten()
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
