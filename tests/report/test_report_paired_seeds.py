"""Paired t-test, the leaderboard's one-sided Welch on val_bpb, and "seeds needed"."""

import math
import random

import pytest
from scipy import stats as sps

from crownq.report.stats import (
    MAX_SEEDS,
    compare_to_baseline,
    paired_test,
    seeds_needed,
    welch_test,
)

# Published per-seed val_bpb of two leaderboard entries (PR #1514 vs PR #1493), quoted as p=0.020.
PR1514 = [1.07928348, 1.07996676, 1.08024795]
PR1493 = [1.08079, 1.08103, 1.08118]


def test_leaderboard_welch_reproduces_the_quoted_p():
    test = welch_test(PR1514, PR1493, alternative="less")
    assert test.t_statistic == pytest.approx(-3.79, abs=0.005)
    assert test.df == pytest.approx(2.61, abs=0.005)
    assert round(test.p_value, 3) == 0.020


def test_compare_quotes_the_leaderboard_p_next_to_the_record_rule():
    losses = [v * 1.6885 for v in PR1514]
    base = [v * 1.6885 for v in PR1493]
    cmp = compare_to_baseline(losses, base, baseline_fixed=True, candidate_bpb=PR1514, baseline_bpb=PR1493)
    assert cmp["leaderboard"]["p_value"] == pytest.approx(welch_test(PR1514, PR1493, "less").p_value)
    assert not cmp["meets_record_bar"]  # ~0.002 nats: far under the 0.005-nat rule


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_paired_matches_scipy(alternative):
    rng = random.Random(1)
    for _ in range(10):
        seeds = list(range(rng.randint(2, 6)))
        a = {s: rng.gauss(2.0, 0.01) for s in seeds}
        b = {s: a[s] + rng.gauss(0.003, 0.002) for s in seeds}
        ours = paired_test(a, b, alternative=alternative)
        ref = sps.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds], alternative=alternative)
        assert ours.t_statistic == pytest.approx(ref.statistic)
        assert ours.p_value == pytest.approx(ref.pvalue)


def test_paired_uses_only_shared_seeds_and_sees_what_welch_misses():
    # Seed luck (+-0.02) swamps a 0.006 gain for Welch; per-seed differences remove it.
    luck = {1: -0.02, 2: 0.0, 3: 0.02, 4: 0.01}
    base = {s: 2.0 + v for s, v in luck.items()}
    cand = {s: base[s] - 0.006 + 0.0002 * s for s in (1, 2, 3)}
    paired = paired_test(cand, base, alternative="less")
    assert paired.df == 2  # seed 4 has no partner
    welch = welch_test(list(cand.values()), [base[s] for s in (1, 2, 3)], alternative="less")
    assert paired.p_value < 0.01 < welch.p_value
    assert paired_test({1: 1.0}, {1: 2.0}) is None


def test_compare_reports_paired_tests_when_seeds_are_shared():
    base = [2.00, 2.02, 1.98]
    assert compare_to_baseline(base, base)["paired"] is None  # no seeds given: no pairing
    cand = [b - 0.01 + d for b, d in zip(base, (0.0005, -0.0005, 0.0002))]
    cmp = compare_to_baseline(cand, base, candidate_seeds=[1, 2, 3], baseline_seeds=[1, 2, 3])
    assert cmp["paired"]["kind"] == "paired" and cmp["paired_improvement"]["p_value"] < 0.05
    assert cmp["seeds_needed"]["paired_record_bar"] <= cmp["seeds_needed"]["record_bar"]


def test_seeds_needed_is_the_first_n_that_reaches_the_level():
    gain, sd = 0.001, 0.0007
    n = seeds_needed(gain, sd, sd)
    assert n is not None and 2 < n < 20

    def p_at(k):
        se = math.sqrt(2 * sd**2 / k)
        df = 2 * k - 2  # Welch df with equal n and spreads
        return sps.t.sf(gain / se, df)

    assert p_at(n) < 0.01 <= p_at(n - 1)


def test_seeds_needed_never_without_a_gain_and_grows_with_spread():
    assert seeds_needed(0.0, 0.001, 0.001) is None
    assert seeds_needed(-0.01, 0.001, 0.001) is None
    assert seeds_needed(0.001, 0.0005, 0.0005) < seeds_needed(0.001, 0.001, 0.001)
    assert seeds_needed(1e-9, 1.0, 1.0) is None  # more than MAX_SEEDS
    assert MAX_SEEDS >= 100


def test_a_fixed_baseline_can_make_the_bar_unreachable():
    # Three baseline seeds with a wide spread: even infinitely many candidate seeds keep its error.
    assert seeds_needed(0.001, 0.0005, 0.01, baseline_n=3) is None
    assert seeds_needed(0.001, 0.0005, 0.01) is not None  # both arms growing can get there


def test_record_bar_column_needs_the_gain_beyond_the_margin():
    base = [1.8891, 1.8893, 1.8876]
    cand = [v - 0.004 for v in (1.8890, 1.8895, 1.8874)]
    cmp = compare_to_baseline(cand, base, baseline_fixed=True)
    assert cmp["seeds_needed"]["record_bar"] is None  # 0.004 < 0.005: no number of seeds helps
    assert cmp["seeds_needed"]["p01"] is not None
