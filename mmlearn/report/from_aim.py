"""Read a study's records from its Aim repository, through Aim's query API alone.

The runs are those of the Aim experiment named after the study, one per Tune trial, in the
layout the tracking callback writes: ``run["mmlearn"]`` (study, cell, method, condition,
rates, phase, seed, trial_id, number, hparams, resources, ...), ``run["outcome"]`` (status,
epochs, wall_seconds, gpu_hours) and metrics tracked with the context ``{"split": "val" |
"test", "pattern": name | "mean"}``. A final run's test metrics are tracked once, at the step
of its best validation epoch; its validation metrics at that step are the ones kept.

Aim 3.29 answers queries about run parameters from an index that ``aim up`` keeps up to date;
the runs of the study are indexed first (as ``aim up`` and ``aim storage reindex`` do), so that
a report works on a repository no UI has opened.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pandas as pd
from aim import Repo
from aim.sdk.index_manager import RepoIndexManager
from aim.sdk.types import QueryReportMode
from aimrocks.errors import RocksIOError

from mmlearn.report.journal import TRIAL_COLUMNS
from mmlearn.report.records import ReportError, StudyRecords, tidy_final, with_weights
from mmlearn.study.cells import Cell
from mmlearn.study.spec import StudySpec

log = logging.getLogger(__name__)

STATES = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
"""Aim outcome status -> Optuna trial state."""

_QUIET = QueryReportMode.DISABLED


def _cell_value(value: Any) -> Any:
    """A hyperparameter as ``results.parquet`` holds it: lists and mappings as JSON."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def _open(location: str) -> Repo:
    if not Repo.is_remote_path(location) and not Repo.exists(location):
        raise ReportError(
            f"{location}: no Aim repository there; give the study's tracking repository with "
            "--aim-repo, or run the study with tracking.aim set"
        )
    return Repo.from_path(location)


def _runs(repo: Repo, study: str) -> list[dict[str, Any]]:
    """Every mmlearn run of ``study``: its hash, ``mmlearn`` and ``outcome`` (None if unset)."""
    query = f'run.experiment == "{study}"'
    hashes = [r.run.hash for r in repo.query_runs(query, report_mode=_QUIET).iter_runs()]
    if not repo.is_remote_repo:  # a remote server keeps its own index
        indexer = RepoIndexManager.get_index_manager(repo)
        try:
            for run_hash in hashes:
                indexer.index(run_hash)
        except RocksIOError as e:  # the index's lock is held: by `aim up`, which indexes too
            log.warning("%s: not indexing the runs (%s); reading what is indexed", repo.path, e)
    runs = (r.run for r in repo.query_runs(query, report_mode=_QUIET).iter_runs())
    return [
        {"hash": r.hash, "mmlearn": r["mmlearn"], "outcome": r.get("outcome")}
        for r in runs
        if r.get("mmlearn") is not None  # not written by mmlearn's tracking
    ]


def _metrics(repo: Repo, query: str) -> pd.DataFrame:
    """Every value of the metrics matching ``query``: hash, split, pattern, name, step, value."""
    frame = repo.query_metrics(query, report_mode=_QUIET).dataframe()
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["hash", "split", "pattern", "name", "step", "value"])
    return frame.rename(
        columns={"run.hash": "hash", "metric.context.split": "split",
                 "metric.context.pattern": "pattern", "metric.name": "name"}
    )[["hash", "split", "pattern", "name", "step", "value"]]  # fmt: skip


def _hyperparameters(meta: dict[str, Any], cell: Cell | None) -> dict[str, Any]:
    """The run's ``hp.*`` columns as ``results.parquet`` holds them: the cell's fixed and
    searched keys (``train.<setting>`` read from the run's training settings); every method
    hyperparameter the run holds when the study no longer has its cell."""
    if cell is None:
        return {f"hp.{k}": _cell_value(v) for k, v in sorted(meta["hparams"].items())}
    keys = sorted({*cell.hyperparameters, *cell.space})
    return {
        f"hp.{k}": _cell_value(
            meta["train"].get(k.removeprefix("train."))
            if k.startswith("train.")
            else meta["hparams"].get(k)
        )
        for k in keys
    }


def _base(
    spec: StudySpec, meta: dict[str, Any], outcome: dict[str, Any], cell: Cell | None
) -> dict[str, Any]:
    """The columns of a run that every one of its rows repeats."""
    return {
        "study": spec.name,
        "cell": meta["cell"],
        "method": meta["method"],
        "condition": meta["condition"],
        "fold": cell.fold if cell is not None else None,
        "run": meta["trial_id"],
        "seed": meta["seed"],
        **_hyperparameters(meta, cell),
        **{f"rate.{m}": float(meta["rates"].get(m, 0.0)) for m in spec.data.names},
        "epochs": outcome["epochs"],
        "wall_seconds": outcome["wall_seconds"],
        "gpu_hours": outcome["gpu_hours"],
    }


def _pattern_rows(base: dict[str, Any], metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per pattern: ``base`` and ``<split>.<metric>`` from the rows of ``metrics``."""
    wide = metrics[metrics["pattern"] != "mean"].pivot_table(
        index="pattern", columns=["split", "name"], values="value", aggfunc="last"
    )
    wide.columns = [f"{split}.{name}" for split, name in wide.columns]
    return [{**base, "pattern": p, **values} for p, values in wide.to_dict("index").items()]


def _rows(
    spec: StudySpec, runs: list[dict[str, Any]], repo: Repo, phase: str, splits: tuple[str, ...]
) -> pd.DataFrame:
    """One row per pattern of each run of ``phase``: its ``splits`` metrics at one step.

    The step is the last of ``splits[-1]``: a final run's tested epoch (its validation metrics
    of that epoch are kept), a search trial's last validation epoch.
    """
    query = (  # learning rates and method internals have no split: test for it first
        f'run.experiment == "{spec.name}" and run.mmlearn.phase == "{phase}" '
        f'and "split" in metric.context and metric.context.split in {splits!r}'
    )
    metrics = _metrics(repo, query)
    cells = {cell.id: cell for cell in spec.cells()}
    rows = []
    for run in runs:
        own = metrics[metrics["hash"] == run["hash"]]
        if not own.empty:
            step = own.loc[own["split"] == splits[-1], "step"].max()
            rows += _pattern_rows(
                _base(spec, run["mmlearn"], run["outcome"], cells.get(run["mmlearn"]["cell"])),
                own[own["step"] == step],
            )
    return pd.DataFrame(rows)


def _cpu_hours(meta: dict[str, Any], wall_seconds: float) -> float:
    resources = meta.get("resources") or {}
    if "workers" not in resources or "cpus_per_worker" not in resources:
        return math.nan
    return wall_seconds / 3600 * resources["workers"] * resources["cpus_per_worker"]


def read_aim(location: str, spec: StudySpec) -> StudyRecords:
    """The records of ``spec``'s study from the Aim repository at ``location``.

    Args:
        location: a repository path or ``aim://HOST:PORT``.
        spec: the study (its name is the Aim experiment).

    Raises:
        ReportError: no repository at ``location``, or no finished final run of the study in it.
    """
    repo = _open(location)
    runs = [r for r in _runs(repo, spec.name) if r["outcome"] is not None]
    final = _rows(spec, runs, repo, "final", ("val", "test"))
    worst = (
        _rows(spec, runs, repo, "search", ("val",)) if spec.mode == "worst_case" else pd.DataFrame()
    )
    if not worst.empty:
        worst = with_weights(worst, spec, ("cell", "run"))
    if final.empty and worst.empty:
        raise ReportError(
            f"{location}: no finished final run of study {spec.name!r} in this Aim repository "
            f"(experiment {spec.name!r}); check --aim-repo, or finish the study first"
        )
    searched = [r for r in runs if r["mmlearn"]["phase"] == "search"]
    trials = pd.DataFrame(
        [
            {"cell": r["mmlearn"]["cell"], "number": r["mmlearn"]["number"],
             "state": STATES[r["outcome"]["status"]], "epochs": r["outcome"]["epochs"],
             "value": math.nan, "origin": None}
            for r in searched
        ],
        columns=list(TRIAL_COLUMNS),
    )  # fmt: skip
    compute = pd.DataFrame(
        [
            {"phase": r["mmlearn"]["phase"], "cell": r["mmlearn"]["cell"],
             "run": r["mmlearn"]["trial_id"], "wall_seconds": r["outcome"]["wall_seconds"],
             "cpu_hours": _cpu_hours(r["mmlearn"], r["outcome"]["wall_seconds"]),
             "gpu_hours": r["outcome"]["gpu_hours"]}
            for r in runs
        ]
    )  # fmt: skip
    return StudyRecords(
        final=tidy_final(final, spec) if not final.empty else final,
        trials=trials,
        runs=compute,
        worst_case=worst,
        source=f"the Aim repository {location} (experiment {spec.name!r})",
    )
