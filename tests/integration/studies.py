"""Tiny study files over the mfeat store, and the one study the integration tests share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from aim import Repo, Run
from aim.sdk.index_manager import RepoIndexManager

from mmlearn.study.runner import StudyOutcome, run_study
from mmlearn.study.search import journal_storage

PATTERNS = ("fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor", "fac+fou+mor")
CELLS = ("redcore@c1", "early_fusion@c1")
TRIALS = 3
MAX_EPOCHS = 3
SEEDS = 2
TINY_REDCORE = {"hidden": 16, "ae_layers": [32, 16], "cls_layers": [16], "n_blocks": 2}


def study_file(folder: Path, store: Path, name: str = "tiny", **overrides: Any) -> Path:
    """A tiny study: RedCore and early fusion with tiny networks x 1 condition, ASHA.

    Args:
        folder: where the file and its ``runs/`` storage go.
        store: the mfeat store.
        name: the study's name.
        **overrides: top-level sections that replace the defaults.
    """
    asha = {"type": "asha", "max_epochs": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 3}
    study = {
        "name": name,
        "data": {"path": str(store)},
        "train": {"epochs": MAX_EPOCHS, "batch_size": 128, "lr": 1e-3},
        "conditions": [{"name": "c1", "rates": {"fac": 0.5, "fou": 0.2, "mor": 0.3}}],
        "methods": [
            {"name": "redcore", "fixed": TINY_REDCORE},
            {"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]},
             "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}},
        ],
        "search": {"sampler": "tpe", "trials_per_cell": TRIALS, "seed": 0},
        "scheduler": asha,
        "resources": {"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 2},
        "final": {"seeds": SEEDS},
        "storage": str(folder / "runs"),
        "tracking": {"aim": None},
        **overrides,
    }  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def trials_of(journal: Path, cells: tuple[str, ...]) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Each cell's Optuna trials in the journal."""
    storage = journal_storage(journal)
    return {cell: optuna.load_study(study_name=cell, storage=storage).trials for cell in cells}


def aim_runs(location: Path) -> list[Run]:
    """Every run of an Aim repository, read-only, after indexing them as `aim up` does."""
    repo = Repo(str(location))
    indexer = RepoIndexManager.get_index_manager(repo)
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    return [Run(run_hash, repo=repo, read_only=True) for run_hash in repo.list_all_runs()]


@dataclass(frozen=True)
class FinishedStudy:
    """The shared study, run to the end and then run again (which must resume, not retrain).

    Attributes:
        path: the study file.
        folder: its output folder (``runs/tiny``).
        first: the first run's outcome; ``second``: the rerun's.
        lines: progress lines of the first run.
        trials: each cell's Optuna trials after the first run.
        frame: results.parquet after the first run.
        seconds: wall time of the first run and of the rerun.
        aim: the Aim repository the trials were tracked in.
    """

    path: Path
    folder: Path
    first: StudyOutcome
    second: StudyOutcome
    lines: list[str]
    trials: dict[str, list[optuna.trial.FrozenTrial]]
    frame: pd.DataFrame
    seconds: tuple[float, float]
    aim: Path


def run_shared_study(folder: Path, store: Path) -> FinishedStudy:
    """Run the 2-worker study (Ray Train, gloo) with Aim tracking, then rerun it."""
    aim = folder / "aim"
    path = study_file(
        folder,
        store,
        resources={"workers": 2, "cpus_per_worker": 1, "max_concurrent_trials": 1},
        tracking={"aim": str(aim)},
    )
    lines: list[str] = []
    started = time.perf_counter()
    first = run_study(path, progress=lines.append)
    first_s = time.perf_counter() - started
    trials = trials_of(first.journal, CELLS)
    frame = pd.read_parquet(first.results)
    started = time.perf_counter()
    second = run_study(path)
    second_s = time.perf_counter() - started
    return FinishedStudy(
        path, first.folder, first, second, lines, trials, frame, (first_s, second_s), aim
    )
