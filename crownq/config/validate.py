"""`validate(cfg)`: every config value checked before any work, each error naming `group.field`, the bad
value and what is allowed.

Hydra's typed schema (crownq/config/*.py) already refuses unknown keys and wrong types at composition.
What a type cannot say (a closed set of names, a range, a relation between two fields) lives in ONE
table, `RULES`, keyed by the dotted field name. Adding a config field means adding one line here:

    "quantizer.new_switch": OneOf("record", "departure"),    # a closed set (record value first)
    "quantizer.new_factor": Range(0, 1, lo_open=True),      # a number in (0, 1]
    "data.some_path": FREE,                                 # free text: any value is fine

tests/integrity/test_validate_schema.py walks the schema and fails for any str/int/float field that has
no entry, so a new field cannot skip validation by accident. Checks that relate several fields are
functions in `CROSS_CHECKS`. This module imports no torch, so a typo is refused in well under a second.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """One or more config values are invalid; the message has one line per field."""


@dataclass(frozen=True)
class OneOf:
    """A closed set of names."""

    choices: tuple[Any, ...]

    def __init__(self, *choices: Any) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else "one of " + ", ".join(map(str, self.choices))

    def bad_example(self, value: Any) -> Any:
        return f"{value}_typo"


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (either side open with lo_open/hi_open; None = unbounded)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"a number in {'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}" \
               f"{')' if self.hi_open or self.hi is None else ']'}"

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return self.describe()
        low_bad = self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo))
        high_bad = self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))
        return self.describe() if low_bad or high_bad else None

    def bad_example(self, value: Any) -> Any:
        as_type = int if isinstance(value, int) else float
        if self.lo is not None:
            return as_type(self.lo) if self.lo_open else as_type(self.lo - 1)
        assert self.hi is not None, "a Range needs at least one bound"
        return as_type(self.hi) if self.hi_open else as_type(self.hi + 1)


@dataclass(frozen=True)
class Free:
    """No constraint beyond the schema's type (labels, paths, initial values)."""

    def problem(self, value: Any) -> str | None:
        return None


@dataclass(frozen=True)
class NameOrPositive:
    """One of a few names, or a positive number written as text (e.g. quantizer.scale_floor)."""

    names: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if value in self.names:
            return None
        try:
            if float(value) > 0:
                return None
        except (TypeError, ValueError):
            pass
        return "one of " + ", ".join(self.names) + " or a positive number"

    def bad_example(self, value: Any) -> Any:
        return "-1"


FREE = Free()
AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, lo_open=True)
FRACTION = Range(0, 1)
UNIT_OPEN = Range(0, 1, hi_open=True)  # [0, 1): decays, betas, training fractions
AUTO_CPU_CUDA = OneOf("auto", "cpu", "cuda")
AUTOCAST = OneOf("auto", "bf16", "off")
COMPILE = OneOf("auto", "on", "off")
BITS = Range(2, 8)  # the artifact stores codes as int8 bytes (crownq/quant/artifact.py reads 2..8)
# Equal to crownq.quant.codecs.CODEC_CHOICES (a test checks it); not imported so no codec loads here.
CODECS = ("lzma", "brotli", "zstd", "rans", "brotli_shuffle", "best")

RULES: dict[str, OneOf | Range | NameOrPositive | Free] = {
    "seed": Range(0, 2**32 - 1),  # numpy's seed range
    "sweep": FREE, "ablation": FREE, "rescore_from": FREE, "reexport_from": FREE, "allow_failed_seeds": FREE,
    # --- arch (the relations between fields are crownq.model.validate_arch's) ---
    "arch.name": FREE,
    "arch.vocab_size": Range(2),
    "arch.num_layers": AT_LEAST_1,
    "arch.model_dim": AT_LEAST_1,
    "arch.num_heads": AT_LEAST_1,
    "arch.num_kv_heads": AT_LEAST_1,
    "arch.mlp_mult": POSITIVE,
    "arch.mlp_activation": OneOf("leaky_relu2", "relu2"),
    "arch.xsa_last_n": AT_LEAST_0,
    "arch.bigram_vocab": AT_LEAST_0,
    "arch.bigram_dim": AT_LEAST_1,
    "arch.bigram_scale_init": FREE,
    "arch.ve_dim": AT_LEAST_1,
    "arch.ve_scale_init": FREE,
    "arch.rope_dims": AT_LEAST_0,
    "arch.rope_base": POSITIVE,
    "arch.rope_ref_len": AT_LEAST_0,
    "arch.qk_gain_init": FREE,
    "arch.logit_softcap": AT_LEAST_0,
    "arch.tied_embed_init_std": POSITIVE,
    "arch.orthogonal_min_dim": AT_LEAST_0,
    "arch.cuda_embedding_dtype": OneOf("bf16", "fp32"),
    "arch.attn_backend": OneOf("auto", "fa3", "fa2", "sdpa"),
    "arch.num_loops": AT_LEAST_0,
    "arch.loop_start": AT_LEAST_0,
    "arch.loop_end": AT_LEAST_0,
    "arch.loop_enable_at": UNIT_OPEN,
    "arch.parallel_start_layer": Range(-1),
    "arch.parallel_final_lane": OneOf("mean", "attn", "mlp"),
    "arch.smear_window": AT_LEAST_0,
    "arch.bos_id": AT_LEAST_0,
    "arch.attn_gate": OneOf("none", "sparse"),
    "arch.attn_gate_window": AT_LEAST_1,
    "arch.attn_gate_scale": FREE,
    "arch.attn_gate_init_std": AT_LEAST_0,
    "arch.doc_max_len": AT_LEAST_0,
    # --- data ---
    "data.source": OneOf("embedded", "files"),
    "data.name": FREE, "data.root": FREE, "data.train_pattern": FREE, "data.val_pattern": FREE,
    "data.tokenizer": FREE, "data.create_command": FREE,
    "data.vocab_size": Range(2),
    "data.min_corpus_bytes": AT_LEAST_1,
    "data.val_fraction": Range(0, 1, lo_open=True, hi_open=True),
    "data.shard_tokens": AT_LEAST_1,
    "data.val_bytes_pattern": FREE,
    # --- train ---
    "train.name": FREE,
    "train.device": AUTO_CPU_CUDA,
    "train.iterations": AT_LEAST_1,
    "train.train_batch_tokens": AT_LEAST_1,
    "train.seq_len": AT_LEAST_1,
    "train.grad_accum_steps": AT_LEAST_1,
    "train.max_wallclock_seconds": AT_LEAST_0,
    "train.warmdown_iters": AT_LEAST_0,
    "train.warmup_steps": AT_LEAST_0,
    "train.matrix_lr": AT_LEAST_0,
    "train.muon_momentum": FRACTION,
    "train.muon_momentum_warmup_start": FRACTION,
    "train.muon_momentum_warmup_steps": AT_LEAST_0,
    "train.muon_backend_steps": AT_LEAST_1,
    "train.muon_ns_dtype": OneOf("auto", "bf16", "fp32"),
    "train.muon_weight_decay": AT_LEAST_0,
    "train.tied_embed_lr": AT_LEAST_0,
    "train.embed_lr": AT_LEAST_0,
    "train.head_lr": AT_LEAST_0,
    "train.scalar_lr": AT_LEAST_0,
    "train.adam_beta1": UNIT_OPEN,
    "train.adam_beta2": UNIT_OPEN,
    "train.adam_eps": POSITIVE,
    "train.adam_weight_decay": AT_LEAST_0,
    "train.grad_clip_norm": AT_LEAST_0,
    "train.val_every": AT_LEAST_0,
    "train.val_max_tokens": AT_LEAST_0,
    "train.log_every": AT_LEAST_0,
    "train.checkpoint_every": AT_LEAST_0,
    "train.burst_steps": AT_LEAST_0,
    "train.burst_lr_scale": AT_LEAST_0,
    "train.autocast": AUTOCAST,
    "train.compile": COMPILE,
    "train.calibration_reserve_seconds": AT_LEAST_0,
    "train.calibration_batches": AT_LEAST_1,
    "train.muon_ns_coefficients": OneOf("quintic", "polar_express"),
    "train.embed_weight_decay": Range(-1),  # -1 = adam_weight_decay; crownq/train/optim.py refuses (-1, 0)
    "train.warmdown_frac": FRACTION,
    "train.min_lr": FRACTION,
    # --- quantizer ---
    "quantizer.name": FREE,
    "quantizer.qat_lr_scale_below": AT_LEAST_0,
    "quantizer.soft_round_temperature": POSITIVE,
    "quantizer.soft_round_lr_scale_below": AT_LEAST_0,
    "quantizer.crownq_lambda": AT_LEAST_0,
    "quantizer.crownq_divisor": POSITIVE,
    "quantizer.qat_coverage": OneOf("all_linears", "blocks"),
    "quantizer.qat_gradient": OneOf("ste", "soft_round"),
    "quantizer.crownq_window": OneOf("qat", "warmdown", "always"),
    "quantizer.scale_floor": NameOrPositive(("record", "tiny")),
    "quantizer.clip_select": OneOf("matrix_mse", "row_hessian", "sdclip", "sdclip_hessian"),
    "quantizer.sdclip_k_attn": POSITIVE,
    "quantizer.sdclip_k_mlp": POSITIVE,
    "quantizer.sdclip_k_embed": POSITIVE,
    "quantizer.sdclip_k_other": POSITIVE,
    "quantizer.sdclip_lambda": FRACTION,
    "quantizer.embed_method": OneOf("rtn", "gptq"),
    "quantizer.lqer_rank": AT_LEAST_0,
    "quantizer.lqer_top_k": AT_LEAST_0,
    "quantizer.lqer_group": AT_LEAST_1,
    "quantizer.compressor": OneOf("sections", "pergroup"),
    "quantizer.int8_clip": OneOf("percentile", "search"),
    "quantizer.int8_clip_quantile": Range(0, 1, lo_open=True),
    "quantizer.control_store": OneOf("fp16", "fp32"),
    "quantizer.prune_cost": OneOf("scale", "scale_hdiag"),
    "quantizer.code_bytes_mode": OneOf("raw", "compressed"),
    "quantizer.method": OneOf("gptq", "rtn", "none"),
    "quantizer.attn_bits": BITS,
    "quantizer.mlp_bits": BITS,
    "quantizer.embed_bits": BITS,
    "quantizer.other_bits": BITS,
    "quantizer.passthrough_max_numel": AT_LEAST_0,
    "quantizer.block_size": AT_LEAST_1,
    "quantizer.gptq_precision": OneOf("fp64", "fp32"),
    "quantizer.damp": AT_LEAST_0,
    "quantizer.calibration_batches": AT_LEAST_1,
    "quantizer.calibration_source": OneOf("train", "self_generated"),
    "quantizer.calibration_temperature": POSITIVE,
    "quantizer.calibration_seqs_per_batch": AT_LEAST_1,
    "quantizer.budget_bytes": AT_LEAST_1,
    "quantizer.headroom_bytes": AT_LEAST_0,
    "quantizer.codec": OneOf(*CODECS),
    "quantizer.lzma_preset": Range(0, 9),
    "quantizer.compress_threads": AT_LEAST_1,
    "quantizer.device": AUTO_CPU_CUDA,
    # --- averaging ---
    "averaging.name": FREE,
    "averaging.ema_decay": UNIT_OPEN,
    "averaging.swa_every": AT_LEAST_1,
    "averaging.swa_lr_scale_below": AT_LEAST_0,
    "averaging.ema_weight": FRACTION,
    # --- eval ---
    "eval.name": FREE,
    "eval.seq_len": AT_LEAST_1,
    "eval.stride": AT_LEAST_1,
    "eval.batch_seqs": AT_LEAST_1,
    "eval.max_val_tokens": AT_LEAST_0,
    "eval.budget_seconds": POSITIVE,
    "eval.autocast": AUTOCAST,
    "eval.compile": COMPILE,
    "eval.ttt.chunk_tokens": AT_LEAST_1,
    "eval.ttt.optimizer": OneOf("sgd", "adamw"),
    "eval.ttt.lr": AT_LEAST_0,
    "eval.ttt.momentum": FRACTION,
    "eval.ttt.weight_decay": AT_LEAST_0,
    "eval.ttt.epochs": AT_LEAST_1,
    "eval.ttt.lr_schedule": OneOf("constant", "cosine"),
    "eval.ttt.frozen_blocks": AT_LEAST_0,
    "eval.ttt.grad_clip_norm": AT_LEAST_0,
    "eval.ttt.batch_seqs": AT_LEAST_1,
    "eval.lora_ttt.batch_docs": AT_LEAST_1,
    "eval.lora_ttt.chunk": AT_LEAST_1,
    "eval.lora_ttt.window": AT_LEAST_1,
    "eval.lora_ttt.rank": AT_LEAST_1,
    "eval.lora_ttt.alpha": POSITIVE,
    "eval.lora_ttt.lr": AT_LEAST_0,
    "eval.lora_ttt.beta1": UNIT_OPEN,
    "eval.lora_ttt.beta2": UNIT_OPEN,
    "eval.lora_ttt.eps": POSITIVE,
    "eval.lora_ttt.weight_decay": AT_LEAST_0,
    "eval.lora_ttt.seed": Range(0, 2**31 - 1),
    "eval.phased_ttt.prefix_docs": AT_LEAST_1,
    "eval.phased_ttt.phases": AT_LEAST_1,
    "eval.phased_ttt.lr": AT_LEAST_0,
    "eval.phased_ttt.momentum": FRACTION,
    "eval.phased_ttt.chunk_tokens": AT_LEAST_1,
    "eval.phased_ttt.seq_len": AT_LEAST_1,
    "eval.phased_ttt.grad_clip_norm": AT_LEAST_0,
    # --- logger ---
    "logger.name": FREE,
    "logger.mode": OneOf("offline", "online", "disabled"),
    "logger.project": FREE, "logger.entity": FREE, "logger.group": FREE, "logger.job_type": FREE,
    "logger.dir": FREE,
}


def _get(cfg: Any, dotted: str) -> tuple[bool, Any]:
    node = cfg
    for part in dotted.split("."):
        try:
            if part not in node:
                return False, None
            node = node[part]
        except TypeError:
            return False, None
    return True, node


def _cross_stride(cfg: Any) -> str | None:
    e = cfg.eval
    if e.sliding and e.stride > e.seq_len:
        return (f"eval.stride={e.stride!r}: expected at most eval.seq_len={e.seq_len} (windows would skip "
                "tokens)")
    return None


def _cross_batch(cfg: Any) -> str | None:
    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    per_micro = world * t.grad_accum_steps * t.seq_len
    if t.grad_accum_steps >= 1 and t.seq_len >= 1 and t.train_batch_tokens % per_micro:
        return (f"train.train_batch_tokens={t.train_batch_tokens!r}: expected a multiple of world_size * "
                f"train.grad_accum_steps * train.seq_len = {world}*{t.grad_accum_steps}*{t.seq_len}")
    return None


def _cross_vocab(cfg: Any) -> str | None:
    if cfg.arch.vocab_size != cfg.data.vocab_size:
        return (f"arch.vocab_size={cfg.arch.vocab_size!r}: expected data.vocab_size={cfg.data.vocab_size} "
                "(the model's embedding must match the tokenizer)")
    return None


def _cross_clip_quantiles(cfg: Any) -> str | None:
    bad = [q for q in cfg.quantizer.clip_quantiles if not 0 < q <= 1]
    if bad or not len(cfg.quantizer.clip_quantiles):
        return (f"quantizer.clip_quantiles={list(cfg.quantizer.clip_quantiles)!r}: expected a non-empty list "
                "of quantiles in (0, 1]")
    return None


def _cross_phases(cfg: Any) -> str | None:
    p = cfg.eval.phased_ttt
    if p.enabled and p.prefix_docs < p.phases:
        return (f"eval.phased_ttt.prefix_docs={p.prefix_docs!r}: expected at least eval.phased_ttt.phases="
                f"{p.phases} (phase k trains on floor(prefix_docs * k / phases) documents; the first would "
                "train on none)")
    return None


CROSS_CHECKS: list[Callable[[Any], str | None]] = [_cross_stride, _cross_batch, _cross_vocab,
                                                    _cross_clip_quantiles, _cross_phases]


def problems(cfg: Any) -> list[str]:
    """Every invalid value of `cfg`, one line each (empty when all is well)."""
    found = []
    for dotted, rule in RULES.items():
        present, value = _get(cfg, dotted)
        if not present:
            continue  # a partial config (tests, tools) is checked for what it has
        expected = rule.problem(value)
        if expected is not None:
            found.append(f"{dotted}={value!r}: expected {expected}")
    if not found:  # relations are only meaningful once every single value is valid
        for check in CROSS_CHECKS:
            try:
                line = check(cfg)
            except (AttributeError, KeyError, TypeError):
                line = None  # a partial config lacks the fields this relation needs
            if line:
                found.append(line)
    return found


def validate(cfg: Any, *, arch: bool = True) -> None:
    """Raise ConfigError listing every invalid value; with `arch`, also the model's own relations
    (crownq.model.validate_arch, imported only once the table passed: it loads torch)."""
    found = problems(cfg)
    if not found and arch and "arch" in cfg:
        from crownq.model.validate import as_arch_config, validate_arch

        try:
            validate_arch(as_arch_config(cfg.arch))
        except (TypeError, ValueError) as exc:
            found.append(str(exc))
    if found:
        raise ConfigError("invalid config (nothing was run):\n  " + "\n  ".join(found))
