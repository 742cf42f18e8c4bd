"""Shared by the results benchmarks: every method under imbalanced conditions, per pattern.

Every method trains on the same incomplete data (``per_epoch`` masks at the condition's
rates) for a fixed number of epochs, once per seed; the best epoch on validation is evaluated
once on test, under every non-empty pattern. ``write_results`` writes the Markdown tables
(mean ± std of test accuracy over the seeds) that docs/results-*.md hold.
"""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlearn.data.missing import evaluation_patterns
from mmlearn.data.store import FeatureStore
from mmlearn.train.config import TrainConfig
from mmlearn.train.run import TrainRequest, train_model
from tests.benchmarks.report import machine_summary


@dataclass(frozen=True)
class ResultsGrid:
    """Which runs fill the tables.

    Attributes:
        store: the opened store every run trains on.
        conditions: heading -> per-modality training missing rates.
        methods: method names, one table row each.
        seeds: one run per seed; cells give mean ± std over them.
        epochs: epochs per run (batch 128).
        hyperparameters: method -> overrides of its defaults.
        lr: Adam's learning rate.
    """

    store: FeatureStore
    conditions: Mapping[str, Mapping[str, float]]
    methods: Sequence[str]
    seeds: Sequence[int]
    epochs: int
    hyperparameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lr: float = 2e-4


def cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def method_rows(grid: ResultsGrid) -> Iterator[tuple[str, str]]:
    """(condition, Markdown table row) of each method, as soon as its seeds have run.

    The seeds of a row train at once, one spawned process each (each run is a pure function
    of its request and seed).
    """
    patterns = [p.name for p in evaluation_patterns(grid.store.names)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(grid.seeds), mp_context=spawn) as pool:
        for condition, rates in grid.conditions.items():
            for method in grid.methods:
                requests = [
                    TrainRequest(
                        method,
                        str(grid.store.path),
                        TrainConfig(epochs=grid.epochs, batch_size=128, lr=grid.lr, seed=seed),
                        rates=rates,
                        hyperparameters=grid.hyperparameters.get(method, {}),
                    )
                    for seed in grid.seeds
                ]
                results = list(pool.map(train_model, requests))
                scores = {
                    p: [r["test"]["patterns"][p]["accuracy"] for r in results] for p in patterns
                }
                scores["mean"] = [r["test"]["mean"]["accuracy"] for r in results]
                print(f"{condition} {method}: {scores['mean']}", flush=True)
                cells = " | ".join(cell(scores[p]) for p in [*patterns, "mean"])
                yield condition, f"| {method} | {cells} |"


def condition_tables(grid: ResultsGrid, rows: Mapping[str, Sequence[str]]) -> list[str]:
    """Markdown lines: one table per condition (of those with rows), one column per pattern."""
    patterns = [p.name for p in evaluation_patterns(grid.store.names)]
    header = "| method | " + " | ".join(patterns) + f" | mean of {len(patterns)} |"
    sections = []
    for condition, table in rows.items():
        sections += [
            f"## Training rates {condition}",
            "",
            header,
            "|" + "---|" * (len(patterns) + 2),
            *table,
            "",
        ]
    return sections


def protocol_paragraph(grid: ResultsGrid, command: str) -> str:
    """The paragraph that says how the tables were made."""
    lr = f"{grid.lr:.0e}".replace("e-0", "e-")  # 2e-4, as the docs write it
    return (
        f"Test accuracy per evaluation pattern (every test sample under each of the "
        f"{len(evaluation_patterns(grid.store.names))} non-empty patterns) and the mean over "
        f"them, mean ± std over seeds {', '.join(map(str, grid.seeds))}. Official default "
        f"hyperparameters, {grid.epochs} epochs, batch 128, lr {lr}, best epoch on "
        "validation macro-F1. Every method trains on the same `per_epoch` masks at the "
        "condition's rates (methods that simulate missing modalities themselves, as MMIN "
        f"and UME-MMA do, add their own on top). Produced by `{command}`."
    )


SAME_ROWS = (
    "`modality_dropout` differs from `early_fusion` only by its training protocol "
    "(random non-empty patterns); under the shared `per_epoch` masks the two are the "
    "same model trained on the same batches, so their rows are identical."
)


def write_results(
    out: Path, title: str, grid: ResultsGrid, command: str, before: Sequence[str] = ()
) -> None:
    """Run the grid and write the results document, again after every finished row.

    Until the last row the document says how many rows it holds, so that a run cut short
    leaves honest partial tables.

    Args:
        out: the Markdown file.
        title: its heading.
        grid: the runs.
        command: the command that produced it, named in the text.
        before: lines between the heading and the protocol paragraph.
    """
    head = [
        f"# {title}",
        "",
        *before,
        protocol_paragraph(grid, command),
        "",
        SAME_ROWS,
        "",
        machine_summary(),
        "",
    ]
    total = len(grid.conditions) * len(grid.methods)
    rows: dict[str, list[str]] = {}
    for done, (condition, row) in enumerate(method_rows(grid), start=1):
        rows.setdefault(condition, []).append(row)
        partial = [f"**Partial: {done} of {total} rows so far.**", ""] if done < total else []
        text = "\n".join([*head, *partial, *condition_tables(grid, rows)])
        out.write_text(text)
    print(text)
