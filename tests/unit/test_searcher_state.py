"""The study's searcher: final runs follow each cell's search at once, and its state survives a
save and restore (what a resumed study relies on) as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from mmlearn.space import parse_dimension
from mmlearn.study.search import RUN_ATTR, CellSearch, CellSearcher, journal_storage

EPOCHS = 3


def _searcher(journal: Path, cells: tuple[str, ...] = ("c1",)) -> CellSearcher:
    space = {"train.lr": parse_dimension({"loguniform": [1e-4, 1e-2]})}
    return CellSearcher(
        [CellSearch(c, space, 2, 0) for c in cells], journal, "max", EPOCHS, "random", 0, 2
    )


def _finish(searcher: CellSearcher, trial_id: str, epoch: int, score: float) -> None:
    """Tune's last result of a trial: full budget (COMPLETE) or stopped at ``epoch`` (PRUNED)."""
    searcher.on_trial_complete(trial_id, {"training_iteration": epoch, "score": score})


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


def test_final_runs_start_when_their_cell_is_done_and_others_still_search(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    searcher = _searcher(journal, ("c1", "c2"))
    configs = {t: searcher.suggest(t) for t in ("t1", "t2", "t3", "t4")}
    assert [c["cell"] for c in configs.values()] == ["c1", "c2", "c1", "c2"]
    assert searcher.suggest("t5") is None  # every search trial is out, none finished
    _finish(searcher, "t1", EPOCHS, 0.4)
    _finish(searcher, "t3", EPOCHS, 0.6)

    best = configs["t3"]["values"]
    assert searcher.suggest("t5") == {"phase": "final", "cell": "c1", "values": best, "seed": 0}
    searcher.save(str(tmp_path / "state"))
    restored = _searcher(journal, ("c1", "c2"))
    restored.restore(str(tmp_path / "state"))
    assert restored.suggest("t6") == {"phase": "final", "cell": "c1", "values": best, "seed": 1}
    assert restored.suggest("t7") is None  # c2 still searching

    _finish(restored, "t5", EPOCHS, 0.9)  # a final run's result is not Optuna's business
    _finish(restored, "t2", 1, 0.3)  # stopped by ASHA after one epoch
    _finish(restored, "t4", 1, 0.2)
    assert restored.suggest("t8") == CellSearcher.FINISHED  # c2 has no COMPLETE trial
    storage = journal_storage(journal)
    states = {
        cell: sorted(
            t.state.name for t in optuna.load_study(study_name=cell, storage=storage).trials
        )
        for cell in ("c1", "c2")
    }
    assert states == {"c1": ["COMPLETE", "COMPLETE"], "c2": ["PRUNED", "PRUNED"]}


def _flat(trial_id: str, epoch: int, score: float) -> dict[str, object]:
    """A flattened Tune result of a trial's epoch, as the searcher receives it."""
    return {
        "trial_id": trial_id, "epoch": epoch, "training_iteration": epoch, "score": score,
        "time_total_s": 2.0 * epoch, "val/mean/acc": score,
        "val/patterns/a+b/acc": score, "val/patterns/a/acc": score - 0.1,
    }  # fmt: skip


def test_every_finished_trial_keeps_its_last_result_in_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    searcher = _searcher(journal, ("c1", "c2"))
    cells = [searcher.suggest(t)["cell"] for t in ("t1", "t2", "t3")]  # type: ignore[index]
    assert cells == ["c1", "c2", "c1"]
    searcher.on_trial_result("t1", _flat("t1", 1, 0.5))
    searcher.on_trial_complete("t1", _flat("t1", EPOCHS, 0.75))
    searcher.on_trial_result("t2", _flat("t2", 1, 0.25))
    searcher.on_trial_complete("t2", error=True)  # Tune hands no result with an error
    searcher.on_trial_complete("t3", {"training_iteration": 1, "score": 0.5})  # no metrics

    storage = journal_storage(journal)
    complete, pruned = optuna.load_study(study_name="c1", storage=storage).trials
    (failed,) = optuna.load_study(study_name="c2", storage=storage).trials
    assert complete.state.name == "COMPLETE" and failed.state.name == "FAIL"
    assert complete.user_attrs[RUN_ATTR] == {
        "trial_id": "t1", "epoch": EPOCHS, "seconds": 6.0,
        "val": {"patterns": {"a+b": {"acc": 0.75}, "a": {"acc": 0.65}}},
        "state": "COMPLETE", "value": 0.75,
    }  # fmt: skip
    assert failed.user_attrs[RUN_ATTR]["epoch"] == 1  # its last result this session
    assert failed.user_attrs[RUN_ATTR]["val"]["patterns"]["a+b"] == {"acc": 0.25}
    assert pruned.state.name == "PRUNED" and RUN_ATTR not in pruned.user_attrs


def test_a_restarted_searcher_tells_optuna_what_the_dead_driver_recorded(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    searcher = _searcher(journal)
    searcher.suggest("t1")
    searcher.suggest("t2")
    study = optuna.load_study(study_name="c1", storage=journal_storage(journal))
    recorded, lost = study.trials
    # The driver died after recording t1's end and before telling Optuna; t2 was mid-run.
    summary = {"trial_id": "t1", "epoch": EPOCHS, "seconds": 6.0, "val": {"patterns": {}}}
    optuna.Trial(study, recorded._trial_id).set_user_attr(
        RUN_ATTR, {**summary, "state": "COMPLETE", "value": 0.5}
    )

    restarted = _searcher(journal)  # no live trials: Tune knew neither
    assert restarted.suggest("t3") is not None  # t2's replacement
    recorded, lost, _ = optuna.load_study(study_name="c1", storage=journal_storage(journal)).trials
    assert (recorded.state.name, recorded.value) == ("COMPLETE", 0.5)
    assert lost.state.name == "FAIL"
