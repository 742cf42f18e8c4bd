"""``summary.md``: the report's tables as Markdown, in the order a reader asks for them.

Per condition, the method x pattern table of test scores and each method's mean over patterns
with its paired test against the baseline; then the best hyperparameters per cell, the search
(trials run, pruned, failed; epochs saved by early stopping), the compute spent, hyperparameter
importance, the worst rates found (worst-case studies) and the plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mmlearn.report import tables
from mmlearn.report.journal import EVALUATOR, Importance
from mmlearn.report.records import StudyRecords
from mmlearn.study.spec import StudySpec

_BETTER = {"max": "larger", "min": "smaller"}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _number(value: Any) -> str:
    """A value for a table cell: floats to 4 significant digits, whole floats as integers."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def _score(mean: float, half_width: float, n: int) -> str:
    if math.isnan(half_width):
        return f"{mean:.4f} ({n} seed{'s' if n != 1 else ''})"
    return f"{mean:.4f} ± {half_width:.4f}"


def _rates(rows: pd.DataFrame) -> str:
    """The rates of ``rows``; per method when they differ (worst-case final runs)."""
    columns = [c for c in rows.columns if c.startswith("rate.")]
    per_method = rows.drop_duplicates("method").set_index("method")[columns]

    def named(rates: pd.Series) -> str:
        return ", ".join(f"{k.removeprefix('rate.')} {v:g}" for k, v in rates.items())

    if len(per_method.drop_duplicates()) == 1:
        return named(per_method.iloc[0])
    return "; ".join(f"{method}: {named(r)}" for method, r in per_method.iterrows())


def _condition(final: pd.DataFrame, metric: str, condition: str) -> list[str]:
    rows = final[final["condition"] == condition]
    lines = [f"## Condition {condition}", "", f"Training missing rates: {_rates(rows)}.", ""]
    scores = tables.pattern_scores(rows, metric)
    patterns = list(dict.fromkeys(scores["pattern"]))
    lines += [f"Test {metric} per pattern (mean ± 95 % CI half-width over seeds):", ""]
    lines += _table(
        ["method", *patterns],
        [
            [method, *(_score(r.mean, r.half_width, r.n) for r in group.itertuples())]
            for method, group in scores.groupby("method", sort=False)
        ],
    )
    means = tables.method_scores(rows, metric)
    header = ["method", f"mean over patterns ({metric})", "seeds"]
    if tables.BASELINE not in set(means["method"]):
        lines += [f"{tables.BASELINE} is not in this study: no paired test.", ""]
        return lines + _table(
            header,
            [[r.method, _score(r.mean, r.half_width, r.seeds), str(r.seeds)]
             for r in means.itertuples()],
        )  # fmt: skip
    lines += [
        f"Paired t-test against {tables.BASELINE} over the (seed, pattern) pairs both have "
        "(two-sided; patterns of one run are not independent, so read p as a guide):",
        "",
    ]
    body = []
    for r in means.itertuples():
        own = r.method == tables.BASELINE
        diff = "baseline" if own else f"{r.difference:+.4f}"
        body.append(
            [r.method, _score(r.mean, r.half_width, r.seeds), str(r.seeds), diff,
             "" if own else _number(r.p_value), "" if own else str(r.pairs)]
        )  # fmt: skip
    return lines + _table([*header, f"Δ vs {tables.BASELINE}", "p", "pairs"], body)


def _search(spec: StudySpec, records: StudyRecords) -> list[str]:
    cells = [c.id for c in spec.cells()]
    counts = tables.trial_counts(records.trials, cells, spec.max_epochs)
    saving = tables.early_stopping_saving(counts)
    lines = ["## Search", ""]
    lines += _table(
        ["cell", "trials", "complete", "pruned", "failed", "epochs run / budget"],
        [
            [r.cell, str(r.trials), str(r.complete), str(r.pruned), str(r.failed),
             f"{r.epochs} / {r.budget}"]
            for r in counts.itertuples()
        ],
    )  # fmt: skip
    epochs, budget = counts["epochs"].sum(), counts["budget"].sum()
    if budget:
        lines += [
            f"Early stopping saved {saving:.1%} of the search epochs: 1 - epochs run / (trials x "
            f"max epochs) = 1 - {epochs} / ({counts['trials'].sum()} x {spec.max_epochs}).",
            "",
        ]
    return lines


def _compute(records: StudyRecords) -> list[str]:
    spent = tables.compute_spent(records.runs)
    return ["## Compute", ""] + _table(
        ["phase", "runs", "wall-clock hours", "CPU-hours", "GPU-hours"],
        [
            [r.phase, str(r.runs), _number(r.wall_hours), _number(r.cpu_hours),
             _number(r.gpu_hours)]
            for r in spent.itertuples()
        ],
    )  # fmt: skip


def _importance(found: Sequence[Importance]) -> list[str]:
    lines = ["## Hyperparameter importance", "", f"{EVALUATOR} evaluator on each cell's "
             "COMPLETE trials, over the parameters that differ between them.", ""]  # fmt: skip
    rows = [
        [i.cell, i.note or ", ".join(f"{k} {v:.2f}" for k, v in i.values.items())] for i in found
    ]
    return lines + _table(["cell", "importance"], rows)


def _worst_case(spec: StudySpec, rows: pd.DataFrame) -> list[str]:
    metric = spec.objective.metric
    scores = tables.worst_case_scores(rows, metric)
    grouped = scores.groupby("method", sort=False)["score"]
    worst = scores.loc[grouped.idxmin() if spec.objective.direction == "max" else grouped.idxmax()]
    rates = [c for c in scores.columns if c.startswith("rate.")]
    lines = ["## Worst case", "", f"Each method's worst validation {metric} (mean over "
             "patterns) among the rates its search explored:", ""]  # fmt: skip
    return lines + _table(
        ["method", "trials", f"worst val {metric}", *(r.removeprefix("rate.") for r in rates)],
        [
            [r["method"], str(int((scores["method"] == r["method"]).sum())),
             f"{r['score']:.4f}", *(f"{r[c]:.2f}" for c in rates)]
            for _, r in worst.iterrows()
        ],
    )  # fmt: skip


def summary(
    spec: StudySpec,
    records: StudyRecords,
    importance: Sequence[Importance] | None,
    plots: Sequence[str],
) -> str:
    """The Markdown of ``summary.md``.

    Args:
        spec: the study.
        records: what the report is built from.
        importance: per-cell hyperparameter importance; None leaves the section out.
        plots: file names of the plots beside ``summary.md``.
    """
    metric, final = spec.objective.metric, records.final
    lines = [
        f"# Study {spec.name}",
        "",
        f"Read from {records.source}.",
        f"Objective: test {metric} ({_BETTER[spec.objective.direction]} is better), the "
        "score of each cell's best configuration re-run with the final seeds.",
        "",
    ]
    for condition in dict.fromkeys(final["condition"]) if not final.empty else ():
        lines += _condition(final, metric, condition)
    if not final.empty:
        best = tables.best_hyperparameters(final)
        lines += ["## Best hyperparameters", ""] + _table(
            ["cell", "hyperparameters (fixed and searched)"],
            [[c, ", ".join(f"{k}={_number(v)}" for k, v in hp.items())] for c, hp in best.items()],
        )
    lines += _search(spec, records) + _compute(records)
    if importance is not None:
        lines += _importance(importance)
    if not records.worst_case.empty:
        lines += _worst_case(spec, records.worst_case)
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    return "\n".join(lines)
