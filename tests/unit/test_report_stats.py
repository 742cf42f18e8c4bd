"""The report's statistics (``mmlearn.report.stats``) against hand-computed numbers and scipy.

Closed forms used below: t(0.975, df=2) = 0.95 / sqrt(2 * 0.975 * 0.025); the two-sided p of a
t statistic with 3 degrees of freedom, 1 - 2 (x / (1 + x^2) + atan(x)) / pi with x = |t| / sqrt(3);
the exact two-sided Wilcoxon p of n differences of one sign, 2 / 2^n; the Friedman statistic
without ties, 12 / (N k (k + 1)) sum_j R_j^2 - 3 N (k + 1), and its p with 2 degrees of freedom,
exp(-chi2 / 2); Demšar's (2006) table 5(a) of Nemenyi's q_0.05.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mmlearn.report import stats

T_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # 4.3027...


def p_t_df3(t: float) -> float:
    x = abs(t) / math.sqrt(3)
    return 1 - 2 * (x / (1 + x * x) + math.atan(x)) / math.pi


def test_estimate_is_the_mean_with_a_student_t_half_width():
    e = stats.estimate([0.5, 0.6, 0.4])
    assert e.mean == pytest.approx(0.5)
    assert e.half_width == pytest.approx(T_DF2 * 0.1 / math.sqrt(3))  # s = 0.1
    assert e.n == 3
    one = stats.estimate([0.7])
    assert one.mean == 0.7 and math.isnan(one.half_width) and one.n == 1


def test_compare_matches_hand_computed_numbers_and_scipy():
    reference = np.array([0.50, 0.90, 0.30, 0.70])
    diffs = np.array([0.10, 0.20, 0.05, 0.15])
    found = stats.compare(reference + diffs, reference, "max")
    sd = math.sqrt(sum((d - 0.125) ** 2 for d in diffs) / 3)
    assert found.difference == pytest.approx(0.125)
    assert found.p_t == pytest.approx(p_t_df3(0.125 / (sd / 2)))
    assert found.p_t == pytest.approx(scipy_stats.ttest_rel(reference + diffs, reference).pvalue)
    assert found.p_wilcoxon == pytest.approx(2 / 2**4)  # exact: all 4 differences positive
    assert found.p_wilcoxon == pytest.approx(scipy_stats.wilcoxon(diffs).pvalue)
    assert found.p_better == 1.0 and found.n == 4
    assert 0.05 <= found.low < 0.125 < found.high <= 0.20
    worse = stats.compare(reference + diffs, reference, "min")  # smaller is better
    assert worse.p_better == 0.0 and worse.difference == pytest.approx(0.125)


def test_bootstrap_interval_of_three_units_spans_the_extreme_differences():
    # The bootstrap mean equals the smallest difference with probability 1/27 > 2.5 %, and the
    # largest likewise, so the percentile interval is exactly [min, max].
    found = stats.compare([0.6, 0.7, 1.1], [0.5, 0.5, 0.5], "max")
    assert (found.low, found.high) == pytest.approx((0.1, 0.6))


def test_probability_of_improvement_counts_ties_as_half():
    found = stats.compare([0.6, 0.6, 0.5, 0.4], [0.5, 0.5, 0.5, 0.5], "max")
    assert found.p_better == pytest.approx(2.5 / 4)
    assert stats.compare([0.6, 0.6, 0.5, 0.4], [0.5] * 4, "min").p_better == pytest.approx(1.5 / 4)
    # a zero difference is dropped by the Wilcoxon test (scipy's zero_method="wilcox")
    assert found.p_wilcoxon == pytest.approx(scipy_stats.wilcoxon([0.1, 0.1, -0.1]).pvalue)


def test_compare_without_enough_units():
    one = stats.compare([0.6], [0.5], "max")
    assert one.n == 1 and one.difference == pytest.approx(0.1)
    assert math.isnan(one.p_t) and math.isnan(one.low) and math.isnan(one.p_wilcoxon)
    same = stats.compare([0.6, 0.7], [0.5, 0.6], "max")  # identical differences
    assert math.isnan(same.p_t) and same.p_wilcoxon == pytest.approx(0.5)
    none = stats.compare([], [], "max")
    assert none.n == 0 and math.isnan(none.difference)


def test_holm_adjusts_the_sorted_p_values_step_down():
    # m = 4 finite: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 -> max 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.02)
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


BLOCKS = np.array(
    [  # 4 blocks x 3 methods, larger is better
        [0.9, 0.8, 0.7],
        [0.8, 0.9, 0.7],
        [0.9, 0.7, 0.8],
        [0.9, 0.8, 0.7],
    ]
)


def test_average_ranks_and_friedman_match_hand_computed_numbers_and_scipy():
    ranks = stats.average_ranks(BLOCKS, "max")
    assert ranks == pytest.approx([5 / 4, 8 / 4, 11 / 4])  # rank sums 5, 8, 11
    assert stats.average_ranks(BLOCKS, "min") == pytest.approx([11 / 4, 8 / 4, 5 / 4])
    tied = stats.average_ranks(np.array([[0.5, 0.5, 0.1]]), "max")
    assert tied == pytest.approx([1.5, 1.5, 3])
    chi2 = 12 / (4 * 3 * 4) * (5**2 + 8**2 + 11**2) - 3 * 4 * 4  # 4.5
    found = stats.friedman(BLOCKS)
    assert found.statistic == pytest.approx(chi2)
    assert found.p_value == pytest.approx(math.exp(-chi2 / 2))
    assert found.p_value == pytest.approx(scipy_stats.friedmanchisquare(*BLOCKS.T).pvalue)
    assert stats.friedman(BLOCKS[:, :2]) is None  # 2 methods
    assert stats.friedman(BLOCKS[:1]) is None  # 1 block


@pytest.mark.parametrize(
    ("k", "q"),
    [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (7, 2.949), (10, 3.164)],
)
def test_critical_difference_uses_demsars_q(k, q):
    n = 4
    assert stats.critical_difference(k, n) == pytest.approx(
        q * math.sqrt(k * (k + 1) / (6 * n)), abs=2e-3
    )


def test_bayesian_signed_rank_matches_its_closed_forms():
    # Differences all inside the ROPE: every pairwise sum is within 2 * ROPE.
    tiny = stats.bayesian_signed_rank([0.501, 0.702, 0.303], [0.5, 0.7, 0.3], "max")
    assert (tiny.better, tiny.equivalent, tiny.worse) == (0.0, 1.0, 0.0) and tiny.n == 3
    # Differences all above 2 * ROPE: only the prior's pseudo-observation at 0 (weight w0 of a
    # Dirichlet(0.5, 1, 1, 1, 1)) pairs with itself inside the ROPE, a mass of w0^2; "better"
    # wins unless w0^2 > 1/2, and w0 ~ Beta(0.5, 4).
    big = stats.bayesian_signed_rank([0.6, 0.8, 0.4, 0.9], [0.5, 0.7, 0.3, 0.8], "max")
    p_equivalent = scipy_stats.beta.sf(1 / math.sqrt(2), 0.5, 4)
    assert big.equivalent == pytest.approx(p_equivalent, abs=0.004)
    assert big.better == pytest.approx(1 - p_equivalent, abs=0.004) and big.worse == 0.0
    flipped = stats.bayesian_signed_rank([0.6, 0.8, 0.4, 0.9], [0.5, 0.7, 0.3, 0.8], "min")
    assert flipped.worse == big.better and flipped.better == 0.0
