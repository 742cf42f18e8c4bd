"""Aim tracking of a study: a real Tune experiment tracked into a real Aim repository.

The experiment (tests/integration/tracking_study.py) runs four trials: one completes, one is
stopped early (pruned), one raises at epoch 2 (twice: Tune retries it once), one is a final
run; it is then restored with ``resume_errored``. Every tracked number is computed by hand from
the trainable's formulas.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mmlearn.models.registry import hparams_class
from mmlearn.study.load import load_study
from mmlearn.tracking import tracking_callbacks
from mmlearn.tracking.aim_callback import RUN_HASH_FILE
from mmlearn.tracking.aim_layout import run_params
from mmlearn.tracking.aim_repo import open_repo, resume_run
from tests.integration.tracking_study import EF, EPOCHS, FAILS_ONCE, RC, study

KEYS = {
    "early_fusion@c1 search 0",
    "redcore@c1 search 0",
    "early_fusion@c1 search 1",
    "redcore@c1 final None",
}


def test_one_run_per_trial_named_and_tagged_in_the_study_experiment(tracked_study):
    runs = tracked_study.before
    assert set(runs) == KEYS
    ids = {r.config["cell"] + str(r.config.get("number")): r.path for r in tracked_study.first}
    for key, run in runs.items():
        cell, phase, _ = key.split()
        assert run.experiment == "tiny"
        assert run.tags == sorted(["tiny", cell, phase])
        assert run.name == f"{cell} {phase} {run.params['trial_id']}"
        assert run.params["trial_id"] in ids[cell + str(run.params["number"])]
    assert tracked_study.lines["repo"] == []


def test_parameters_are_the_full_resolved_configuration(tracked_study):
    params = tracked_study.before["early_fusion@c1 search 0"].params
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert {
        k: params[k]
        for k in (
            "study",
            "cell",
            "method",
            "condition",
            "rates",
            "protocol",
            "phase",
            "seed",
            "number",
            "version",
            "commit",
        )
    } == {
        "study": "tiny",
        "cell": EF,
        "method": "early_fusion",
        "condition": "c1",
        "rates": {"fac": 0.5, "fou": 0.0, "mor": 0.0},
        "protocol": "per_epoch",
        "phase": "search",
        "seed": 0,
        "number": 0,
        "version": "0.1.0",
        "commit": commit.stdout.strip() or None,
    }
    fields = {f.name for f in dataclasses.fields(hparams_class("early_fusion"))}
    assert set(params["hparams"]) == fields and params["hparams"]["hidden"] == 64
    assert params["train"]["lr"] == 0.01 and params["train"]["epochs"] == EPOCHS
    assert params["train"]["betas"] == [0.9, 0.999] and params["train"]["seed"] == 0
    assert params["data"] == {
        "source": "mfeat",
        "options": {"views": ["fac", "fou", "mor"]},
        "path": None,
        "modalities": ["fac", "fou", "mor"],
        "task": None,
    }
    assert params["resources"] == {
        "workers": 1,
        "cpus_per_worker": 1.0,
        "gpus_per_worker": 2.0,
        "max_concurrent_trials": 1,
    }
    final = tracked_study.before["redcore@c1 final None"].params
    assert (final["seed"], final["train"]["seed"], final["hparams"]["kl_weight"]) == (1, 1, 0.001)


def ctx(**context: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(context.items()))


def test_metrics_use_contexts_every_epoch(tracked_study):
    metrics = tracked_study.before["early_fusion@c1 search 0"].metrics
    assert metrics["accuracy", ctx(split="val", pattern="mor")] == pytest.approx(
        {1: 0.4, 2: 0.6, 3: 0.5}
    )
    assert metrics["macro_f1", ctx(split="val", pattern="mean")] == pytest.approx(
        {1: 0.45, 2: 0.65, 3: 0.55}
    )
    assert metrics["loss", ctx(split="train")] == pytest.approx({1: 1, 2: 0.5, 3: 1 / 3})
    assert metrics["kl/fac", ctx(split="train")] == pytest.approx({1: 0.4, 2: 0.2, 3: 0.4 / 3})
    assert metrics["lr", ctx(group="encoder.fac")] == pytest.approx(
        {1: 0.01, 2: 0.005, 3: 0.01 / 3}
    )
    assert len(metrics) == 2 * 3 + 3 + 2  # (accuracy, F1) x (2 patterns, mean); train; lr
    redcore = tracked_study.before["redcore@c1 search 0"].metrics
    assert redcore["beta", ctx(of="mor")] == pytest.approx({1: 0.8, 2: 0.6})
    assert redcore["eta", ()] == pytest.approx({1: 0.01, 2: 0.02})


def test_a_final_run_tracks_test_once_at_the_best_epoch(tracked_study):
    metrics = tracked_study.before["redcore@c1 final None"].metrics
    assert metrics["accuracy", ctx(split="test", pattern="fac+fou")] == pytest.approx({2: 0.7})
    assert metrics["macro_f1", ctx(split="test", pattern="mean")] == pytest.approx({2: 0.55})
    search = tracked_study.before["redcore@c1 search 0"].metrics
    assert not any(("split", "test") in context for _, context in search)


def test_outcomes_completed_pruned_failed(tracked_study):
    runs = tracked_study.before
    walls = {
        r.config["cell"] + str(r.config.get("number")): r.metrics["time_total_s"]
        for r in tracked_study.first
        if r.metrics
    }
    done = runs["early_fusion@c1 search 0"].outcome
    assert done == {
        "status": "completed",
        "reason": None,
        "epochs": 3,
        "wall_seconds": pytest.approx(walls[EF + "0"]),
        "gpu_hours": pytest.approx(walls[EF + "0"] / 3600 * 2),
    }
    pruned = runs["redcore@c1 search 0"].outcome
    assert (pruned["status"], pruned["epochs"]) == ("pruned", 2)
    assert pruned["reason"] == "stopped early after epoch 2 of 3"
    failed = runs["early_fusion@c1 search 1"].outcome
    assert (failed["status"], failed["epochs"]) == ("failed", 1)
    assert failed["reason"] == "RuntimeError: boom at epoch 2"
    assert runs["redcore@c1 final None"].outcome["status"] == "completed"


def test_a_restored_trial_continues_its_run_and_nothing_is_duplicated(tracked_study):
    before, after = tracked_study.before, tracked_study.after
    assert set(after) == KEYS
    assert {k: r.hash for k, r in after.items()} == {k: r.hash for k, r in before.items()}
    resumed = after["early_fusion@c1 search 1"]
    assert resumed.outcome["status"] == "completed" and resumed.outcome["epochs"] == 3
    assert resumed.metrics["accuracy", ctx(split="val", pattern="mor")] == pytest.approx(
        {1: 0.4, 2: 0.6, 3: 0.5}
    )
    assert resumed.tags == before["early_fusion@c1 search 1"].tags
    for key in KEYS - {"early_fusion@c1 search 1"}:
        assert after[key].outcome == before[key].outcome
    failed = [r for r in tracked_study.second if r.config == FAILS_ONCE][0]
    assert (Path(failed.path) / RUN_HASH_FILE).read_text() == resumed.hash


@pytest.mark.parametrize("broken", ["file", "database"])
def test_an_unusable_repository_turns_tracking_off_once_and_the_study_goes_on(
    tracked_study, broken
):
    location = tracked_study.repo.parent / broken
    [line] = tracked_study.lines[broken]  # what Aim raises for a broken database varies
    assert line.startswith(f"tracking: off (Aim repository {location}: ")
    assert line.endswith(
        "); the study goes on, results.parquet and optuna.journal record every trial"
    )
    if broken == "file":
        assert f"FileExistsError: [Errno 17] File exists: '{location}'" in line
    reached = sorted(
        (r.config["cell"], r.config["phase"], str(r.config.get("number")), r.metrics["epoch"])
        for r in tracked_study.first
    )
    assert reached == sorted(
        [
            (EF, "search", "0", 3),
            (RC, "search", "0", 2),
            (EF, "search", "1", 1),
            (RC, "final", "None", 3),
        ]
    )


def test_a_worst_case_run_records_the_rates_it_drew():
    spec = load_study(Path(__file__).parents[2] / "studies" / "worst_case_digits.yaml")
    cell = spec.cells()[0]
    values = {"rate.fac": 0.7, "rate.mor": 0.2}
    config = {"phase": "search", "cell": cell.id, "values": values, "seed": 0, "number": 3}
    params = run_params(spec, cell, config, "t1", None)
    assert (params["condition"], params["rates"]) == (None, {"fac": 0.7, "fou": 0.0, "mor": 0.2})
    assert params["train"]["epochs"] == 20 and "rate.fac" not in params["hparams"]


def test_a_run_the_repository_lacks_cannot_be_resumed(tmp_path):
    assert resume_run(open_repo(str(tmp_path / "aim")), "0123456789abcdef01234567") is None


def test_no_tracking_without_a_repository(tmp_path):
    assert tracking_callbacks(study(tmp_path, None), print) == []


def test_without_aim_tracking_is_off_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "aim", None)  # what `import aim` sees when Aim is missing
    monkeypatch.delitem(sys.modules, "mmlearn.tracking.aim_callback")
    lines: list[str] = []
    assert tracking_callbacks(study(tmp_path, "aim"), lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("tracking: off (Aim cannot be imported: ")
