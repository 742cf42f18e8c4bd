"""`mmlearn study run`: a tiny study on real local Ray, a real Optuna journal, DeepSpeed on CPU.

SLOW (about 3 minutes on 2 cores): the module runs one study of 2 cells x 3 trials (ASHA to 3
epochs) and 2 final seeds per cell, then reruns it, which must resume without training again.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from mmlearn.errors import ConfigError
from mmlearn.study.runner import StudyOutcome, run_study
from mmlearn.study.search import journal_storage

PATTERNS = {"fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor", "fac+fou+mor"}
CELLS = ("early_fusion@c1", "late_fusion@c1")
MAX_EPOCHS = 3


def study_file(folder: Path, store: Path, **overrides: object) -> Path:
    """A tiny study over the mfeat store: 2 methods x 1 condition, tiny networks."""
    tiny = {"hidden": 16, "cls_layers": [16]}
    lr = {"train.lr": {"loguniform": [1e-4, 1e-2]}}
    asha = {"type": "asha", "max_epochs": MAX_EPOCHS, "grace_period": 1, "reduction_factor": 2}
    study = {
        "name": "tiny",
        "data": {"path": str(store)},
        "train": {"epochs": MAX_EPOCHS, "batch_size": 128, "lr": 1e-3},
        "conditions": [{"name": "c1", "rates": {"fac": 0.5, "fou": 0.2, "mor": 0.3}}],
        "methods": [
            {"name": "early_fusion", "fixed": tiny, "space": lr},
            {"name": "late_fusion", "fixed": tiny},
        ],
        "search": {"sampler": "tpe", "trials_per_cell": 3, "seed": 0},
        "scheduler": asha,
        "resources": {"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 2},
        "final": {"seeds": 2},
        "storage": str(folder / "runs"),
        "tracking": {"aim": None},
        **overrides,
    }  # fmt: skip
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def trials(outcome: StudyOutcome) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = journal_storage(outcome.journal)
    return {cell: optuna.load_study(study_name=cell, storage=storage).trials for cell in CELLS}


@pytest.fixture(scope="module")
def runs(mfeat_path, tmp_path_factory):
    """The study run once, its trials and results, then run again (a resume)."""
    folder = tmp_path_factory.mktemp("study")
    path = study_file(folder, mfeat_path)
    lines: list[str] = []
    started = time.perf_counter()
    first = run_study(path, progress=lines.append)
    first_s = time.perf_counter() - started
    before = (trials(first), pd.read_parquet(first.results))
    started = time.perf_counter()
    second = run_study(path)
    second_s = time.perf_counter() - started
    return {"first": first, "second": second, "before": before, "lines": lines,
            "seconds": (first_s, second_s)}  # fmt: skip


def test_every_cell_gets_its_budget_with_pruned_semantics(runs):
    found, _ = runs["before"]
    for cell in CELLS:
        assert len(found[cell]) == 3, cell
        for t in found[cell]:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (cell, t.state)
            assert t.intermediate_values, (cell, t.number)
            steps = sorted(t.intermediate_values)
            assert steps == list(range(1, len(steps) + 1)), (cell, steps)
            if t.state == TrialState.COMPLETE:
                assert len(steps) == MAX_EPOCHS and t.value == t.intermediate_values[MAX_EPOCHS]
            else:
                assert len(steps) < MAX_EPOCHS, (cell, t.number, steps)
        assert any(t.state == TrialState.COMPLETE for t in found[cell]), cell


def test_results_hold_search_and_final_rows(runs):
    _, frame = runs["before"]
    final = frame[frame["phase"] == "final"]
    for cell in CELLS:
        rows = final[final["cell"] == cell]
        assert len(rows) == 2 * len(PATTERNS)
        assert sorted(rows["seed"].unique()) == [0, 1]
        assert set(rows["pattern"]) == PATTERNS
        assert (rows["epochs"] == MAX_EPOCHS).all()
    search = frame[frame["phase"] == "search"]
    assert search.groupby("cell")["run"].nunique().to_dict() == dict.fromkeys(CELLS, 3)
    assert set(search["state"]) <= {"COMPLETE", "PRUNED"}
    expected = {"study", "cell", "method", "condition", "phase", "run", "seed", "pattern",
                "hp.hidden", "hp.cls_layers", "hp.cls_dropout", "hp.train.lr", "rate.fac",
                "rate.fou", "rate.mor", "val.macro_f1", "test.macro_f1", "epochs",
                "wall_seconds", "cpu_hours", "gpu_hours"}  # fmt: skip
    assert expected <= set(frame.columns)
    assert final["test.macro_f1"].notna().all() and search["test.macro_f1"].isna().all()
    assert (final["gpu_hours"] == 0).all() and (final["cpu_hours"] > 0).all()
    assert set(final["rate.fac"]) == {0.5}


def test_prints_progress_and_a_final_table(runs):
    lines, outcome = runs["lines"], runs["first"]
    assert any(line.startswith("search 6/6 trials") for line in lines), lines
    assert sum(line.startswith("final ") for line in lines) == 4, lines
    for cell in CELLS:
        assert any(
            line.startswith(cell) and "(2 seeds)" in line for line in outcome.table.splitlines()
        )
    assert str(outcome.results) in outcome.summary()


def test_nothing_is_leaked(runs):
    free, total = runs["first"].cpus
    assert total > 0 and free == total


def test_rerun_resumes_without_training(runs):
    found, frame = runs["before"]
    again = trials(runs["second"])
    for cell in CELLS:
        assert [(t.number, t.state, t.intermediate_values) for t in again[cell]] == [
            (t.number, t.state, t.intermediate_values) for t in found[cell]
        ]
    after = pd.read_parquet(runs["second"].results)
    key = ["phase", "cell", "run", "pattern"]
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True),
        frame.sort_values(key).reset_index(drop=True),
        check_like=True,  # column order follows the order Tune lists trials in
    )
    first_s, second_s = runs["seconds"]
    assert second_s < first_s


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resources": {"workers": 2}}, "not yet supported by the runner"),
        (
            {
                "mode": "worst_case",
                "conditions": [],
                "methods": ["early_fusion"],
                "worst_case": {"budget": 0.5},
            },
            "worst-case runs arrive later",
        ),
    ],
)
def test_unsupported_settings_are_one_line_errors(mfeat_path, tmp_path, overrides, message):
    path = study_file(tmp_path, mfeat_path, **overrides)
    with pytest.raises(ConfigError, match=message) as caught:
        run_study(path)
    assert len(str(caught.value).splitlines()) == 1
