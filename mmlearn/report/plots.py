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
from mmlearn.report.journal import Importance

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
    ax.set_title(f"{condition}: test {metric}, mean over seeds")
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
    """Best COMPLETE value against trial number, one panel per cell; PRUNED trials marked."""
    figure, axes = _grid(len(cells), "search: best so far")
    for ax, cell in zip(axes, cells, strict=True):
        own = trials[trials["cell"] == cell].sort_values("number")
        complete = own["value"].where(own["state"] == "COMPLETE")
        ax.step(own["number"], tables.best_so_far(complete, mode), where="post", label="best")
        ax.scatter(own["number"], complete, s=14, label="complete")
        pruned = own[own["state"] == "PRUNED"]
        ax.scatter(pruned["number"], pruned["value"], s=14, marker="x", label="pruned (last)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=cell, xlabel="trial", ylabel="validation score")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def worst_case(scores: pd.DataFrame, metric: str, path: Path) -> None:
    """Each method's validation score over the explored rates (``tables.worst_case_scores``).

    One panel per modality's rate, and one for the total rate.
    """
    rates = [c for c in scores.columns if c.startswith("rate.")]
    frame = scores.assign(total=scores[rates].sum(axis=1))
    figure, axes = _grid(len(rates) + 1, f"worst case: val {metric} (mean over patterns)")
    for ax, column in zip(axes, [*rates, "total"], strict=True):
        for method, group in frame.groupby("method", sort=False):
            ax.scatter(group[column], group["score"], s=16, label=method)
        label = "total rate" if column == "total" else f"rate of {column.removeprefix('rate.')}"
        ax.set(xlabel=label, ylabel=f"val {metric}")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
