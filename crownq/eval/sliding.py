"""Sliding-window evaluation: every validation token scored once, with up to seq_len - stride context."""

from __future__ import annotations

import torch

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval.result import EVAL_BUDGET_SECONDS, EvalResult
from crownq.eval.scoring import evaluate_plan
from crownq.eval.windows import plan_sliding_windows


def sliding_window_eval(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, seq_len: int,
                        stride: int, batch_seqs: int, dist_env: DistEnv, *, autocast: str | bool = "auto",
                        compile: str | bool = "auto",
                        budget_seconds: float = EVAL_BUDGET_SECONDS) -> EvalResult:
    """Windows of `seq_len` advanced by `stride`; each scores only its last `stride` targets (the first
    window all of them, a ragged tail window the few left), batched `batch_seqs` windows at a time and
    split across ranks. The costs is ~seq_len/stride forwards per scored token: the price of context."""
    plan = plan_sliding_windows(val_tokens.numel() - 1, seq_len, stride)
    return evaluate_plan(model, val_tokens, tables, plan, batch_seqs, dist_env, f"sliding{stride}",
                         autocast=autocast, compile=compile, budget_seconds=budget_seconds,
                         details={"seq_len": seq_len, "stride": stride})
