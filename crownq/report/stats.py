"""The record rule's statistics: sample mean/std, Welch's t-test, and the one-sided test for an
improvement of at least `margin` nats (records need >= 0.005 nats at p < 0.01).

t and the Welch-Satterthwaite degrees of freedom are computed here from their formulas (so the
report can show them); only the t distribution's tail comes from scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

RECORD_MARGIN_NATS = 0.005
RECORD_P_VALUE = 0.01


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1); nan for n < 2


def summarize(values: Sequence[float]) -> Summary:
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Summary(n, mean, std)


@dataclass(frozen=True)
class TestResult:
    kind: str  # "welch" | "one_sample"
    t_statistic: float
    df: float
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def _t_tail(t: float, df: float, alternative: str) -> float:
    from scipy.stats import t as student_t

    if alternative == "less":
        return float(student_t.cdf(t, df))
    if alternative == "greater":
        return float(student_t.sf(t, df))
    return float(2.0 * student_t.sf(abs(t), df))


def welch_test(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided") -> TestResult | None:
    """Welch's unequal-variance t-test of mean(a) vs mean(b); None when either side has < 2 values
    or both have zero variance (the test is undefined there)."""
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return None
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    if va + vb == 0.0:
        return None
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return TestResult("welch", t, df, _t_tail(t, df, alternative))


def one_sample_test(a: Sequence[float], mu: float, alternative: str = "two-sided") -> TestResult | None:
    sa = summarize(a)
    if sa.n < 2 or sa.std == 0.0:
        return None
    t = (sa.mean - mu) / (sa.std / math.sqrt(sa.n))
    df = float(sa.n - 1)
    return TestResult("one_sample", t, df, _t_tail(t, df, alternative))


def compare_to_baseline(candidate: Sequence[float], baseline: Sequence[float],
                        margin: float = RECORD_MARGIN_NATS) -> dict:
    """Both tests of candidate val_loss (nats, lower is better) against a baseline.

    - `welch`: two-sided Welch test of equal means (one-sample test when the baseline is one number).
    - `improvement`: one-sided test of H1 "candidate mean < baseline mean - margin", the record rule.
    """
    base = summarize(baseline)
    cand = summarize(candidate)
    if base.n == 1:
        welch = one_sample_test(candidate, base.mean)
        improvement = one_sample_test(candidate, base.mean - margin, alternative="less")
    else:
        welch = welch_test(candidate, baseline)
        # Shifting the candidate up by the margin turns "better by >= margin" into "less than".
        improvement = welch_test([v + margin for v in candidate], baseline, alternative="less")
    gain = base.mean - cand.mean
    if improvement is None:
        verdict = "untestable (needs >= 2 seeds with non-zero spread)"
    elif gain < 0:
        verdict = f"worse than the baseline by {-gain:.5f} nats"
    elif gain < margin:
        verdict = f"below the {margin:g}-nat bar (improvement {gain:.5f} nats)"
    elif improvement.p_value >= RECORD_P_VALUE:
        verdict = f"not significant (p = {improvement.p_value:.3g} >= {RECORD_P_VALUE:g})"
    else:
        verdict = f"meets the record bar (>= {margin:g} nats at p < {RECORD_P_VALUE:g})"
    return {
        "baseline_mean_val_loss": base.mean,
        "baseline_n": base.n,
        "improvement_nats": gain,
        "margin_nats": margin,
        "welch": welch.as_dict() if welch else None,
        "improvement_test": improvement.as_dict() if improvement else None,
        "meets_record_bar": bool(improvement is not None and gain >= margin
                                 and improvement.p_value < RECORD_P_VALUE),
        "verdict": verdict,
    }
