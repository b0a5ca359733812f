"""Checks an ArchConfig before anything is built, so a bad combination fails with the field named."""

from __future__ import annotations

import dataclasses
from typing import Any

from crownq.config.arch import ArchConfig

MLP_ACTIVATIONS = ("leaky_relu2", "relu2")
ATTN_BACKENDS = ("auto", "fa3", "fa2", "sdpa")


def _fail(field_name: str, value: Any, expected: str) -> None:
    raise ValueError(f"arch.{field_name}={value!r} is invalid: expected {expected}")


def as_arch_config(cfg: Any) -> ArchConfig:
    """Accepts an ArchConfig, an OmegaConf node of the `arch` group, or a plain mapping."""
    if isinstance(cfg, ArchConfig):
        return cfg
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a hard dependency, but the model need not be
        pass
    if not isinstance(cfg, dict):
        raise TypeError(f"arch config must be an ArchConfig, DictConfig or dict, got {type(cfg).__name__}")
    known = {f.name for f in dataclasses.fields(ArchConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown arch field(s) {unknown}; known fields: {sorted(known)}")
    return ArchConfig(**cfg)


def validate_arch(cfg: ArchConfig) -> None:
    """Raises ValueError naming `arch.<field>` for the first invalid setting found."""
    if cfg.vocab_size < 2:
        _fail("vocab_size", cfg.vocab_size, "at least 2")
    if cfg.num_layers < 1:
        _fail("num_layers", cfg.num_layers, "at least 1")
    if cfg.model_dim < 1:
        _fail("model_dim", cfg.model_dim, "a positive width")
    if cfg.num_heads < 1 or cfg.model_dim % cfg.num_heads:
        _fail("num_heads", cfg.num_heads, f"a positive divisor of arch.model_dim={cfg.model_dim}")
    if cfg.num_kv_heads < 1 or cfg.num_heads % cfg.num_kv_heads:
        _fail("num_kv_heads", cfg.num_kv_heads, f"a positive divisor of arch.num_heads={cfg.num_heads}")
    head_dim = cfg.model_dim // cfg.num_heads
    if head_dim % 2:
        _fail("num_heads", cfg.num_heads,
              f"a head count giving an even head dim (arch.model_dim / arch.num_heads = {head_dim})")
    if cfg.rope_dims < 0 or cfg.rope_dims > head_dim or cfg.rope_dims % 2:
        _fail("rope_dims", cfg.rope_dims, f"an even number in [0, head_dim={head_dim}] (0 = full head dim)")
    if cfg.rope_base <= 0:
        _fail("rope_base", cfg.rope_base, "a positive base")
    hidden = cfg.mlp_mult * cfg.model_dim
    if cfg.mlp_mult <= 0 or hidden != int(hidden):
        _fail("mlp_mult", cfg.mlp_mult, "a positive multiplier with mlp_mult * model_dim a whole number")
    if cfg.mlp_activation not in MLP_ACTIVATIONS:
        _fail("mlp_activation", cfg.mlp_activation, f"one of {MLP_ACTIVATIONS}")
    if not 0 <= cfg.xsa_last_n <= cfg.num_layers:
        _fail("xsa_last_n", cfg.xsa_last_n, f"a layer count in [0, arch.num_layers={cfg.num_layers}]")
    if cfg.bigram_vocab != 0 and cfg.bigram_vocab < 2:
        _fail("bigram_vocab", cfg.bigram_vocab, "0 (off) or at least 2 buckets")
    if cfg.bigram_vocab and cfg.bigram_dim < 1:
        _fail("bigram_dim", cfg.bigram_dim, "a positive width")
    bad_ve = [i for i in cfg.ve_layers if not 0 <= i < cfg.num_layers]
    if bad_ve:
        _fail("ve_layers", list(cfg.ve_layers),
              f"layer indices in [0, {cfg.num_layers - 1}] (arch.num_layers={cfg.num_layers}); "
              f"{bad_ve} are not")
    if len(set(cfg.ve_layers)) != len(cfg.ve_layers):
        _fail("ve_layers", list(cfg.ve_layers), "distinct layer indices")
    if cfg.ve_layers and cfg.ve_dim < 1:
        _fail("ve_dim", cfg.ve_dim, "a positive width")
    if cfg.logit_softcap < 0:
        _fail("logit_softcap", cfg.logit_softcap, "0 (off) or a positive cap")
    if cfg.tied_embed_init_std <= 0:
        _fail("tied_embed_init_std", cfg.tied_embed_init_std, "a positive standard deviation")
    if cfg.attn_backend not in ATTN_BACKENDS:
        _fail("attn_backend", cfg.attn_backend, f"one of {ATTN_BACKENDS}")
