"""The report's tables: pure functions of the record frames, with their statistics.

Scores are the test values of the objective metric in the tidy final frame
(``mmlearn.report.records``). A mean comes with the half-width of its two-sided 95 % Student-t
confidence interval over seeds (``t(0.975, n-1) * s / sqrt(n)``; none for one seed). A method
is compared with a baseline by a paired t-test over the (seed, pattern) scores both have:
patterns of one run are not independent, so the p-value is a guide, not a proof.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
BASELINE = "redcore"
"""The method every other is compared with."""


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its confidence interval.

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
class PairedTest:
    """A paired t-test of scores against a baseline's.

    Attributes:
        difference: mean of score - baseline over the pairs.
        p_value: two-sided p-value; NaN for fewer than 2 pairs or identical differences.
        pairs: how many pairs.
    """

    difference: float
    p_value: float
    pairs: int


def paired_t_test(scores: Sequence[float], baseline: Sequence[float]) -> PairedTest:
    """Paired t-test of ``scores`` against ``baseline`` (same length, pair by position)."""
    a, b = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.allclose(diff, diff[0], rtol=0.0, atol=1e-12):
        return PairedTest(float(diff.mean()) if len(diff) else math.nan, math.nan, len(diff))
    return PairedTest(float(diff.mean()), float(stats.ttest_rel(a, b).pvalue), len(diff))


def pattern_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per condition, method and pattern: the test score over seeds.

    Returns:
        Columns condition, method, pattern, mean, half_width, n; in the frame's order.
    """
    rows = [
        {"condition": c, "method": m, "pattern": p, **vars(estimate(group[f"test.{metric}"]))}
        for (c, m, p), group in final.groupby(["condition", "method", "pattern"], sort=False)
    ]
    return pd.DataFrame(rows, columns=["condition", "method", "pattern", "mean", "half_width", "n"])


def method_scores(final: pd.DataFrame, metric: str, baseline: str = BASELINE) -> pd.DataFrame:
    """Per condition and method: the mean over patterns, and the paired test against ``baseline``.

    The estimate is over seeds of each seed's mean over patterns. The test pairs the method's
    and the baseline's scores on the same (seed, pattern); NaN when the baseline is absent.

    Returns:
        Columns condition, method, mean, half_width, seeds, difference, p_value, pairs.
    """
    column = f"test.{metric}"
    rows = []
    for condition, frame in final.groupby("condition", sort=False):
        scores = frame.set_index(["method", "seed", "pattern"])[column]
        base = scores.xs(baseline) if baseline in scores.index.get_level_values(0) else None
        for method, group in frame.groupby("method", sort=False):
            e = estimate(group.groupby("seed")[column].mean())
            test = PairedTest(math.nan, math.nan, 0)
            if base is not None and method != baseline:
                own = scores.xs(method)
                common = own.index.intersection(base.index)
                test = paired_t_test(own[common], base[common])
            rows.append(
                {"condition": condition, "method": method, "mean": e.mean,
                 "half_width": e.half_width, "seeds": e.n, **vars(test)}
            )  # fmt: skip
    columns = ["condition", "method", "mean", "half_width", "seeds", "difference", "p_value",
               "pairs"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def missing_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per condition, method and number of missing modalities: the test score over seeds.

    Each seed's score is its mean over the patterns that miss that many modalities.

    Returns:
        Columns condition, method, missing, mean, half_width, n.
    """
    keys = ["condition", "method", "missing"]
    per_seed = final.groupby([*keys, "seed"], sort=False)[f"test.{metric}"].mean()
    rows = [
        {**dict(zip(keys, key, strict=True)), **vars(estimate(group))}
        for key, group in per_seed.groupby(level=[0, 1, 2], sort=False)
    ]
    return pd.DataFrame(rows, columns=[*keys, "mean", "half_width", "n"])


def best_hyperparameters(final: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per cell: the hyperparameters of its final runs (the best configuration of its search)."""
    hp = [c for c in final.columns if c.startswith("hp.")]
    first = final.drop_duplicates("cell").set_index("cell")[hp]
    return {
        cell: {k.removeprefix("hp."): v for k, v in row.items() if not _missing(v)}
        for cell, row in first.iterrows()
    }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def trial_counts(trials: pd.DataFrame, cells: Sequence[str], max_epochs: int) -> pd.DataFrame:
    """Per cell: trials run, COMPLETE, PRUNED and FAIL, epochs run and the epoch budget.

    Args:
        trials: one row per search trial (``mmlearn.report.records.TRIAL_COLUMNS``).
        cells: cell ids, in study order (cells without trials get zeros).
        max_epochs: the epochs a full-budget trial reaches.
    """
    rows = []
    for cell in cells:
        own = trials[trials["cell"] == cell]
        states = own["state"].value_counts()
        rows.append(
            {"cell": cell, "trials": len(own), "complete": int(states.get("COMPLETE", 0)),
             "pruned": int(states.get("PRUNED", 0)), "failed": int(states.get("FAIL", 0)),
             "epochs": int(own["epochs"].sum()), "budget": len(own) * max_epochs}
        )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["cell", "trials", "complete", "pruned", "failed", "epochs", "budget"]
    )


def early_stopping_saving(counts: pd.DataFrame) -> float:
    """Share of the search's epochs that early stopping saved: 1 - epochs run / budget.

    The budget is every trial run to the full epochs; NaN without trials.
    """
    budget = counts["budget"].sum()
    return 1.0 - counts["epochs"].sum() / budget if budget else math.nan


def compute_spent(runs: pd.DataFrame) -> pd.DataFrame:
    """Per phase and in all (phase ``all``): runs, wall-clock hours, CPU-hours and GPU-hours.

    A sum is NaN when any of its runs lacks the number.
    """
    frame = runs.assign(wall_hours=runs["wall_seconds"] / 3600)
    grouped = frame.groupby("phase", sort=False)[["wall_hours", "cpu_hours", "gpu_hours"]]
    table = grouped.agg(lambda s: s.sum() if s.notna().all() else math.nan)
    table.insert(0, "runs", grouped.size())
    table.loc["all"] = table.sum(skipna=False)
    return table.rename_axis("phase").reset_index()


def best_so_far(values: Sequence[float], mode: str) -> list[float]:
    """The best value after each trial (``mode`` max or min); NaN values are skipped."""
    pick = np.fmax if mode == "max" else np.fmin
    return list(pick.accumulate(np.asarray(values, dtype=float)))


def worst_case_scores(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per worst-case trial: method, cell, run, its rates and its validation score.

    The score is the trial's validation ``metric`` averaged over patterns (unweighted).
    """
    rates = [c for c in rows.columns if c.startswith("rate.")]
    keys = ["method", "cell", "run", *rates]
    table = rows.groupby(keys, sort=False)[f"val.{metric}"].mean().rename("score")
    return table.reset_index()
