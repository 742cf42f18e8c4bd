"""The report's tables: pure functions of the record frames.

Scores are the test values of the objective metric in the tidy final frame
(``mmlearn.report.records``). The unit of replication is one final run, a (fold, seed) pair
(``records.UNIT``): a run's score is its patterns' scores weighted by ``weight`` (their plain
mean, or the worst-case search's weighting), and every interval, test and n counts runs.
Methods are paired on the (condition, fold, seed) runs both have, never on row order. The
statistics are in ``mmlearn.report.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mmlearn.report import stats
from mmlearn.report.records import UNIT

REFERENCE = "redcore"
"""The method every other is compared with unless ``mmlearn report --reference`` names another."""
_RUN = ["condition", "method", *UNIT]
PHASES = ("search", "worst_case", "final")
"""The order of the phases in the compute table, whichever order the runs were read in."""


def run_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per final run: its score and its plain mean over patterns.

    Returns:
        Columns condition, method, fold, seed, score (the patterns' test ``metric`` weighted
        by ``weight``), plain (their unweighted mean); in the frame's order.
    """
    column = f"test.{metric}"
    frame = final.assign(_weighted=final[column] * final["weight"])
    grouped = frame.groupby(_RUN, sort=False, dropna=False)
    table = pd.DataFrame({"score": grouped["_weighted"].sum(), "plain": grouped[column].mean()})
    return table.reset_index()


def estimates(frame: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of ``keys`` (in the frame's order): ``stats.estimate`` of column ``value``.

    Returns:
        Columns ``keys``, mean, half_width, n.
    """
    rows = [
        {**dict(zip(keys, key, strict=True)), **vars(stats.estimate(group[value]))}
        for key, group in frame.groupby(list(keys), sort=False)
    ]
    return pd.DataFrame(rows, columns=[*keys, "mean", "half_width", "n"])


def pattern_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per condition, method and pattern: the test score over runs.

    Returns:
        Columns condition, method, pattern, mean, half_width, n; in the frame's order.
    """
    return estimates(final, ["condition", "method", "pattern"], f"test.{metric}")


def method_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per condition and method: the run score over runs, and the plain mean over patterns.

    Returns:
        Columns condition, method, mean, half_width, n, plain_mean, plain_half_width.
    """
    runs = run_scores(final, metric)
    rows = []
    for (condition, method), group in runs.groupby(["condition", "method"], sort=False):
        score, plain = stats.estimate(group["score"]), stats.estimate(group["plain"])
        rows.append(
            {"condition": condition, "method": method, "mean": score.mean,
             "half_width": score.half_width, "n": score.n, "plain_mean": plain.mean,
             "plain_half_width": plain.half_width}
        )  # fmt: skip
    columns = ["condition", "method", "mean", "half_width", "n", "plain_mean", "plain_half_width"]
    return pd.DataFrame(rows, columns=columns)


def _paired(runs: pd.DataFrame, method: str, reference: str) -> pd.DataFrame:
    """The runs of ``method`` and ``reference`` on the same units: columns score, reference."""
    own = runs[runs["method"] == method].set_index(["condition", *UNIT])["score"]
    base = runs[runs["method"] == reference].set_index(["condition", *UNIT])["score"]
    return pd.concat({"score": own, "reference": base}, axis=1, join="inner")


def comparisons(final: pd.DataFrame, metric: str, reference: str, mode: str) -> pd.DataFrame:
    """Per condition, each method against ``reference`` on the runs both have.

    The p-values of the t and Wilcoxon tests are adjusted by Holm's method, each over every
    comparison of the table (all conditions and methods): ``p_t_holm``, ``p_wilcoxon_holm``.

    Returns:
        Columns condition, method, then the fields of ``stats.Comparison``, then the two
        adjusted p-values; empty when ``reference`` has no runs.
    """
    runs = run_scores(final, metric)
    rows = []
    for condition, own in runs.groupby("condition", sort=False):
        if reference not in set(own["method"]):
            continue
        for method in dict.fromkeys(own["method"]):
            if method != reference:
                pairs = _paired(own, method, reference)
                found = stats.compare(pairs["score"], pairs["reference"], mode)
                rows.append({"condition": condition, "method": method, **vars(found)})
    columns = ["condition", "method", *stats.Comparison.__dataclass_fields__]
    table = pd.DataFrame(rows, columns=columns)
    table["p_t_holm"] = stats.holm(table["p_t"])
    table["p_wilcoxon_holm"] = stats.holm(table["p_wilcoxon"])
    return table


@dataclass(frozen=True)
class Ranks:
    """Methods ranked over blocks, one block per (condition, fold, seed) that every method ran.

    Attributes:
        methods: the methods, in study order.
        mean_ranks: each method's mean rank (1 is the best).
        blocks: how many complete blocks.
        dropped: blocks left out because a method lacks their run.
        friedman: Friedman's test; None for fewer than 3 methods or 2 blocks.
        critical_difference: Nemenyi's critical difference at alpha 0.05; NaN for one block.
    """

    methods: tuple[str, ...]
    mean_ranks: tuple[float, ...]
    blocks: int
    dropped: int
    friedman: stats.Friedman | None
    critical_difference: float


def rank_blocks(final: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """Run scores as blocks x methods (methods in the frame's order), complete blocks only.

    Returns:
        The frame (index condition, fold, seed) and how many incomplete blocks were dropped.
    """
    runs = run_scores(final, metric)
    methods = list(dict.fromkeys(runs["method"]))
    wide = runs.set_index(_RUN)["score"].unstack("method").reindex(columns=methods)
    complete = wide.dropna()
    return complete, len(wide) - len(complete)


def ranks(final: pd.DataFrame, metric: str, mode: str) -> Ranks:
    """Mean ranks of the methods over (condition, fold, seed) blocks, Friedman and Nemenyi."""
    blocks, dropped = rank_blocks(final, metric)
    values = blocks.to_numpy()
    n, k = values.shape
    mean = stats.average_ranks(values, mode) if n else np.full(k, math.nan)
    return Ranks(
        methods=tuple(blocks.columns),
        mean_ranks=tuple(float(r) for r in mean),
        blocks=n,
        dropped=dropped,
        friedman=stats.friedman(values),
        critical_difference=stats.critical_difference(k, n) if n > 1 and k > 1 else math.nan,
    )


def bayesian(final: pd.DataFrame, metric: str, reference: str, mode: str) -> pd.DataFrame:
    """Each method against ``reference``: the Bayesian signed-rank test over all paired runs.

    The runs of every condition are pooled: one paired value per (condition, fold, seed).

    Returns:
        Columns method, better, equivalent, worse, n; empty when ``reference`` has no runs.
    """
    runs = run_scores(final, metric)
    rows = []
    if reference in set(runs["method"]):
        for method in dict.fromkeys(runs["method"]):
            if method != reference:
                pairs = _paired(runs, method, reference)
                found = stats.bayesian_signed_rank(pairs["score"], pairs["reference"], mode)
                rows.append({"method": method, **vars(found)})
    return pd.DataFrame(rows, columns=["method", "better", "equivalent", "worse", "n"])


def missing_scores(final: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per condition, method and number of missing modalities: the test score over runs.

    Each run's score is its mean over the patterns that miss that many modalities.

    Returns:
        Columns condition, method, missing, mean, half_width, n.
    """
    keys = ["condition", "method", "missing"]
    column = f"test.{metric}"
    per_run = final.groupby([*keys, *UNIT], sort=False, dropna=False)[column].mean()
    return estimates(per_run.reset_index(), keys, column)


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
    """Per phase (in ``PHASES`` order) and in all (phase ``all``): runs, wall-clock hours,
    CPU-hours and GPU-hours.

    A sum is NaN when any of its runs lacks the number.
    """
    frame = runs.assign(wall_hours=runs["wall_seconds"] / 3600)
    grouped = frame.groupby("phase", sort=False)[["wall_hours", "cpu_hours", "gpu_hours"]]
    table = grouped.agg(lambda s: s.sum() if s.notna().all() else math.nan)
    table.insert(0, "runs", grouped.size())
    table = table.reindex([p for p in PHASES if p in table.index])
    table.loc["all"] = table.sum(skipna=False)
    return table.rename_axis("phase").reset_index()


def best_so_far(values: Sequence[float], mode: str) -> list[float]:
    """The best value after each trial (``mode`` max or min); NaN values are skipped."""
    pick = np.fmax if mode == "max" else np.fmin
    return list(pick.accumulate(np.asarray(values, dtype=float)))


def worst_case_scores(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per worst-case trial: method, cell, run, its rates and its validation scores.

    ``score`` is the score the search minimised: the patterns' validation ``metric`` weighted
    by ``weight`` (``records.with_weights``); ``plain`` is their unweighted mean.
    """
    rates = [c for c in rows.columns if c.startswith("rate.")]
    keys = ["method", "cell", "run", *rates]
    column = f"val.{metric}"
    frame = rows.assign(_weighted=rows[column] * rows["weight"])
    grouped = frame.groupby(keys, sort=False)
    table = pd.DataFrame({"score": grouped["_weighted"].sum(), "plain": grouped[column].mean()})
    return table.reset_index()
