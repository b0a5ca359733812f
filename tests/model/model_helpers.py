"""Small model configs for fast CPU tests (every record feature on unless a test turns it off)."""

from __future__ import annotations

import dataclasses

import torch

from crownq.config.arch import ArchConfig
from crownq.model import GPT, build_model

VOCAB = 64


def small_cfg(**overrides) -> ArchConfig:
    base = ArchConfig(
        name="test", vocab_size=VOCAB, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=3.0,
        mlp_activation="leaky_relu2", xsa_last_n=2, value_residual=True, bigram_vocab=48, bigram_dim=16,
        ve_layers=[2, 3], ve_dim=8, rope_dims=4, ln_scale=True, smear_gate=True, unet_skips=True,
        tie_embeddings=True, logit_softcap=30.0, attn_backend="sdpa",
    )
    return dataclasses.replace(base, **overrides)


def build(seed: int = 0, randomize: bool = True, **overrides) -> GPT:
    """A small model; `randomize` perturbs every parameter so zero-initialised paths are live too."""
    torch.manual_seed(seed)
    model = build_model(small_cfg(**overrides))
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return model


def tokens(batch: int = 2, seq: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, seq), generator=g)
