"""A tiny frontier arch for the switch tests (every switch on; overrides turn parts off)."""

from __future__ import annotations

import torch

from crownq.config.arch import ArchConfig
from crownq.model import build_model


def tiny_frontier(**overrides) -> ArchConfig:
    base = dict(name="t", vocab_size=64, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2,
                mlp_mult=4.0, xsa_last_n=4, rope_dims=8, rope_ref_len=0, ln_scale=True, qk_gain_init=5.0,
                smear_gate=True, smear_window=12, smear_bos_mask=True, skip_gates=True, num_loops=1,
                loop_start=1, loop_end=2, parallel_start_layer=3, attn_gate="sparse", attn_gate_scale=0.5,
                doc_attention=True, attn_backend="sdpa", orthogonal_min_dim=16)
    base.update(overrides)
    return ArchConfig(**base)


def randomised(cfg: ArchConfig, seed: int = 0):
    """A model whose every parameter is random (zero-init gates and projections would hide bugs)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()
