"""Run the evaluation methods an `eval` config switches on, in the order a submission would."""

from __future__ import annotations

from typing import Any

import torch

from crownq.data.byte_tables import ByteTables
from crownq.distributed import DistEnv
from crownq.eval.result import EvalResult
from crownq.eval.roundtrip import roundtrip_eval
from crownq.eval.sliding import sliding_window_eval
from crownq.eval.windows import check_window_args


def limit_validation_tokens(val_tokens: torch.Tensor, max_targets: int, seq_len: int) -> torch.Tensor:
    """The first `max_targets` targets rounded down to whole sequences (0 = keep everything)."""
    if max_targets <= 0 or max_targets >= val_tokens.numel() - 1:
        return val_tokens
    keep = (max_targets // seq_len) * seq_len
    if keep == 0:
        raise ValueError(f"eval.max_val_tokens={max_targets} is less than one sequence of {seq_len}")
    return val_tokens[:keep + 1]


def run_evaluation(model: torch.nn.Module, val_tokens: torch.Tensor, tables: ByteTables, eval_cfg: Any,
                   dist_env: DistEnv) -> dict[str, EvalResult]:
    """{"roundtrip": ..., "sliding": ..., "ttt": ...} for the methods eval_cfg enables.

    The headline score is the last one present (ttt, else sliding, else roundtrip), see headline()."""
    check_window_args(eval_cfg.seq_len, eval_cfg.stride)
    document_ttt_method(eval_cfg)  # a contradictory TTT choice fails before any scoring
    val_tokens = limit_validation_tokens(val_tokens, eval_cfg.max_val_tokens, eval_cfg.seq_len)
    common = {"autocast": eval_cfg.autocast, "compile": eval_cfg.compile,
              "budget_seconds": eval_cfg.budget_seconds}
    results: dict[str, EvalResult] = {}
    if eval_cfg.roundtrip:
        results["roundtrip"] = roundtrip_eval(model, val_tokens, tables, eval_cfg.seq_len,
                                              eval_cfg.batch_seqs, dist_env, **common)
    if eval_cfg.sliding:
        results["sliding"] = sliding_window_eval(model, val_tokens, tables, eval_cfg.seq_len,
                                                 eval_cfg.stride, eval_cfg.batch_seqs, dist_env, **common)
    if eval_cfg.ttt.enabled:
        from crownq.eval.ttt import score_first_ttt  # TTT modules load (and are bundled) only when on

        results["ttt"] = score_first_ttt(model, val_tokens, tables, eval_cfg, dist_env)
    doc_ttt = document_ttt_method(eval_cfg)
    if doc_ttt is not None:  # per-document TTT is the headline score too (key "ttt")
        results["ttt"] = doc_ttt(model, val_tokens, tables, eval_cfg, dist_env)
    if not results:
        raise ValueError("the eval config enables no method: set eval.roundtrip, eval.sliding, "
                         "eval.ttt.enabled or eval.lora_ttt.enabled")
    return results


def document_ttt_method(eval_cfg: Any):
    """lora_ttt_eval / phased_ttt_eval when eval_cfg switches per-document TTT on, else None."""
    lora = getattr(eval_cfg, "lora_ttt", None)
    phased = getattr(eval_cfg, "phased_ttt", None)
    lora_on, phased_on = bool(lora is not None and lora.enabled), bool(phased is not None and phased.enabled)
    if phased_on and not lora_on:
        raise ValueError("eval.phased_ttt.enabled needs eval.lora_ttt.enabled: the phases run between "
                         "per-document LoRA TTT batches (use eval=phased_ttt)")
    if lora_on and eval_cfg.ttt.enabled:
        raise ValueError("eval.ttt.enabled and eval.lora_ttt.enabled both set: choose one test-time "
                         "training (eval=ttt_score_first, eval=lora_ttt or eval=phased_ttt)")
    if not lora_on:
        return None
    if phased_on:
        from crownq.eval.phased_ttt import phased_ttt_eval

        return phased_ttt_eval
    from crownq.eval.lora_ttt import lora_ttt_eval

    return lora_ttt_eval


def headline(results: dict[str, EvalResult]) -> EvalResult:
    for key in ("ttt", "sliding", "roundtrip"):
        if key in results:
            return results[key]
    raise ValueError("no evaluation results")


def total_seconds(results: dict[str, EvalResult]) -> float:
    """Evaluation wallclock of all methods together: what the 600 s evaluation budget counts."""
    return sum(r.seconds for r in results.values())
