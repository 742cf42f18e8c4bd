"""The report's statistics on arrays of run scores, one value per unit of replication.

A unit is one final run, a (fold, seed) pair; methods are paired on the units both have.

- ``estimate``: mean with the two-sided 95 % Student-t interval, ``t(0.975, n-1) s / sqrt(n)``.
- ``compare``: a method against a reference on paired units: the mean difference with a
  percentile bootstrap 95 % interval of the mean of the paired differences
  (``scipy.stats.bootstrap``), the probability of improvement (the share of units on which the
  method is better, ties counting half), a paired t-test (``scipy.stats.ttest_rel``) and a
  Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact for small samples without ties).
- ``holm``: Holm's step-down adjustment of a family of p-values (Holm 1979).
- ``average_ranks``, ``friedman`` and ``critical_difference``: ranks of methods over blocks,
  Friedman's test and the Nemenyi critical difference, as in Demšar (2006), "Statistical
  comparisons of classifiers over multiple data sets", JMLR 7, sections 3.2.2 and 3.2.2.1.
- ``bayesian_signed_rank``: the Bayesian signed-rank test with a region of practical
  equivalence of Benavoli et al. (2017), "Time for a change: a tutorial for comparing multiple
  classifiers through Bayesian analysis", JMLR 18(77), section 4.3, through ``baycomp``
  (``SignedRankTest``, by the paper's authors).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import baycomp
import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000
"""Bootstrap resamples of a paired difference."""
ROPE = 0.01
"""Half-width of the region of practical equivalence of the Bayesian test, in score units."""
POSTERIOR_SAMPLES = 20_000
"""Samples of the Bayesian signed-rank test's posterior (its probabilities vary by ~0.003)."""
SEED = 0
"""Seed of the bootstrap and the posterior sampling, so that a report is reproducible."""


@dataclass(frozen=True)
class Estimate:
    """A mean over units with its confidence interval.

    Attributes:
        mean: the mean.
        half_width: half the width of the ``CONFIDENCE`` interval; NaN for fewer than 2 values.
        n: how many values.
    """

    mean: float
    half_width: float
    n: int


def estimate(values: Sequence[float]) -> Estimate:
    """The mean of ``values`` and the Student-t half-width of its confidence interval."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return Estimate(float(x.mean()) if n else math.nan, math.nan, n)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1)
    return Estimate(float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(n)), n)


@dataclass(frozen=True)
class Comparison:
    """A method against a reference on paired units.

    Attributes:
        difference: mean of method - reference over the units.
        low, high: the percentile bootstrap ``CONFIDENCE`` interval of ``difference``; NaN for
            fewer than 2 units.
        p_better: share of units on which the method is better (ties count half).
        p_t: two-sided p-value of the paired t-test; NaN for fewer than 2 units or identical
            differences.
        p_wilcoxon: two-sided p-value of the Wilcoxon signed-rank test; NaN for fewer than 2
            units or no non-zero difference.
        n: how many units.
    """

    difference: float
    low: float
    high: float
    p_better: float
    p_t: float
    p_wilcoxon: float
    n: int


def compare(scores: Sequence[float], reference: Sequence[float], mode: str) -> Comparison:
    """Compare ``scores`` with ``reference`` (paired by position); ``mode`` max or min."""
    a, b = np.asarray(scores, dtype=float), np.asarray(reference, dtype=float)
    diff = a - b
    n = len(diff)
    if n == 0:
        return Comparison(*(math.nan,) * 6, 0)
    better = diff > 0 if mode == "max" else diff < 0
    p_better = float((better.sum() + 0.5 * (diff == 0).sum()) / n)
    if n < 2:
        return Comparison(float(diff[0]), math.nan, math.nan, p_better, math.nan, math.nan, 1)
    interval = stats.bootstrap(
        (diff,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
        method="percentile", rng=np.random.default_rng(SEED),
    ).confidence_interval  # fmt: skip
    constant = np.allclose(diff, diff[0], rtol=0.0, atol=1e-12)
    p_t = math.nan if constant else float(stats.ttest_rel(a, b).pvalue)
    nonzero = np.abs(diff) > 1e-12
    p_w = float(stats.wilcoxon(diff[nonzero]).pvalue) if nonzero.any() else math.nan
    return Comparison(
        float(diff.mean()), float(interval.low), float(interval.high), p_better, p_t, p_w, n
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given; NaN stays NaN and is not counted.

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    ``max over j <= i of min(1, (m - j + 1) p_(j))`` (Holm 1979, "A simple sequentially
    rejective multiple test procedure").
    """
    p = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for j, index in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]


def average_ranks(blocks: np.ndarray, mode: str) -> np.ndarray:
    """Mean rank of each column over the rows (blocks); rank 1 is the best, ties share ranks.

    Args:
        blocks: blocks x methods scores, no NaN.
        mode: max (larger is better) or min.
    """
    signed = -blocks if mode == "max" else blocks
    return stats.rankdata(signed, axis=1).mean(axis=0)


@dataclass(frozen=True)
class Friedman:
    """Friedman's test that all methods have the same mean rank.

    Attributes:
        statistic: the chi-square statistic (with scipy's correction for ties).
        p_value: its p-value with k - 1 degrees of freedom.
    """

    statistic: float
    p_value: float


def friedman(blocks: np.ndarray) -> Friedman | None:
    """Friedman's test over blocks x methods scores; None for fewer than 3 methods or 2 blocks."""
    if blocks.shape[1] < 3 or blocks.shape[0] < 2:
        return None
    result = stats.friedmanchisquare(*blocks.T)
    return Friedman(float(result.statistic), float(result.pvalue))


def critical_difference(methods: int, blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks: ``q_alpha sqrt(k (k + 1) / (6 N))``.

    ``q_alpha`` is the studentized range quantile with infinite degrees of freedom over
    ``sqrt(2)`` (Demšar 2006, table 5(a): 1.960 for 2 methods, 2.343 for 3, ...).
    """
    q = stats.studentized_range.ppf(1 - alpha, methods, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(methods * (methods + 1) / (6 * blocks)))


@dataclass(frozen=True)
class Posterior:
    """The Bayesian signed-rank test's posterior probabilities of a method against a reference.

    Attributes:
        better: P(the method is better by more than ``ROPE``).
        equivalent: P(the difference is within ``ROPE``).
        worse: P(the method is worse by more than ``ROPE``).
        n: how many paired units.
    """

    better: float
    equivalent: float
    worse: float
    n: int


def bayesian_signed_rank(
    scores: Sequence[float], reference: Sequence[float], mode: str, rope: float = ROPE
) -> Posterior:
    """Benavoli et al.'s Bayesian signed-rank test of ``scores`` against ``reference``.

    The prior is a Dirichlet process with strength 0.5 on a pseudo-observation at difference 0
    (baycomp's default, the paper's choice).
    """
    a, b = np.asarray(scores, dtype=float), np.asarray(reference, dtype=float)
    if len(a) == 0:
        return Posterior(math.nan, math.nan, math.nan, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        left, within, right = baycomp.SignedRankTest.probs(
            b, a, rope=rope, nsamples=POSTERIOR_SAMPLES, random_state=SEED
        )  # right: a - b > rope
    better, worse = (right, left) if mode == "max" else (left, right)
    return Posterior(float(better), float(within), float(worse), len(a))
