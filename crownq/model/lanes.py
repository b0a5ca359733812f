"""Parallel residual lanes (frontier spec §3.7): from a start layer the stream splits into an attention
lane and an MLP lane; each block reads its lane and writes into both, with learned weights.

    A = attn_scale * Attn(RMSNorm(m0*lane0 + m1*x0) * s)      (attention reads lane 0, mixed with x0)
    M = mlp_scale  * MLP(RMSNorm(lane1) * s)                    (the MLP reads lane 1 only)
    lane_k <- rho[k] * lane_k + P[attn, k] * A + P[mlp, k] * M
The head reads mean(lane0, lane1), lane0 (`attn`) or lane1 (`mlp`).
"""

from __future__ import annotations

from torch import Tensor

from crownq.model.layers import rms_norm


def parallel_block(block, lane0: Tensor, lane1: Tensor, x0: Tensor, v0: Tensor | None, v_embed: Tensor | None,
                   resid: Tensor, post: Tensor, attn_ctx=None) -> tuple[Tensor, Tensor, Tensor]:
    """One block on two lanes; resid [2] and post [2 (attn, mlp), 2 (lane)] are this layer's lambdas.
    Returns (lane0, lane1, this layer's raw values)."""
    u = lane0
    if block.resid_mix is not None:
        mix = block.resid_mix.to(lane0.dtype)
        u = mix[0] * lane0 + mix[1] * x0
    attn_out, raw_v = block.attn(rms_norm(u) * block.norm_scale, v0, v_embed, attn_ctx)
    a = block.attn_scale.to(u.dtype) * attn_out
    m = block.mlp_scale.to(u.dtype) * block.mlp(rms_norm(lane1) * block.norm_scale)
    resid, post = resid.to(u.dtype), post.to(u.dtype)
    new0 = resid[0] * lane0 + post[0, 0] * a + post[1, 0] * m
    new1 = resid[1] * lane1 + post[0, 1] * a + post[1, 1] * m
    return new0, new1, raw_v


def combine_lanes(lane0: Tensor, lane1: Tensor, mode: str) -> Tensor:
    if mode == "mean":
        return 0.5 * (lane0 + lane1)
    if mode == "attn":
        return lane0
    if mode == "mlp":
        return lane1
    raise ValueError(f"arch.parallel_final_lane must be mean, attn or mlp, got {mode!r}")
