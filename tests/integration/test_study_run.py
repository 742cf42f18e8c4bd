"""`mmlearn study run` on a real local Ray, a real Optuna journal and DeepSpeed on CPU.

SLOW: the shared study (``finished_study``: 2 cells x 3 trials of 2-worker Ray Train trials with
ASHA, then 2 final seeds per cell, then a rerun) takes about 2 minutes on 2 cores; the two
driver-kill tests, the trial-worker kill, the full disk (a 32 MiB tmpfs, skipped where it cannot
be mounted) and the worst-case study under a minute or two each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from optuna.trial import TrialState

from mmlearn.study import worst_case
from mmlearn.study.disk import StorageFullError, storage_full
from mmlearn.study.runner import StudyOutcome, run_study
from tests.integration.studies import (
    CELLS,
    MAX_EPOCHS,
    PATTERNS,
    SEEDS,
    TRIALS,
    aim_runs,
    study_file,
    trials_of,
)


def test_every_cell_gets_its_budget_with_pruned_semantics(finished_study):
    pruned = 0
    for cell in CELLS:
        found = finished_study.trials[cell]
        assert len(found) == TRIALS, cell
        for t in found:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (cell, t.state)
            steps = sorted(t.intermediate_values)
            assert steps == list(range(1, len(steps) + 1)), (cell, steps)
            if t.state == TrialState.COMPLETE:
                assert len(steps) == MAX_EPOCHS and t.value == t.intermediate_values[MAX_EPOCHS]
            else:
                assert len(steps) < MAX_EPOCHS, (cell, t.number, steps)
                pruned += 1
        assert any(t.state == TrialState.COMPLETE for t in found), cell
    assert pruned >= 2  # ASHA stopped trials, and their resources must have come back too


def test_every_resource_is_free_after_finished_and_stopped_trials(finished_study):
    for outcome in (finished_study.first, finished_study.second):
        held = {k: v for k, v in outcome.resources.items() if v[0] < v[1]}
        assert not held, held
        assert outcome.resources["CPU"][1] > 0 and outcome.resources["mmlearn_driver"][1] > 0


def _tune_results(experiment: Path) -> list[dict]:
    """Every result every trial of a Tune experiment reported."""
    return [
        json.loads(line)
        for file in experiment.glob("*/result.json")
        for line in file.read_text().splitlines()
        if line.strip()
    ]


def test_trials_ran_on_two_train_workers(finished_study):
    reported = _tune_results(finished_study.first.experiment)
    for phase in ("search", "final"):
        of_phase = [r for r in reported if r["phase"] == phase]
        assert of_phase and all(len(r["nodes"]) == 2 for r in of_phase), phase
    assert (finished_study.folder / "train").is_dir()  # Train runs' own checkpoints


def test_results_hold_search_and_final_rows(finished_study):
    frame = finished_study.frame
    final = frame[frame["phase"] == "final"]
    for cell in CELLS:
        rows = final[final["cell"] == cell]
        assert len(rows) == SEEDS * len(PATTERNS)
        assert sorted(rows["seed"].unique()) == list(range(SEEDS))
        assert set(rows["pattern"]) == set(PATTERNS)
        assert (rows["epochs"] == MAX_EPOCHS).all()
    search = frame[frame["phase"] == "search"]
    assert search.groupby("cell")["run"].nunique().to_dict() == dict.fromkeys(CELLS, TRIALS)
    assert set(search["state"]) <= {"COMPLETE", "PRUNED"}
    expected = {"study", "cell", "method", "condition", "fold", "phase", "run", "seed",
                "pattern", "hp.hidden", "hp.cls_layers", "hp.train.lr", "hp.kl_weight",
                "rate.fac", "rate.fou", "rate.mor", "val.macro_f1", "test.macro_f1", "epochs",
                "wall_seconds", "cpu_hours", "gpu_hours"}  # fmt: skip
    assert expected <= set(frame.columns)
    assert final["test.macro_f1"].notna().all() and search["test.macro_f1"].isna().all()
    assert (final["gpu_hours"] == 0).all() and (final["cpu_hours"] > 0).all()
    assert set(final["rate.fac"]) == {0.5}


def test_prints_progress_a_final_table_and_a_report(finished_study):
    lines, outcome = finished_study.lines, finished_study.first
    total = TRIALS * len(CELLS)
    assert any(line.startswith(f"search {total}/{total} trials") for line in lines), lines
    finals = SEEDS * len(CELLS)
    assert sum(line.startswith("final ") for line in lines) == finals, lines
    assert any(line.startswith(f"final {finals}/{finals} runs") for line in lines), lines
    for cell in CELLS:
        assert any(
            line.startswith(cell) and f"({SEEDS} seeds)" in line
            for line in outcome.table.splitlines()
        )
    assert str(outcome.results) in outcome.summary()
    assert (outcome.report / "summary.md").is_file()
    assert (outcome.folder / "study.yaml").read_text() == finished_study.path.read_text()


def test_every_trial_is_one_aim_run_even_after_the_rerun(finished_study):
    runs = [r for r in aim_runs(finished_study.aim) if r.experiment == "tiny"]
    names = sorted(r.name for r in runs)
    assert len(names) == len(set(names)) == TRIALS * len(CELLS) + SEEDS * len(CELLS), names
    statuses = {r["outcome"]["status"] for r in runs}
    assert statuses <= {"completed", "pruned"} and "pruned" in statuses


def test_rerun_resumes_without_training(finished_study):
    again = trials_of(finished_study.second.journal, CELLS)
    for cell in CELLS:
        assert [(t.number, t.state, t.intermediate_values) for t in again[cell]] == [
            (t.number, t.state, t.intermediate_values) for t in finished_study.trials[cell]
        ]
    after = pd.read_parquet(finished_study.second.results)
    key = ["phase", "cell", "run", "pattern"]
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True),
        finished_study.frame.sort_values(key).reset_index(drop=True),
        check_like=True,  # column order follows the order Tune lists trials in
    )
    first_s, second_s = finished_study.seconds
    assert second_s < first_s


def _finished(journal: Path) -> int:
    """Trials the journal holds as COMPLETE or PRUNED (0 before it exists)."""
    if not journal.is_file():
        return 0
    found = trials_of(journal, ("early_fusion@c1",))["early_fusion@c1"]
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)


KILLED_TRIALS = 4


def _one_cell_study(mfeat_path: Path, tmp_path: Path, **overrides: Any) -> Path:
    """A study of 1 cell (tiny early fusion) and ``KILLED_TRIALS`` trials, one at a time."""
    methods = [{"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]},
                "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}}]  # fmt: skip
    sections = {
        "methods": methods,
        "search": {"sampler": "tpe", "trials_per_cell": KILLED_TRIALS, "seed": 0},
        "resources": {"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 1},
        "final": {"seeds": 1},
    }
    return study_file(tmp_path, mfeat_path, name="killed", **{**sections, **overrides})


def _kill_midway(mfeat_path: Path, tmp_path: Path) -> Path:
    """Start the 1-cell study in its own process and SIGKILL the driver once 2 trials finished;
    every process of the local Ray that it started must then end (``mmlearn.study.ray_fate``)
    within 30 s. The study file."""
    path = _one_cell_study(mfeat_path, tmp_path)
    journal = tmp_path / "runs" / "killed" / "optuna.journal"
    command = [sys.executable, "-m", "mmlearn", "study", "run", str(path)]
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while _finished(journal) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, "the study ended before it could be killed"
            time.sleep(0.5)
        assert _finished(journal) >= 2
        assert len(_in_session(driver.pid)) > 5  # the driver's local Ray: GCS, raylet, agents
        driver.send_signal(signal.SIGKILL)  # the driver only
        driver.wait()
        deadline = time.monotonic() + 30
        while _in_session(driver.pid) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _in_session(driver.pid), "processes of the killed driver's Ray are alive"
    finally:
        _kill_group(driver.pid)
    return path


def _in_session(sid: int) -> list[str]:
    """The command lines of the live processes of session ``sid`` (a killed driver's)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and os.getsid(int(entry.name)) == sid:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def _assert_exact_counts(outcome: StudyOutcome) -> None:
    """Every trial of the killed study once in the journal and in the results, and its final
    run."""
    found = trials_of(outcome.journal, ("early_fusion@c1",))["early_fusion@c1"]
    done = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == KILLED_TRIALS
    assert all(t.state == TrialState.FAIL for t in found if t not in done)
    frame = pd.read_parquet(outcome.results)
    search = frame[frame["phase"] == "search"]
    assert search["run"].nunique() == KILLED_TRIALS
    assert len(search) == KILLED_TRIALS * len(PATTERNS)
    final = frame[frame["phase"] == "final"]
    assert len(final) == len(PATTERNS) and final["test.macro_f1"].notna().all()


def test_a_killed_driver_resumes_with_exact_trial_counts(mfeat_path, tmp_path):
    path = _kill_midway(mfeat_path, tmp_path)
    _assert_exact_counts(run_study(path))


def test_a_snapshot_torn_by_the_kill_is_set_aside_and_the_journal_resumes(mfeat_path, tmp_path):
    path = _kill_midway(mfeat_path, tmp_path)
    experiment = tmp_path / "runs" / "killed" / "tune"
    snapshot = sorted(experiment.glob("*_state-*.json")) + sorted(experiment.glob("searcher-*"))
    assert len(snapshot) == 3
    for file in snapshot:  # what a kill during Tune's copy to storage leaves
        file.write_bytes(b"")
    lines: list[str] = []
    outcome = run_study(path, lines.append)
    _assert_exact_counts(outcome)
    assert any("torn; set aside" in line for line in lines), lines
    assert all(file.with_name(file.name + ".torn").exists() for file in snapshot)


def test_a_killed_trial_worker_resumes_from_its_checkpoint(mfeat_path, tmp_path):
    """SIGKILL the process of a running trial after its first epochs: Tune restarts the trial
    (max_failures=1) in a new process, which continues from the last checkpoint."""
    path = _one_cell_study(
        mfeat_path,
        tmp_path,
        search={"sampler": "tpe", "trials_per_cell": 1, "seed": 0},
        scheduler={"type": "none"},
        train={"epochs": 6, "batch_size": 128, "lr": 1e-3},
    )
    experiment = tmp_path / "runs" / "killed" / "tune"
    killed: list[int] = []

    def kill_the_first_trial_after_two_epochs() -> None:
        deadline, rows = time.monotonic() + 300, []
        while time.monotonic() < deadline:
            with contextlib.suppress(ValueError):  # a line being written
                rows = _tune_results(experiment)
            if len(rows) >= 2:
                killed.append(rows[0]["pid"])
                os.kill(rows[0]["pid"], signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_first_trial_after_two_epochs, daemon=True)
    killer.start()
    outcome = run_study(path)
    killer.join()
    assert killed, "the trial ended before it could be killed"
    search = [r for r in _tune_results(experiment) if r["phase"] == "search"]
    before = [r["training_iteration"] for r in search if r["pid"] == killed[0]]
    after = [r["training_iteration"] for r in search if r["pid"] != killed[0]]
    assert before[:2] == [1, 2] and after, (before, after)
    # from the checkpoint of an epoch it had done (Tune may not have registered the newest)
    assert 1 < after[0] <= before[-1] + 1 and after[-1] == 6, (before, after)
    trial = trials_of(outcome.journal, ("early_fusion@c1",))["early_fusion@c1"]
    assert [t.state for t in trial] == [TrialState.COMPLETE]
    assert sorted(trial[0].intermediate_values) == list(range(1, 7))


def test_a_full_disk_stops_the_study_in_one_line_and_the_rerun_completes(
    mfeat_path, tmp_path, small_filesystem
):
    """The storage is a 32 MiB file system; once 2 trials finished, a file fills it."""
    disk = small_filesystem(tmp_path / "disk", mib=32)
    path = _one_cell_study(mfeat_path, tmp_path, storage=str(disk / "runs"))
    folder = disk / "runs" / "killed"
    ballast = disk / "ballast"

    def fill_after_two_trials() -> None:
        deadline = time.monotonic() + 300
        while _finished(folder / "optuna.journal") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        with open(ballast, "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (shutil.disk_usage(disk).free - 64 * 1024))

    filler = threading.Thread(target=fill_after_two_trials, daemon=True)
    filler.start()
    with pytest.raises(StorageFullError) as caught:
        run_study(path)
    filler.join()
    assert str(caught.value).splitlines() == [storage_full(folder)]
    assert f"storage {folder}: no space left" in str(caught.value)
    ballast.unlink()
    _assert_exact_counts(run_study(path))


def _kill_group(pid: int) -> None:
    """SIGKILL what is left of a process group (a killed driver's local Ray)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def test_worst_case_mode_searches_rates_and_reruns_the_worst(mfeat_path, tmp_path, capsys):
    path = study_file(
        tmp_path,
        mfeat_path,
        name="worst",
        mode="worst_case",
        conditions=[],
        methods=[{"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]}}],
        worst_case={"budget": 1.2, "trials": 3},
        scheduler={"type": "none"},
        train={"epochs": 2, "batch_size": 128, "lr": 1e-3},
        final={"seeds": 1},
    )
    outcome = run_study(path)
    assert "Number of trials" not in capsys.readouterr().out  # Tune's banner: 2**63 - 1 of them
    frame = pd.read_parquet(outcome.results)
    explored = frame[frame["phase"] == "worst_case"]
    rates = explored.groupby("run")[["rate.fac", "rate.fou", "rate.mor"]].first()
    assert len(rates) == 3
    assert ((rates.sum(axis=1) - 1.2).abs() < 1e-9).all() and (rates < 0.95 + 1e-12).all().all()
    assert rates.drop_duplicates().shape[0] == 3  # three different imbalance patterns
    scores = {  # each run's last validation macro-F1, weighted by pattern probability
        run: worst_case.weighted_score(
            {p: {"macro_f1": v} for p, v in zip(g["pattern"], g["val.macro_f1"], strict=True)},
            "macro_f1",
            {m: rates.loc[run, f"rate.{m}"] for m in ("fac", "fou", "mor")},
        )
        for run, g in explored.groupby("run")
    }
    final = frame[frame["phase"] == "final"]
    assert len(final) == len(PATTERNS)
    worst = min(scores, key=scores.get)
    got = final[["rate.fac", "rate.fou", "rate.mor"]].iloc[0].to_numpy()
    assert got.tolist() == pytest.approx(rates.loc[worst].to_numpy().tolist())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resources": {"workers": 2, "cpus_per_worker": 64}}, "one trial needs 128 CPU"),
        ({"resources": {"gpus_per_worker": 1}}, "one trial needs 1 GPU"),
    ],
)
def test_trials_the_cluster_cannot_place_are_one_line_errors(
    mfeat_path, tmp_path, overrides, message
):
    from mmlearn.errors import ConfigError

    path = study_file(tmp_path, mfeat_path, **overrides)
    with pytest.raises(ConfigError, match=message) as caught:
        run_study(path)
    assert len(str(caught.value).splitlines()) == 1


def test_failing_trials_say_their_cause_in_one_line_and_counts_stay_in_range(mfeat_path, tmp_path):
    """A learning rate of 1e30 makes every trial's loss NaN at its second step: the progress
    lines and the final error give that cause, each failure is retried, no count overflows."""
    from mmlearn.study.runner import SearchIncompleteError
    from mmlearn.study.search import MAX_FAILED

    path = study_file(
        tmp_path,
        mfeat_path,
        methods=[{"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]}}],
        train={"epochs": 2, "batch_size": 128, "lr": 1e30},
        search={"sampler": "random", "trials_per_cell": 2, "seed": 0},
        scheduler={"type": "none"},
        resources={"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 1},
    )
    lines: list[str] = []
    with pytest.raises(SearchIncompleteError) as caught:
        run_study(path, progress=lines.append)
    cause = "training loss is not finite"
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"{MAX_FAILED} trials of early_fusion@c1 failed, first with: " in message
    assert cause in message and "error.txt" in message
    failed = [line for line in lines if " failed: " in line]
    assert failed and all(cause in line for line in failed), lines
    assert any(line.endswith("retry from its last checkpoint") for line in failed), lines
    searches = [line for line in lines if line.startswith("search ")]
    assert searches[-1] == (
        "search 0/2 trials | early_fusion@c1 0/2 best - (stopped after 3 failures)"
    ), lines
