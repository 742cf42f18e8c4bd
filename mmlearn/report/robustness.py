"""Robustness curves: the expected test score as one modality's missing rate grows.

For a final run with per-pattern test scores ``s_p`` and training rates ``rho`` (its condition's,
or the worst rates in worst-case mode), the curve of modality ``m`` at rate ``r`` is

    E_m(r) = sum_p w_p(r) s_p,   w_p(r) = pi_p(r) / sum_q pi_q(r),
    pi_p(r) = prod_{j in p} (1 - rho'_j) * prod_{j not in p} rho'_j,   rho' = rho with rho'_m = r,

over the run's evaluated patterns p (each non-empty; the empty pattern is excluded and the
probabilities renormalised over the rest), i.e. the score expected when every modality is
missing independently at its rate (``mmlearn.study.worst_case.pattern_weights``, the weighting
of RedCore's equal training and test rates). ``RATES`` is the grid r = 0, 0.05, ..., 0.95.

The area of a curve is its trapezoidal integral over the grid divided by the grid's width
(0.95): the mean expected score over r, on the score's own scale. A run's areas are computed
per run, so their mean over runs comes with a Student-t interval like every other score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mmlearn.report.records import UNIT
from mmlearn.report.tables import estimates
from mmlearn.study.worst_case import pattern_weights

RATES = tuple(round(0.05 * i, 2) for i in range(20))
"""The missing rates of a curve: 0 to 0.95 by 0.05."""
_RUN = ["condition", "method", *UNIT]


def expected_scores(
    scores: Mapping[str, float], rates: Mapping[str, float], modality: str, grid: Sequence[float]
) -> np.ndarray:
    """``E_m(r)`` for each r of ``grid``: ``scores`` (pattern -> score) weighted by probability.

    Args:
        scores: the run's test score on each evaluated pattern (``a+b`` names, none empty).
        rates: every modality's missing rate; ``modality``'s is replaced by each r.
        modality: the modality whose rate varies.
        grid: the rates r.
    """
    patterns = list(scores)
    values = np.array([scores[p] for p in patterns])
    return np.array(
        [
            np.dot([w[p] for p in patterns], values)
            for w in (pattern_weights({**rates, modality: r}, patterns) for r in grid)
        ]
    )


def area(curve: Sequence[float], grid: Sequence[float]) -> float:
    """The trapezoidal area under ``curve`` over ``grid``, divided by the grid's width."""
    return float(np.trapezoid(curve, grid) / (grid[-1] - grid[0]))


def run_curves(final: pd.DataFrame, metric: str, modalities: Sequence[str]) -> pd.DataFrame:
    """Every final run's curve for every modality.

    Returns:
        Columns condition, method, fold, seed, modality, rate, score; one row per run x
        modality x rate of ``RATES``.
    """
    rows = []
    for key, run in final.groupby(_RUN, sort=False, dropna=False):
        first = run.iloc[0]
        rates = {m: float(first.get(f"rate.{m}", 0.0)) for m in modalities}
        scores = dict(zip(run["pattern"], run[f"test.{metric}"], strict=True))
        for modality in modalities:
            curve = expected_scores(scores, rates, modality, RATES)
            base = {**dict(zip(_RUN, key, strict=True)), "modality": modality}
            rows += [
                {**base, "rate": r, "score": float(s)} for r, s in zip(RATES, curve, strict=True)
            ]
    return pd.DataFrame(rows, columns=[*_RUN, "modality", "rate", "score"])


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The mean curve over runs: columns condition, method, modality, rate, score."""
    keys = ["condition", "method", "modality", "rate"]
    return curves.groupby(keys, sort=False)["score"].mean().reset_index()


def areas(curves: pd.DataFrame) -> pd.DataFrame:
    """Per condition, method and modality: the area under the curve over runs.

    Returns:
        Columns condition, method, modality, mean, half_width, n.
    """
    keys = ["condition", "method", "modality"]
    per_run = curves.groupby([*keys, *UNIT], sort=False, dropna=False)["score"].agg(
        lambda s: area(s.to_numpy(), RATES)
    )
    return estimates(per_run.reset_index(), keys, "score")
