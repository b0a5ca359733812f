"""Scoring the model loaded back from the artifact: roundtrip, sliding window, score-first TTT."""

from crownq.eval.guard import ScoreFirstGuard, ScoreFirstViolation
from crownq.eval.result import EVAL_BUDGET_SECONDS, EvalResult
from crownq.eval.roundtrip import roundtrip_eval
from crownq.eval.sliding import sliding_window_eval
from crownq.eval.suite import headline, limit_validation_tokens, run_evaluation, total_seconds

__all__ = [
    "EVAL_BUDGET_SECONDS",
    "EvalResult",
    "ScoreFirstGuard",
    "ScoreFirstViolation",
    "headline",
    "limit_validation_tokens",
    "roundtrip_eval",
    "run_evaluation",
    "score_first_ttt",
    "sliding_window_eval",
    "total_seconds",
]


def __getattr__(name: str):
    # Imported on first use: a bundle carries crownq.eval.ttt only when eval.ttt is on (BUNDLE_WHEN).
    if name == "score_first_ttt":
        from crownq.eval.ttt import score_first_ttt

        return score_first_ttt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
