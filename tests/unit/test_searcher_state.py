"""Searcher state survives a save and restore (what a resumed study relies on), as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

from mmlearn.space import parse_dimension
from mmlearn.study.search import CellSearch, CellSearcher, FixedRuns


def _searcher(journal: Path) -> CellSearcher:
    space = {"train.lr": parse_dimension({"loguniform": [1e-4, 1e-2]})}
    return CellSearcher([CellSearch("c1", space, 2, 0)], journal, "max", 3, "random", 0)


def test_cell_searcher_restores_its_live_trials(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path / "optuna.journal")
    config = searcher.suggest("trial-a")
    assert config is not None and config["cell"] == "c1"
    searcher.on_trial_result("trial-a", {"epoch": 1, "training_iteration": 1, "score": 0.5})
    searcher.save(str(tmp_path / "state"))

    restored = _searcher(tmp_path / "optuna.journal")
    restored.restore(str(tmp_path / "state"))
    assert restored.live == searcher.live
    assert restored.live["trial-a"] == ("c1", searcher.live["trial-a"][1], 1)
    json.loads((tmp_path / "state").read_text())  # readable without unpickling


def test_fixed_runs_resume_after_the_configs_handed_out(tmp_path: Path) -> None:
    runs = FixedRuns([{"seed": 0}, {"seed": 1}, {"seed": 2}])
    assert runs.suggest("t1") == {"seed": 0}
    runs.save(str(tmp_path / "state"))

    restored = FixedRuns([{"seed": 0}, {"seed": 1}, {"seed": 2}])
    restored.restore(str(tmp_path / "state"))
    assert restored.suggest("t2") == {"seed": 1}
    assert restored.suggest("t3") == {"seed": 2}
    assert restored.suggest("t4") == FixedRuns.FINISHED
