"""Training FLOPs per token from the model's shapes, so a user can predict step time at a given MFU.

Counted: every matrix multiply, 2 FLOPs per multiply-add. Per token and layer application: the block's
six projections (2 x their weights) and attention's QK^T and AV (2 x 2 x heads x head_dim x context, with
the mean causal context (T + 1) / 2 of a full row: document-aware attention only lowers it); the side
projections (BigramHash, value embeddings) and the tied head (2 x vocab x width). Training = 3 x forward
(backward costs two forwards). Element-wise work (norms, gates, softmax) is left out: it is small next
to the matmuls and bandwidth-bound, so it does not scale with MFU anyway.
"""

from __future__ import annotations

from typing import Any

from crownq.model.recurrence import layer_sequence


def forward_flops_per_token(model: Any, seq_len: int, looping: bool) -> float:
    cfg = model.cfg
    head_dim = cfg.model_dim // cfg.num_heads
    per_layer = []
    for block in model.blocks:
        weights = sum(m.weight.numel() for m in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj,
                                                  block.attn.out_proj, block.mlp.fc, block.mlp.proj))
        attention = 2 * 2 * cfg.num_heads * head_dim * (seq_len + 1) / 2
        per_layer.append(2 * weights + attention)
    seq = layer_sequence(cfg.num_layers, cfg.num_loops, cfg.loop_start, cfg.loop_end, looping)
    total = sum(per_layer[i] for i in seq)
    for side in (model.bigram, model.value_embed):
        if side is not None and side.proj is not None:
            total += 2 * side.proj.weight.numel()
    total += 2 * cfg.vocab_size * cfg.model_dim  # the output head (tied or not)
    return float(total)


def training_flops_per_token(model: Any, seq_len: int, looping: bool) -> float:
    return 3.0 * forward_flops_per_token(model, seq_len, looping)
