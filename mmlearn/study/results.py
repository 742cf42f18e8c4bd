"""The rows of ``results.parquet`` and the per-cell summary of the final runs.

One row per (run, pattern): the study, cell, method, condition, phase (search | worst_case |
final), seed,
every hyperparameter (``hp.<name>``), the condition's rates (``rate.<modality>``), validation
and test metrics of the pattern (``val.<metric>``, ``test.<metric>``), epochs run, wall time
and CPU/GPU-hours (workers x per-worker devices x wall time).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmlearn.study.cells import Cell
from mmlearn.study.spec import StudySpec

_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class RunRecord:
    """One finished run (a search trial or a final run) of a cell.

    Attributes:
        cell: the cell.
        phase: ``search`` or ``final``.
        run: the Tune trial id, or ``final-<seed>``.
        seed: the training seed.
        values: the searched values of the run.
        epochs: epochs run.
        seconds: wall time.
        val: validation metrics (``{"patterns": {name: {metric: value}}}``).
        test: test metrics in the same form; None for search trials.
        state: the Optuna state of a search trial; None for final runs.
        rates: the training rates per modality; None takes the cell's condition's.
    """

    cell: Cell
    phase: str
    run: str
    seed: int
    values: Mapping[str, Any]
    epochs: int
    seconds: float
    val: Mapping[str, Any]
    test: Mapping[str, Any] | None = None
    state: str | None = None
    rates: Mapping[str, float] | None = None


def _cell_value(value: Any) -> Any:
    """A value Parquet can hold in a column of scalars: lists and tuples as JSON."""
    return value if isinstance(value, _SCALARS) else json.dumps(value)


def rows(spec: StudySpec, record: RunRecord) -> list[dict[str, Any]]:
    """The rows of ``record``, one per pattern of its validation metrics."""
    cell, resources = record.cell, spec.resources
    hyperparameters = {**cell.hyperparameters, **record.values}
    rates = record.rates
    if rates is None:
        rates = cell.condition.rates if cell.condition is not None else {}
    hours = record.seconds / 3600 * resources.workers
    base: dict[str, Any] = {
        "study": spec.name,
        "cell": cell.id,
        "method": cell.method,
        "condition": cell.condition.name if cell.condition is not None else None,
        "fold": cell.fold,
        "phase": record.phase,
        "run": record.run,
        "seed": record.seed,
        "state": record.state,
        **{f"hp.{k}": _cell_value(v) for k, v in sorted(hyperparameters.items())},
        **{f"rate.{m}": float(rates.get(m, 0.0)) for m in cell.modalities},
        "epochs": record.epochs,
        "wall_seconds": record.seconds,
        "cpu_hours": hours * resources.cpus_per_worker,
        "gpu_hours": hours * resources.gpus_per_worker,
    }
    out = []
    for pattern, metrics in record.val["patterns"].items():
        row = {**base, "pattern": pattern, **{f"val.{k}": v for k, v in metrics.items()}}
        if record.test is not None:
            row |= {f"test.{k}": v for k, v in record.test["patterns"][pattern].items()}
        out.append(row)
    return out


def write(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` to ``path`` atomically (a rerun never sees half a file)."""
    partial = path.with_suffix(".partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)


def final_table(frame: pd.DataFrame, metric: str) -> str:
    """Per cell: test ``metric`` (mean over patterns) as mean ± std over the final seeds."""
    column = f"test.{metric}"
    if frame.empty or column not in frame:
        return "no final runs"
    per_seed = frame.groupby(["cell", "seed"], sort=False)[column].mean()
    width = max(len(c) for c in frame["cell"]) + 2
    lines = [f"{'cell':<{width}}test {metric} (mean over patterns, mean ± std over seeds)"]
    for cell, scores in per_seed.groupby(level=0, sort=False):
        std = float(scores.std(ddof=1)) if len(scores) > 1 else math.nan
        lines.append(f"{cell:<{width}}{scores.mean():.4f} ± {std:.4f}  ({len(scores)} seeds)")
    return "\n".join(lines)
