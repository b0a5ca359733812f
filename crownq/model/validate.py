"""Checks an ArchConfig before anything is built, so a bad combination fails with the field named."""

from __future__ import annotations

import dataclasses
from typing import Any

from crownq.config.arch import ArchConfig

MLP_ACTIVATIONS = ("leaky_relu2", "relu2")
ATTN_BACKENDS = ("auto", "fa3", "fa2", "sdpa")
CUDA_EMBEDDING_DTYPES = ("bf16", "fp32")
FINAL_LANES = ("mean", "attn", "mlp")
ATTN_GATES = ("none", "sparse")


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
    if cfg.rope_ref_len < 0:
        _fail("rope_ref_len", cfg.rope_ref_len, "0 (fixed RoPE base) or a positive reference length")
    if len(cfg.value_residual_init) != 2:
        _fail("value_residual_init", list(cfg.value_residual_init),
              "two numbers: the initial weights of layer 0's values and of the layer's own values")
    if cfg.orthogonal_min_dim < 1:
        _fail("orthogonal_min_dim", cfg.orthogonal_min_dim, "a positive matrix side")
    if cfg.cuda_embedding_dtype not in CUDA_EMBEDDING_DTYPES:
        _fail("cuda_embedding_dtype", cfg.cuda_embedding_dtype, f"one of {CUDA_EMBEDDING_DTYPES}")
    validate_frontier(cfg)


def validate_frontier(cfg: ArchConfig) -> None:
    """The frontier switches (docs/frontier.md): ranges and the relations between them."""
    from crownq.model.recurrence import encoder_decoder

    if cfg.num_loops < 0:
        _fail("num_loops", cfg.num_loops, "0 (no depth recurrence) or a positive number of extra passes")
    if cfg.num_loops and not 0 <= cfg.loop_start <= cfg.loop_end < cfg.num_layers:
        _fail("loop_start", [cfg.loop_start, cfg.loop_end],
              f"0 <= arch.loop_start <= arch.loop_end < arch.num_layers={cfg.num_layers}")
    if not 0 <= cfg.loop_enable_at < 1:
        _fail("loop_enable_at", cfg.loop_enable_at, "a training fraction in [0, 1)")
    if cfg.parallel_final_lane not in FINAL_LANES:
        _fail("parallel_final_lane", cfg.parallel_final_lane, f"one of {FINAL_LANES}")
    if cfg.parallel_start_layer >= cfg.num_layers or cfg.parallel_start_layer < -1:
        _fail("parallel_start_layer", cfg.parallel_start_layer,
              f"-1 (off) or a layer index in [0, {cfg.num_layers - 1}]")
    if cfg.parallel_start_layer >= 0:
        for looping in (False, True):
            enc, dec = encoder_decoder(cfg, looping)
            first = next((j for j, i in enumerate(dec) if i >= cfg.parallel_start_layer), len(dec))
            if any(i >= cfg.parallel_start_layer for i in enc) or any(
                    i < cfg.parallel_start_layer for i in dec[first:]):
                _fail("parallel_start_layer", cfg.parallel_start_layer,
                      f"a layer after every encoder layer and after the looped layers (encoder {enc}, "
                      f"decoder {dec} with looping {'on' if looping else 'off'})")
    if cfg.smear_window < 0 or cfg.smear_window > cfg.model_dim:
        _fail("smear_window", cfg.smear_window, f"0 (per-channel gate) or a window in [1, {cfg.model_dim}]")
    if cfg.smear_window and not cfg.smear_gate:
        _fail("smear_window", cfg.smear_window, "0 unless arch.smear_gate is true")
    if not 0 <= cfg.bos_id < cfg.vocab_size:
        _fail("bos_id", cfg.bos_id, f"a token id in [0, arch.vocab_size={cfg.vocab_size})")
    if cfg.attn_gate not in ATTN_GATES:
        _fail("attn_gate", cfg.attn_gate, f"one of {ATTN_GATES}")
    if cfg.attn_gate != "none" and not 1 <= cfg.attn_gate_window <= cfg.model_dim:
        _fail("attn_gate_window", cfg.attn_gate_window, f"a window in [1, arch.model_dim={cfg.model_dim}]")
    if cfg.attn_gate_init_std < 0:
        _fail("attn_gate_init_std", cfg.attn_gate_init_std, "a standard deviation >= 0")
    if cfg.doc_max_len < 0:
        _fail("doc_max_len", cfg.doc_max_len, "0 (no cut) or a positive segment length")
