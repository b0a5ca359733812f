"""The record rule's statistics, on the record's own published numbers and against scipy."""

import math
import random

import pytest
from pipeline_synthetic import RECORD_VAL_LOSS
from scipy import stats as sps

from crownq.report.stats import compare_to_baseline, one_sample_test, summarize, welch_test

PREVIOUS_RECORD_MEAN = 1.89002


def test_record_scores_against_themselves_are_no_improvement():
    cmp = compare_to_baseline(RECORD_VAL_LOSS, RECORD_VAL_LOSS)
    assert cmp["improvement_test"]["p_value"] > 0.99
    assert cmp["welch"]["p_value"] == pytest.approx(1.0)
    assert not cmp["meets_record_bar"]


def test_scores_lower_by_a_hundredth_of_a_nat_meet_the_bar():
    better = [v - 0.01 for v in RECORD_VAL_LOSS]
    cmp = compare_to_baseline(better, RECORD_VAL_LOSS)
    assert cmp["improvement_test"]["p_value"] < 0.01
    assert cmp["improvement_nats"] == pytest.approx(0.01)
    assert cmp["meets_record_bar"]
    assert cmp["verdict"].startswith("meets the record bar")


def test_record_claim_against_previous_record_mean_is_below_the_bar():
    # The record gained ~0.0014 nats over the previous record's mean: under the 0.005-nat rule.
    cmp = compare_to_baseline(RECORD_VAL_LOSS, [PREVIOUS_RECORD_MEAN])
    assert cmp["improvement_nats"] == pytest.approx(PREVIOUS_RECORD_MEAN - sum(RECORD_VAL_LOSS) / 3)
    assert cmp["improvement_test"]["kind"] == "one_sample"
    assert cmp["improvement_test"]["p_value"] > 0.5
    assert not cmp["meets_record_bar"]
    assert "below the 0.005-nat bar" in cmp["verdict"]


def test_a_worse_group_is_called_worse():
    worse = [v + 0.02 for v in RECORD_VAL_LOSS]
    cmp = compare_to_baseline(worse, RECORD_VAL_LOSS)
    assert cmp["improvement_nats"] == pytest.approx(-0.02)
    assert not cmp["meets_record_bar"]
    assert cmp["verdict"] == "worse than the baseline by 0.02000 nats"


def test_summary_uses_the_sample_std():
    s = summarize([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert math.isnan(summarize([1.0]).std)


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_welch_matches_scipy_on_random_samples(alternative):
    rng = random.Random(0)
    for _ in range(20):
        a = [rng.gauss(1.9, rng.uniform(1e-4, 1e-2)) for _ in range(rng.randint(2, 6))]
        b = [rng.gauss(1.9, rng.uniform(1e-4, 1e-2)) for _ in range(rng.randint(2, 6))]
        ours = welch_test(a, b, alternative)
        ref = sps.ttest_ind(a, b, equal_var=False, alternative=alternative)
        assert ours.t_statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
        assert ours.df == pytest.approx(ref.df, rel=1e-9)


def test_one_sample_matches_scipy():
    values = [1.889, 1.8891, 1.8876, 1.8880]
    ours = one_sample_test(values, 1.885, "less")
    ref = sps.ttest_1samp(values, 1.885, alternative="less")
    assert ours.t_statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_tests_are_undefined_for_single_seeds_or_no_spread():
    assert welch_test([1.0], [1.0, 2.0]) is None
    assert welch_test([1.0, 1.0], [2.0, 2.0]) is None
    cmp = compare_to_baseline([1.88], RECORD_VAL_LOSS)
    assert cmp["improvement_test"] is None and cmp["verdict"].startswith("untestable")
