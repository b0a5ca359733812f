"""Roundtrip evaluation: the validation split as disjoint fixed-length sequences (the quick score)."""

from __future__ import annotations

import torch

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval.result import EVAL_BUDGET_SECONDS, EvalResult
from crownq.eval.scoring import evaluate_plan
from crownq.eval.windows import plan_fixed_sequences


def roundtrip_eval(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, seq_len: int,
                   batch_seqs: int, dist_env: DistEnv, *, autocast: str | bool = "auto",
                   compile: str | bool = "auto", budget_seconds: float = EVAL_BUDGET_SECONDS) -> EvalResult:
    """Score every target of `val_tokens` (already trimmed to whole sequences + 1) in sequences of
    `seq_len`; each token sees only the context since its sequence began."""
    plan = plan_fixed_sequences(val_tokens.numel() - 1, seq_len)
    return evaluate_plan(model, val_tokens, tables, plan, batch_seqs, dist_env, "roundtrip",
                         autocast=autocast, compile=compile, budget_seconds=budget_seconds,
                         details={"seq_len": seq_len})
