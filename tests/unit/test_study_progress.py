"""The study's progress lines count trials and final runs from the Optuna journal."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from mmlearn.study import load_study
from mmlearn.study.progress import StudyProgress
from mmlearn.study.search import MAX_FAILED, journal_storage

STUDY = {
    "name": "tiny",
    "data": {"source": "mfeat", "options": {"views": ["fac", "fou", "mor"]}},
    "train": {"epochs": 4},
    "conditions": [{"name": "c", "rates": {"fac": 0.8, "fou": 0.2}}],
    "methods": ["early_fusion", "late_fusion"],
    "search": {"sampler": "random", "trials_per_cell": 2, "seed": 0},
    "final": {"seeds": 3},
}


def _finish(study: optuna.Study, state: TrialState, value: float | None = None) -> None:
    study.tell(study.ask(), value, state=state)


def _progress_and_cells(folder: Path) -> tuple[StudyProgress, list[optuna.Study]]:
    """The progress lines of the tiny study and its two cells' Optuna studies."""
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    spec = load_study(path)
    journal = folder / "optuna.journal"
    progress = StudyProgress(journal, {c.id: c.trials for c in spec.cells()}, spec, print)
    storage = journal_storage(journal)
    cells = [
        optuna.create_study(study_name=c.id, storage=storage, direction="maximize")
        for c in spec.cells()
    ]
    return progress, cells


def test_cells_whose_search_ends_without_a_complete_trial_get_no_final_runs(
    tmp_path: Path,
) -> None:
    progress, (early, late) = _progress_and_cells(tmp_path)
    _finish(early, TrialState.COMPLETE, 0.5)
    _finish(early, TrialState.COMPLETE, 0.75)
    _finish(late, TrialState.PRUNED)
    assert progress.finals_expected() == 6  # late_fusion's search is still open
    _finish(late, TrialState.PRUNED)
    assert progress.finals_expected() == 3
    assert progress.search_line() == (
        "search 4/4 trials | early_fusion@c 2/2 best 0.7500 | late_fusion@c 2/2 best -"
    )


def test_failed_trials_are_named_not_counted_so_no_count_exceeds_its_total(
    tmp_path: Path,
) -> None:
    progress, (early, late) = _progress_and_cells(tmp_path)
    _finish(early, TrialState.FAIL)
    _finish(early, TrialState.COMPLETE, 0.5)
    for _ in range(MAX_FAILED):
        _finish(late, TrialState.FAIL)
    assert progress.search_line() == (
        "search 1/4 trials | early_fusion@c 1/2 best 0.5000 (retry after 1 failure) "
        "| late_fusion@c 0/2 best - (stopped after 3 failures)"
    )
    _finish(early, TrialState.PRUNED)
    assert progress.search_line().startswith(
        "search 2/4 trials | early_fusion@c 2/2 best 0.5000 (done after 1 failure) |"
    )
