"""Small shared pieces for the training tests: a micro GPT config, token shards, a composed run config."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from crownq.config import Config
from crownq.data.shards import write_shard

VOCAB = 64
SEQ = 32

MICRO_ARCH = dict(name="micro", vocab_size=VOCAB, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1,
                  mlp_mult=2.0, xsa_last_n=1, value_residual=True, bigram_vocab=96, bigram_dim=16,
                  ve_layers=[1], ve_dim=16, rope_dims=8, ln_scale=True, smear_gate=True,
                  attn_backend="sdpa")


def micro_config(**train_overrides) -> OmegaConf:
    """Whole run config (schema defaults) with the micro model and a fast step-based schedule."""
    cfg = OmegaConf.structured(Config)
    train = dict(iterations=12, train_batch_tokens=8 * SEQ, seq_len=SEQ, warmdown_iters=8,
                 muon_momentum_warmup_steps=5, log_every=1, val_every=0, autocast="off", compile="off")
    train.update(train_overrides)
    # QAT from lr_scale < 0.5, soft rounding (the soft_round departure) under 0.25, SWA every 2 steps
    # under 0.5: all late phases run.
    overrides = {"arch": MICRO_ARCH, "data": {"vocab_size": VOCAB}, "train": train,
                 "quantizer": {"qat_lr_scale_below": 0.5, "soft_round_lr_scale_below": 0.25,
                               "qat_gradient": "soft_round"},
                 "averaging": {"swa_every": 2, "swa_lr_scale_below": 0.5}}
    return OmegaConf.merge(cfg, overrides)


def write_token_shards(folder: Path, n_tokens: int = 40_000,
                       seed: int = 0) -> tuple[list[Path], torch.Tensor]:
    """One training shard of a learnable Markov stream and validation tokens from the same process."""
    rng = np.random.default_rng(seed)
    toks = np.zeros(n_tokens + 4 * SEQ + 1, dtype=np.uint16)
    for i in range(1, len(toks)):
        toks[i] = (toks[i - 1] * 5 + rng.integers(0, 3)) % VOCAB
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_000000.bin"
    write_shard(path, toks[:n_tokens])
    val = torch.from_numpy(toks[n_tokens:].astype(np.int64))
    return [path], val


def build_micro_model(cfg, seed: int = 0):
    from crownq.model import build_model

    torch.manual_seed(seed)
    return build_model(cfg.arch)


@contextlib.contextmanager
def torch_threads(n: int):
    """Fewer threads: the shared 2-core machine is far faster single-threaded under contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
