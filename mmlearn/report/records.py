"""What a report is built from, whichever store it was read from.

``StudyRecords`` holds four frames: the tidy final frame (one row per final run x pattern, the
rows the tables average), the search trials (one row per trial: state and epochs run), the
runs of every phase (their compute) and the worst-case rows (rates explored, validation scores).
``read_results`` fills them from a study folder (``results.parquet`` and the Optuna journal);
``mmlearn.report.from_aim`` fills the same frames from an Aim repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmlearn.errors import MmlearnError
from mmlearn.report.journal import read_trials
from mmlearn.study.spec import StudySpec

KEYS = ("study", "condition", "method", "cell", "seed", "pattern", "missing")
"""The leading columns of the tidy final frame; ``rate.*``, ``hp.*``, ``val.*``, ``test.*``,
``epochs``, ``wall_seconds`` and ``gpu_hours`` follow."""

RUN_COLUMNS = ("phase", "cell", "run", "wall_seconds", "cpu_hours", "gpu_hours")
_COSTS = ("epochs", "wall_seconds", "gpu_hours")
_PREFIXES = ("rate.", "hp.", "val.", "test.")


class ReportError(MmlearnError):
    """A report cannot be written: no such study, or nothing finished to report on."""


@dataclass(frozen=True)
class StudyRecords:
    """The frames a report is built from.

    Attributes:
        final: tidy final rows, columns ``KEYS`` then ``rate.*``, ``hp.*``, ``val.*``,
            ``test.*``, ``epochs``, ``wall_seconds``, ``gpu_hours``.
        trials: one row per search trial, ``journal.TRIAL_COLUMNS`` (state COMPLETE, PRUNED
            or FAIL; epochs run; value: the objective the search saw, NaN when unknown).
        runs: one row per run of any phase, columns ``RUN_COLUMNS`` (NaN where unknown).
        worst_case: rows of worst-case trials as in ``results.parquet`` (may be empty).
        source: where the records were read, for the report's header.
    """

    final: pd.DataFrame
    trials: pd.DataFrame
    runs: pd.DataFrame
    worst_case: pd.DataFrame
    source: str


def pattern_key(pattern: str, modalities: Sequence[str]) -> tuple[int, tuple[int, ...]]:
    """Sort key of a pattern name (``a+b``): fewer modalities first, then the study's order."""
    present = pattern.split("+")
    return len(present), tuple(modalities.index(m) for m in present)


def tidy_final(rows: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """The tidy final frame of final rows (one per run x pattern), sorted and with ``missing``.

    Args:
        rows: final rows with the columns of ``results.parquet`` (extra columns are dropped).
        spec: the study (its modality and method order).

    Returns:
        Columns ``KEYS``, then the prefixed columns that hold a value, then the costs; rows
        by condition, method (study order), seed and pattern (``pattern_key``).
    """
    modalities = spec.data.names
    frame = rows.copy()
    frame["condition"] = frame["condition"].fillna(frame["cell"].str.split("@").str[1])
    frame["missing"] = [len(modalities) - len(p.split("+")) for p in frame["pattern"]]
    prefixed = [
        c
        for prefix in _PREFIXES
        for c in sorted(frame.columns)
        if c.startswith(prefix) and frame[c].notna().any()
    ]
    frame = frame[[*KEYS, *prefixed, *_COSTS]]
    methods = [m.name for m in spec.methods]
    order = frame.assign(
        _method=frame["method"].map(methods.index),
        _pattern=frame["pattern"].map(lambda p: pattern_key(p, modalities)),
    )
    order = order.sort_values(["condition", "_method", "seed", "_pattern"], kind="stable")
    return frame.loc[order.index].reset_index(drop=True)


def read_results(folder: Path, spec: StudySpec) -> StudyRecords:
    """The records of the study in ``folder``: ``results.parquet`` and ``optuna.journal``.

    Raises:
        ReportError: no results file, or neither final nor worst-case rows in it.
    """
    path = folder / "results.parquet"
    if not path.is_file():
        raise ReportError(
            f"{folder}: no results.parquet, so no run of study {spec.name!r} has finished; "
            "run it with `mmlearn study run FILE` first"
        )
    rows = pd.read_parquet(path)
    final = rows[rows["phase"] == "final"]
    worst = rows[rows["phase"] == "worst_case"].reset_index(drop=True)
    if final.empty and worst.empty:
        raise ReportError(
            f"{path}: no final runs yet; rerun `mmlearn study run FILE` to finish them"
        )
    runs = rows.drop_duplicates(["phase", "cell", "run"])[list(RUN_COLUMNS)]
    return StudyRecords(
        final=tidy_final(final, spec) if not final.empty else final,
        trials=read_trials(folder / "optuna.journal", [c.id for c in spec.cells()]),
        runs=runs.reset_index(drop=True),
        worst_case=worst,
        source=f"{path} and {folder / 'optuna.journal'}",
    )
