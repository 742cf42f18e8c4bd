"""The study's progress lines: one per finished trial, final run and failure.

Counts come from the Optuna journal (the searcher writes it before Tune hears of a trial's
end), so they are right after a resume too; a failed trial's cause comes from its error.txt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune

from mmlearn.study.failures import read_cause
from mmlearn.study.search import MAX_FAILED, journal_storage
from mmlearn.study.spec import StudySpec

Progress = Callable[[str], None]
"""Where progress lines go (the CLI prints them); must be picklable (Tune saves it)."""


class StudyProgress(tune.Callback):
    """One line per finished trial: after a search trial, trials done per cell and each cell's
    best so far; after a final run, final runs done and the run's test score."""

    def __init__(
        self,
        journal: Path,
        budgets: Mapping[str, int],
        spec: StudySpec,
        progress: Progress,
    ) -> None:
        self.journal = journal
        self.budgets = dict(budgets)
        self.mode = spec.search_mode
        self.metric = spec.objective.metric
        self.seeds = spec.final.seeds
        self.finals_done = 0
        self.progress = progress
        self._storage: optuna.storages.BaseStorage | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_storage": None}  # reopened on first use

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """The Optuna journal, opened once: each later read parses only what was appended."""
        if self._storage is None:
            self._storage = journal_storage(self.journal)
        return self._storage

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        if trial.config["phase"] == "search":
            self.progress(self.search_line())
            return
        self.finals_done += 1
        result = trial.last_result or {}
        score = result.get("test", {}).get("mean", {}).get(self.metric, math.nan)
        self.progress(
            f"final {self.finals_done}/{self.finals_expected()} runs | {trial.config['cell']} seed "
            f"{trial.config['seed']}: test {self.metric} {score:.4f}"
        )

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.progress(f"{_failed(trial)}; retry from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.progress(f"{_failed(trial)} (traceback: {trial.path}/error.txt)")
        if trial.config["phase"] == "search":
            self.progress(self.search_line())  # the searcher has told Optuna the failure

    def finals_expected(self) -> int:
        """Final runs of the study as far as known: every cell's seeds, less those of cells
        whose search ended without a COMPLETE trial (they get none)."""
        barren = 0
        for cell, budget in self.budgets.items():
            states = [t.state for t in cell_trials(self.storage, cell)]
            ended = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= budget
            barren += ended and TrialState.COMPLETE not in states
        return self.seeds * (len(self.budgets) - barren)

    def search_line(self) -> str:
        """``search D/N trials | cell d/n best s | ...`` from the Optuna journal.

        A trial counts once it is COMPLETE or PRUNED. A failed one is replaced by a new trial
        (up to ``MAX_FAILED`` failures per cell), so it is not counted but named: ``retry after
        1 failure``, or ``stopped after 3 failures``; no count exceeds its total.
        """
        done, parts = 0, []
        for cell, budget in self.budgets.items():
            trials = cell_trials(self.storage, cell)
            complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
            pruned = sum(t.state == TrialState.PRUNED for t in trials)
            failed = sum(t.state == TrialState.FAIL for t in trials)
            pick = max if self.mode == "max" else min
            best = f"{pick(complete):.4f}" if complete else "-"
            cell_done = min(len(complete) + pruned, budget)
            done += cell_done
            note = _failures_note(failed, searching=cell_done < budget)
            parts.append(f"{cell} {cell_done}/{budget} best {best}{note}")
        return f"search {done}/{sum(self.budgets.values())} trials | " + " | ".join(parts)


def _failures_note(failed: int, searching: bool) -> str:
    """`` (retry after 1 failure)`` while a cell searches, `` (stopped after 3 failures)`` at
    ``MAX_FAILED``, `` (done after 1 failure)`` once its budget is met."""
    if not failed:
        return ""
    what = "stopped" if failed >= MAX_FAILED else "retry" if searching else "done"
    return f" ({what} after {failed} failure{'s' * (failed > 1)})"


def _failed(trial: Any) -> str:
    """``trial T of CELL failed: CAUSE``, the cause read from the trial's error file."""
    kind = "trial" if trial.config["phase"] == "search" else "final run"
    cause = read_cause(trial.error_file)
    return f"{kind} {trial.trial_id} of {trial.config['cell']} failed: {cause}"


def cell_trials(storage: optuna.storages.BaseStorage, cell: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of the cell's study, none if it does not exist yet."""
    try:
        return optuna.load_study(study_name=cell, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []
