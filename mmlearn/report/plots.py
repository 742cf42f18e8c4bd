"""The report's PNG plots, drawn with matplotlib's object API on the Agg canvas (no display).

Each function draws one figure from a frame of ``mmlearn.report.tables`` and writes it to the
path it is given. Figures with one panel per condition, cell or modality lay them out in rows
of at most ``COLUMNS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmlearn.report import tables
from mmlearn.report.journal import DEFAULTS, Importance

COLUMNS = 3
_PANEL = (4.5, 3.2)  # inches per panel


def _grid(panels: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure with ``panels`` axes in rows of at most ``COLUMNS``; spare axes hidden."""
    cols = min(panels, COLUMNS)
    rows = math.ceil(panels / cols)
    figure = Figure(figsize=(_PANEL[0] * cols, _PANEL[1] * rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel())
    for spare in axes[panels:]:
        spare.set_visible(False)
    figure.suptitle(title)
    return figure, axes[:panels]


def heatmap(scores: pd.DataFrame, metric: str, mode: str, condition: str, path: Path) -> None:
    """Method x pattern test scores of one condition (``tables.pattern_scores`` rows)."""
    grid = scores.pivot(index="method", columns="pattern", values="mean")
    grid = grid.loc[list(dict.fromkeys(scores["method"])), list(dict.fromkeys(scores["pattern"]))]
    width = 1.6 + 1.0 * grid.shape[1]
    figure = Figure(figsize=(width, 1.6 + 0.5 * grid.shape[0]), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(
        grid.to_numpy(), cmap="viridis" if mode == "max" else "viridis_r", aspect="auto"
    )
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w", fontsize=8)
    figure.colorbar(image, ax=ax, label=f"test {metric}")
    ax.set_title(f"{condition}: test {metric}, mean over runs")
    figure.savefig(path, dpi=110)


def by_missing(scores: pd.DataFrame, metric: str, path: Path) -> None:
    """Test score against the number of missing modalities (``tables.missing_scores`` rows)."""
    conditions = list(dict.fromkeys(scores["condition"]))
    figure, axes = _grid(len(conditions), f"test {metric} by missing modalities (95 % CI)")
    for ax, condition in zip(axes, conditions, strict=True):
        rows = scores[scores["condition"] == condition]
        for method, group in rows.groupby("method", sort=False):
            group = group.sort_values("missing")
            ax.errorbar(group["missing"], group["mean"], yerr=group["half_width"].fillna(0),
                        marker="o", capsize=3, label=method)  # fmt: skip
        ax.set_xticks(sorted(rows["missing"].unique()))
        ax.set(title=condition, xlabel="missing modalities", ylabel=f"test {metric}")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def importance(found: Sequence[Importance], path: Path) -> None:
    """Hyperparameter importance, one panel per cell (a note where there is none)."""
    figure, axes = _grid(len(found), "hyperparameter importance")
    for ax, item in zip(axes, found, strict=True):
        ax.set_title(item.cell)
        if item.note:
            ax.text(0.5, 0.5, item.note, ha="center", va="center", wrap=True, fontsize=8)
            ax.set_axis_off()
            continue
        names = list(item.values)[::-1]
        ax.barh(names, [item.values[n] for n in names])
        ax.set_xlabel("importance")
    figure.savefig(path, dpi=110)


def best_so_far(trials: pd.DataFrame, cells: Sequence[str], mode: str, path: Path) -> None:
    """Best COMPLETE value against trial number, one panel per cell; PRUNED trials marked.

    A COMPLETE trial of the method's default configuration (origin ``defaults``) is drawn as
    a dashed reference line.
    """
    figure, axes = _grid(len(cells), "search: best so far")
    for ax, cell in zip(axes, cells, strict=True):
        own = trials[trials["cell"] == cell].sort_values("number")
        complete = own["value"].where(own["state"] == "COMPLETE")
        ax.step(own["number"], tables.best_so_far(complete, mode), where="post", label="best")
        ax.scatter(own["number"], complete, s=14, label="complete")
        pruned = own[own["state"] == "PRUNED"]
        ax.scatter(pruned["number"], pruned["value"], s=14, marker="x", label="pruned (last)")
        defaults = complete[own["origin"] == DEFAULTS].dropna()
        if not defaults.empty:
            ax.axhline(defaults.iloc[0], color="grey", linestyle="--", label="defaults")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=cell, xlabel="trial", ylabel="validation score")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def worst_case(scores: pd.DataFrame, metric: str, score: str, path: Path) -> None:
    """Each method's validation score over the explored rates (``tables.worst_case_scores``).

    One panel per modality's rate, and one for the total rate; ``score`` names the score (the
    one the search minimised).
    """
    rates = [c for c in scores.columns if c.startswith("rate.")]
    frame = scores.assign(total=scores[rates].sum(axis=1))
    figure, axes = _grid(len(rates) + 1, f"worst case: val {metric}, {score}")
    for ax, column in zip(axes, [*rates, "total"], strict=True):
        for method, group in frame.groupby("method", sort=False):
            ax.scatter(group[column], group["score"], s=16, label=method)
        label = "total rate" if column == "total" else f"rate of {column.removeprefix('rate.')}"
        ax.set(xlabel=label, ylabel=f"val {metric}")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def critical_difference(ranks: tables.Ranks, path: Path) -> None:
    """Demšar's (2006) critical-difference diagram of ``ranks``.

    Methods sit at their mean rank on an axis from 1 (best, left) to k; a bar above shows the
    Nemenyi critical difference; thick lines join methods whose mean ranks differ by less.
    """
    k = len(ranks.methods)
    order = sorted(zip(ranks.mean_ranks, ranks.methods, strict=True))
    half = math.ceil(k / 2)
    figure = Figure(figsize=(7.0, 1.6 + 0.32 * half), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.set_xlim(0.5 - 1.2, k + 0.5 + 1.2)
    ax.set_ylim(-(half + 1.5), 1.6)
    ax.set_axis_off()
    ax.hlines(0, 1, k, color="black")
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black")
        ax.text(r, 0.25, str(r), ha="center", va="bottom", fontsize=9)
    cd = ranks.critical_difference
    if not math.isnan(cd):
        ax.hlines(1.2, 1, 1 + cd, color="black", linewidth=2)
        ax.text(1 + cd / 2, 1.3, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (rank, method) in enumerate(order):
        left = i < half
        row = -(i + 1) if left else -(k - i)
        end = 1 - 1.0 if left else k + 1.0
        ax.plot([rank, rank, end], [0, row, row], color="black", linewidth=0.8)
        ax.text(end + (-0.05 if left else 0.05), row, f"{method} ({rank:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)  # fmt: skip
    if not math.isnan(cd):
        _join_cliques([r for r, _ in order], cd, ax)
    ax.set_title(f"mean ranks over {ranks.blocks} blocks (Nemenyi, alpha 0.05)", fontsize=10)
    figure.savefig(path, dpi=110)


def _join_cliques(mean_ranks: Sequence[float], cd: float, ax: Axes) -> None:
    """Thick lines under the axis over each maximal run of ranks spanning less than ``cd``."""
    spans, last = [], -1
    for i in range(len(mean_ranks)):
        j = max(j for j in range(i, len(mean_ranks)) if mean_ranks[j] - mean_ranks[i] < cd)
        if j > i and j > last:
            spans.append((mean_ranks[i], mean_ranks[j]))
            last = j
    for n, (low, high) in enumerate(spans):
        y = -0.3 - 0.2 * n
        ax.hlines(y, low - 0.03, high + 0.03, color="black", linewidth=3)


def robustness(curves: pd.DataFrame, modality: str, metric: str, path: Path) -> None:
    """The robustness curves of one modality, one panel per condition, one line per method.

    Args:
        curves: ``mmlearn.report.robustness.mean_curves`` rows.
        modality: the modality whose rate varies.
        metric: the objective metric.
        path: the PNG to write.
    """
    own = curves[curves["modality"] == modality]
    conditions = list(dict.fromkeys(own["condition"]))
    figure, axes = _grid(len(conditions), f"expected test {metric} as {modality} goes missing")
    for ax, condition in zip(axes, conditions, strict=True):
        rows = own[own["condition"] == condition]
        for method, group in rows.groupby("method", sort=False):
            ax.plot(group["rate"], group["score"], label=method)
        ax.set(title=str(condition), xlabel=f"missing rate of {modality}",
               ylabel=f"expected test {metric}")  # fmt: skip
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
