"""The record rule's statistics: sample mean/std, Welch's t-test, and the one-sided test for an
improvement of at least `margin` nats (records need >= 0.005 nats at p < 0.01); the paired t-test
for cells that share seeds; the leaderboard's one-sided Welch on per-seed val_bpb; and how many
seeds per arm the observed difference and spread would need to reach p < 0.01.

t and the Welch-Satterthwaite degrees of freedom are computed here from their formulas (so the
report can show them); only the t distribution's tail comes from scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    kind: str  # "welch" | "one_sample" | "paired"
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


def paired_test(candidate: Mapping[int, float], baseline: Mapping[int, float], shift: float = 0.0,
                alternative: str = "two-sided") -> TestResult | None:
    """Paired t-test over the seeds both sides ran (same seed = same init and data order, so the
    per-seed differences cancel the seed's own luck). Tests mean(candidate + shift - baseline) against
    0; None with fewer than 2 shared seeds or identical differences."""
    shared = sorted(set(candidate) & set(baseline))
    diffs = [candidate[s] + shift - baseline[s] for s in shared]
    sd = summarize(diffs)
    if sd.n < 2 or sd.std == 0.0:
        return None
    t = sd.mean / (sd.std / math.sqrt(sd.n))
    df = float(sd.n - 1)
    return TestResult("paired", t, df, _t_tail(t, df, alternative))


def _se2_df(n: int, sd_c: float, sd_b: float, baseline_n: int | None, paired_sd: float | None
            ) -> tuple[float, float]:
    """Squared standard error and degrees of freedom of the difference with n candidate seeds."""
    if paired_sd is not None:
        return paired_sd**2 / n, float(n - 1)
    nb = baseline_n or n
    vc, vb = sd_c**2 / n, sd_b**2 / nb
    denom = vc**2 / (n - 1) + (vb**2 / (nb - 1) if nb > 1 else 0.0)
    return vc + vb, ((vc + vb) ** 2 / denom if denom else 1.0)


MAX_SEEDS = 1000  # beyond this "seeds needed" is reported as never


def seeds_needed(gain: float, sd_candidate: float, sd_baseline: float, p_value: float = RECORD_P_VALUE,
                 baseline_n: int | None = None, paired_sd: float | None = None) -> int | None:
    """Seeds per arm at which a one-sided test of an improvement `gain` (> 0) would reach p < p_value,
    if further seeds kept the observed means and spreads. Welch with n seeds on each side, or with the
    baseline fixed at `baseline_n` seeds (a previous record cannot be re-run), or paired (`paired_sd` =
    the std of the per-seed differences). None when the gain is not positive or no n <= MAX_SEEDS does."""
    if not gain > 0 or any(v is not None and math.isnan(v) for v in (sd_candidate, sd_baseline, paired_sd)):
        return None
    for n in range(2, MAX_SEEDS + 1):
        se2, df = _se2_df(n, sd_candidate, sd_baseline, baseline_n, paired_sd)
        if se2 == 0.0 or _t_tail(gain / math.sqrt(se2), df, "greater") < p_value:
            return n
    return None


def compare_to_baseline(candidate: Sequence[float], baseline: Sequence[float],
                        margin: float = RECORD_MARGIN_NATS, candidate_seeds: Sequence[int] | None = None,
                        baseline_seeds: Sequence[int] | None = None, baseline_fixed: bool = False,
                        candidate_bpb: Sequence[float] | None = None,
                        baseline_bpb: Sequence[float] | None = None) -> dict:
    """Both tests of candidate val_loss (nats, lower is better) against a baseline.

    - `welch`: two-sided Welch test of equal means (one-sample test when the baseline is one number).
    - `improvement`: one-sided test of H1 "candidate mean < baseline mean - margin", the record rule.
    - `paired`, `paired_improvement`: the same two questions as paired t-tests, when seeds are given
      and at least two are shared (a baseline group of the same sweep).
    - `leaderboard`: one-sided Welch of per-seed val_bpb (candidate < baseline, no margin), the p the
      leaderboard quoted, when both bpb lists are given.
    - `seeds_needed`: seeds per arm for the observed gain to reach p < 0.01 (`p01`) and for the gain
      minus the margin to (`record_bar`); the baseline arm stays at its size when `baseline_fixed`.
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
    fixed_n = base.n if baseline_fixed else None
    base_sd = 0.0 if base.n == 1 else base.std  # one baseline number: a one-sample question
    needed = {"p01": seeds_needed(gain, cand.std, base_sd, baseline_n=fixed_n),
              "record_bar": seeds_needed(gain - margin, cand.std, base_sd, baseline_n=fixed_n)}
    paired = paired_improvement = None
    if candidate_seeds is not None and baseline_seeds is not None:
        cand_by_seed = dict(zip(candidate_seeds, candidate))
        base_by_seed = dict(zip(baseline_seeds, baseline))
        paired = paired_test(cand_by_seed, base_by_seed)
        paired_improvement = paired_test(cand_by_seed, base_by_seed, shift=margin, alternative="less")
        if paired is not None:
            shared = sorted(set(cand_by_seed) & set(base_by_seed))
            sd = summarize([cand_by_seed[s] - base_by_seed[s] for s in shared]).std
            needed["paired_p01"] = seeds_needed(gain, 0.0, 0.0, paired_sd=sd)
            needed["paired_record_bar"] = seeds_needed(gain - margin, 0.0, 0.0, paired_sd=sd)
    leaderboard = None
    if candidate_bpb and baseline_bpb and len(baseline_bpb) == 1:
        leaderboard = one_sample_test(candidate_bpb, baseline_bpb[0], alternative="less")
    elif candidate_bpb and baseline_bpb:
        leaderboard = welch_test(candidate_bpb, baseline_bpb, alternative="less")
    return {
        "paired": paired.as_dict() if paired else None,
        "paired_improvement": paired_improvement.as_dict() if paired_improvement else None,
        "leaderboard": leaderboard.as_dict() if leaderboard else None,
        "seeds_needed": needed,
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
