"""``summary.md``: the report's tables as Markdown, in the order a reader asks for them.

Per condition, the method x pattern table of test scores and each method's score over runs;
then every method against the reference (bootstrap interval, probability of improvement, paired
t and Wilcoxon tests, Holm-adjusted), the mean ranks across conditions with Friedman's test,
the Bayesian signed-rank test, the robustness-curve areas; then the best hyperparameters per
cell, the search (trials run, pruned, failed; epochs saved by early stopping), the compute
spent, hyperparameter importance, the worst rates found (worst-case studies) and the plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mmlearn.report import robustness, stats, tables
from mmlearn.report.journal import EVALUATOR, MIN_COMPLETE, Importance
from mmlearn.report.records import StudyRecords, score_name, weighs_patterns
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
        return f"{mean:.4f} ({n} run{'s' if n != 1 else ''})"
    return f"{mean:.4f} ± {half_width:.4f}"


def _difference(mean: float, low: float, high: float) -> str:
    interval = "no interval" if math.isnan(low) else f"{low:+.4f}, {high:+.4f}"
    return f"{mean:+.4f} [{interval}]"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _rates(rows: pd.DataFrame) -> str:
    """The rates of ``rows``; per method when they differ (worst-case final runs)."""
    columns = [c for c in rows.columns if c.startswith("rate.")]
    per_method = rows.drop_duplicates("method").set_index("method")[columns]

    def named(rates: pd.Series) -> str:
        return ", ".join(f"{k.removeprefix('rate.')} {v:g}" for k, v in rates.items())

    if len(per_method.drop_duplicates()) == 1:
        return named(per_method.iloc[0])
    return "; ".join(f"{method}: {named(r)}" for method, r in per_method.iterrows())


def _condition(spec: StudySpec, final: pd.DataFrame, condition: str) -> list[str]:
    metric = spec.objective.metric
    rows = final[final["condition"] == condition]
    lines = [f"## Condition {condition}", "", f"Training missing rates: {_rates(rows)}.", ""]
    scores = tables.pattern_scores(rows, metric)
    patterns = list(dict.fromkeys(scores["pattern"]))
    lines += [f"Test {metric} per pattern (mean ± 95 % CI half-width over runs):", ""]
    lines += _table(
        ["method", *patterns],
        [
            [method, *(_score(r.mean, r.half_width, r.n) for r in group.itertuples())]
            for method, group in scores.groupby("method", sort=False)
        ],
    )
    means = tables.method_scores(rows, metric)
    weighted = weighs_patterns(spec)
    header = ["method", f"test {metric}: {score_name(spec)}", "runs"]
    lines += [f"Each run's {score_name(spec)}, mean ± 95 % CI half-width over runs:", ""]
    return lines + _table(
        [*header, *(["plain mean over patterns"] if weighted else [])],
        [
            [r.method, _score(r.mean, r.half_width, r.n), str(r.n),
             *([_score(r.plain_mean, r.plain_half_width, r.n)] if weighted else [])]
            for r in means.itertuples()
        ],
    )  # fmt: skip


def _comparisons(spec: StudySpec, final: pd.DataFrame, reference: str) -> list[str]:
    metric, mode = spec.objective.metric, spec.objective.direction
    found = tables.comparisons(final, metric, reference, mode)
    lines = [f"## Against {reference}", ""]
    if found.empty:
        return [*lines, f"{reference} has no final runs in this study: no comparison.", ""]
    lines += [
        f"Each method minus {reference} on the runs both have, paired by condition, fold and "
        f"seed (n: paired runs). Δ: mean difference of the run scores with its 95 % percentile "
        f"bootstrap interval; P(better): share of paired runs on which the method is better "
        f"(ties count half); p: two-sided paired t-test and Wilcoxon signed-rank test, raw and "
        f"**Holm-adjusted over all {len(found)} comparison{'s' if len(found) != 1 else ''} of "
        "this table**.",
        "",
    ]
    return lines + _table(
        ["condition", "method", "n", f"Δ vs {reference} [95 % CI]", "P(better)", "p t",
         "p t (Holm)", "p Wilcoxon", "p Wilcoxon (Holm)"],
        [
            [str(r.condition), r.method, str(r.n),
             _difference(r.difference, r.low, r.high), f"{r.p_better:.2f}",
             _p(r.p_t), _p(r.p_t_holm), _p(r.p_wilcoxon), _p(r.p_wilcoxon_holm)]
            for r in found.itertuples()
        ],
    )  # fmt: skip


def _ranks(spec: StudySpec, final: pd.DataFrame) -> list[str]:
    ranked = tables.ranks(final, spec.objective.metric, spec.objective.direction)
    lines = [
        "## Ranks across conditions",
        "",
        f"Mean rank of each method over {ranked.blocks} blocks, one per condition, fold and "
        "seed that every method ran (1 is the best; ties share their mean rank; Demšar 2006)"
        + (f"; {ranked.dropped} blocks lack a method's run and are left out." if ranked.dropped
           else "."),
    ]  # fmt: skip
    if ranked.friedman is None:
        lines.append("Friedman test: needs at least 3 methods and 2 blocks.")
    else:
        k = len(ranked.methods)
        lines.append(
            f"Friedman test: chi-square = {ranked.friedman.statistic:.3f} with {k - 1} degrees "
            f"of freedom, p = {_p(ranked.friedman.p_value)}."
        )
    if not math.isnan(ranked.critical_difference):
        lines.append(
            f"Nemenyi critical difference (alpha 0.05): {ranked.critical_difference:.3f}; two "
            "methods whose mean ranks differ by less are not significantly different "
            "(cd-diagram.png joins them)."
        )
    order = sorted(zip(ranked.mean_ranks, ranked.methods, strict=True))
    return [*lines, ""] + _table(["method", "mean rank"], [[m, f"{r:.2f}"] for r, m in order])


def _bayesian(spec: StudySpec, final: pd.DataFrame, reference: str) -> list[str]:
    metric, mode = spec.objective.metric, spec.objective.direction
    found = tables.bayesian(final, metric, reference, mode)
    if found.empty:
        return []
    lines = [
        f"## Bayesian signed-rank test against {reference}",
        "",
        f"Posterior probabilities that a method's run score is better than {reference}'s by "
        f"more than {stats.ROPE} (P(better)), within ±{stats.ROPE} (P(equivalent), the region "
        "of practical equivalence) or worse; the paired runs of every condition pooled "
        "(Benavoli et al. 2017, JMLR 18(77); baycomp's SignedRankTest, prior 0.5 at 0).",
        "",
    ]
    return lines + _table(
        ["method", "n", "P(better)", "P(equivalent)", "P(worse)"],
        [
            [r.method, str(r.n), f"{r.better:.3f}", f"{r.equivalent:.3f}", f"{r.worse:.3f}"]
            for r in found.itertuples()
        ],
    )


def _robustness(spec: StudySpec, final: pd.DataFrame) -> list[str]:
    modalities = spec.data.names
    found = robustness.areas(robustness.run_curves(final, spec.objective.metric, modalities))
    lines = [
        "## Robustness",
        "",
        "Area under each robustness curve (robustness-MODALITY.png): the expected test "
        f"{spec.objective.metric} when that modality is missing at rate r and the others at "
        "the run's training rates, each non-empty pattern weighted by its probability, "
        "averaged over r from 0 to 0.95 (trapezoidal area / 0.95); mean ± 95 % CI half-width "
        "over runs.",
        "",
    ]
    rows = []
    for (condition, method), group in found.groupby(["condition", "method"], sort=False):
        cells = {r.modality: _score(r.mean, r.half_width, r.n) for r in group.itertuples()}
        rows.append([str(condition), method, *(cells.get(m, "n/a") for m in modalities)])
    return lines + _table(["condition", "method", *modalities], rows)


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
             f"COMPLETE trials (at least {MIN_COMPLETE}), over the parameters that differ "
             "between them.", ""]  # fmt: skip
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
    lines = ["## Worst case", "", f"Each method's worst validation {metric} among the rates its "
             f"search explored, by the score the search minimised ({score_name(spec)}), with "
             "the plain mean over patterns of the same trial:", ""]  # fmt: skip
    return lines + _table(
        ["method", "trials", f"worst val {metric}", "plain mean over patterns",
         *(r.removeprefix("rate.") for r in rates)],
        [
            [r["method"], str(int((scores["method"] == r["method"]).sum())),
             f"{r['score']:.4f}", f"{r['plain']:.4f}", *(f"{r[c]:.2f}" for c in rates)]
            for _, r in worst.iterrows()
        ],
    )  # fmt: skip


def summary(
    spec: StudySpec,
    records: StudyRecords,
    importance: Sequence[Importance] | None,
    plots: Sequence[str],
    reference: str = tables.REFERENCE,
) -> str:
    """The Markdown of ``summary.md``.

    Args:
        spec: the study.
        records: what the report is built from.
        importance: per-cell hyperparameter importance; None leaves the section out.
        plots: file names of the plots beside ``summary.md``.
        reference: the method the others are compared with.
    """
    metric, final = spec.objective.metric, records.final
    lines = [
        f"# Study {spec.name}",
        "",
        f"Read from {records.source}.",
        f"Objective: test {metric} ({_BETTER[spec.objective.direction]} is better), the "
        "score of each cell's best configuration re-run with the final seeds. A run's score is "
        f"its {score_name(spec)}; the unit of replication is one final run, a (fold, seed) "
        "pair, and every interval, test and n counts runs.",
        "",
    ]
    if not final.empty:
        for condition in dict.fromkeys(final["condition"]):
            lines += _condition(spec, final, condition)
        lines += _comparisons(spec, final, reference) + _ranks(spec, final)
        lines += _bayesian(spec, final, reference) + _robustness(spec, final)
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
