"""What a report is built from, whichever store it was read from.

``StudyRecords`` holds four frames: the tidy final frame (one row per final run x pattern, the
rows the tables average), the search trials (one row per trial: state and epochs run), the
runs of every phase (their compute) and the worst-case rows (rates explored, validation scores).
``read_results`` fills them from a study folder (``results.parquet`` and the Optuna journal);
``mmlearn.report.from_aim`` fills the same frames from an Aim repository.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmlearn.errors import MmlearnError
from mmlearn.report.journal import read_trials
from mmlearn.study.spec import StudySpec
from mmlearn.study.worst_case import pattern_weights

KEYS = ("study", "condition", "method", "cell", "fold", "seed", "pattern", "missing", "weight")
"""The leading columns of the tidy final frame; ``rate.*``, ``hp.*``, ``val.*``, ``test.*``,
``epochs``, ``wall_seconds`` and ``gpu_hours`` follow."""
UNIT = ("fold", "seed")
"""What identifies a unit of replication, one final run, within a cell: its fold and seed."""

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
            or FAIL; epochs run; value: the objective the search saw, NaN when unknown;
            origin: ``defaults`` for the default configuration's trial, else None).
        runs: one row per run of any phase, columns ``RUN_COLUMNS`` (NaN where unknown).
        worst_case: rows of worst-case trials as in ``results.parquet``, with ``weight``
            (``with_weights``); may be empty.
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


def weighs_patterns(spec: StudySpec) -> bool:
    """True when a run's score weights its patterns by their probability under its rates.

    That is the score a worst-case search with ``applies_to: train_and_test`` minimised
    (``mmlearn.study.worst_case.weighted_score``); otherwise a run's score is its plain mean
    over the evaluated patterns.
    """
    return spec.worst_case is not None and spec.worst_case.applies_to == "train_and_test"


def score_name(spec: StudySpec) -> str:
    """What a run's score is, in words, for the report's headers."""
    if weighs_patterns(spec):
        return "pattern-probability-weighted score (what the search minimised)"
    return "mean over the evaluated patterns"


def with_weights(rows: pd.DataFrame, spec: StudySpec, run: Sequence[str]) -> pd.DataFrame:
    """``rows`` with ``weight``: each pattern's weight in the score of its run.

    Args:
        rows: one row per run x pattern, with ``pattern`` and ``rate.*``.
        spec: the study (``weighs_patterns``).
        run: the columns that identify a run.

    Returns:
        A copy with ``weight`` and a fresh index; the weights of a run sum to 1.
    """
    frame = rows.reset_index(drop=True)
    frame["weight"] = math.nan
    modalities = spec.data.names
    for _, group in frame.groupby(list(run), sort=False, dropna=False):
        if weighs_patterns(spec):
            first = group.iloc[0]
            rates = {m: float(first.get(f"rate.{m}", 0.0)) for m in modalities}
            weights = pattern_weights(rates, list(group["pattern"]))
            frame.loc[group.index, "weight"] = group["pattern"].map(weights)
        else:
            frame.loc[group.index, "weight"] = 1.0 / len(group)
    return frame


def tidy_final(rows: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """The tidy final frame of final rows (one per run x pattern), sorted, with ``missing``.

    Args:
        rows: final rows with the columns of ``results.parquet`` (extra columns are dropped).
        spec: the study (its modality and method order).

    Returns:
        Columns ``KEYS``, then the prefixed columns that hold a value, then the costs; rows
        by condition, method (study order), fold, seed and pattern (``pattern_key``). ``fold``
        is <NA> for data without folds; ``weight`` is the pattern's weight in its run's score
        (``with_weights``).
    """
    modalities = spec.data.names
    frame = rows.reset_index(drop=True)
    frame["fold"] = (frame["fold"] if "fold" in frame else pd.Series(pd.NA, frame.index)).astype(
        "Int64"
    )
    # a worst-case cell has no condition: its id, less the fold, names it
    named = frame["cell"].str.split("@").str[1].str.split("#").str[0]
    frame["condition"] = frame["condition"].fillna(named)
    frame["missing"] = [len(modalities) - len(p.split("+")) for p in frame["pattern"]]
    frame = with_weights(frame, spec, ("cell", *UNIT))
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
    order = order.sort_values(["condition", "_method", *UNIT, "_pattern"], kind="stable")
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
    worst = with_weights(rows[rows["phase"] == "worst_case"], spec, ("cell", "run"))
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
