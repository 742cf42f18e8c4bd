"""Every study file in ``studies/`` runs end to end, shrunk, with real Ray, Optuna and DeepSpeed.

``study check`` validates the shipped files, but only running them shows that their methods,
fixed hyperparameters, precision, learning-rate schedule, objective and mode work together (a
bf16 study once crashed every DMRNet trial). Each file is shrunk in size only: one condition,
one trial per cell, two epochs, one final seed, one CPU per trial, at most two folds. Everything
else stays as shipped. A study on a built-in source uses it; a study on the user's own stores
(MOSEI, IEMOCAP, ...) gets a tiny stand-in store per fold, with the study's modalities, written
where ``${MMLEARN_DATA}`` points. A new file in ``studies/`` is covered without editing this test.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray
import yaml

from mmlearn.data.source import SourceData, SplitArrays
from mmlearn.data.spec import TargetSpec
from mmlearn.data.store import write_store
from mmlearn.metrics.patterns import metric_names
from mmlearn.study.drivers import DRIVER_RESOURCE, DRIVER_SLOTS
from mmlearn.study.load import load_study
from mmlearn.study.runner import run_study
from mmlearn.study.spec import StudySpec

STUDIES = sorted((Path(__file__).parents[2] / "studies").glob("*.yaml"))
EPOCHS = 2  # the most stages any method has, so that every stage trains
MAX_FOLDS = 2


def shrink(study: dict[str, Any], storage: Path) -> dict[str, Any]:
    """``study`` with its size cut down and nothing else changed."""
    small = copy.deepcopy(study)
    if "conditions" in small:
        small["conditions"] = small["conditions"][:1]
    if "worst_case" in small:
        small["worst_case"]["trials"] = 1
    else:
        small.setdefault("search", {})["trials_per_cell"] = 1
    if "folds" in small["data"]:
        small["data"]["folds"] = small["data"]["folds"][:MAX_FOLDS]
    small.setdefault("train", {})["epochs"] = EPOCHS
    scheduler = small.setdefault("scheduler", {})
    if scheduler.get("type", "asha") == "asha":
        scheduler.pop("max_epochs", None)
        scheduler["grace_period"] = 1
    small["resources"] = {
        "workers": 1,
        "cpus_per_worker": 1,
        "gpus_per_worker": 0,
        "max_concurrent_trials": 2,
    }
    small["final"] = {"seeds": 1}
    small["storage"] = str(storage)
    small["tracking"] = {"aim": None}
    return small


def stand_in_target(task: str, metric: str) -> TargetSpec:
    """A target named ``task`` of the first kind on which the study's objective is defined."""
    candidates = (
        TargetSpec(task, "classification", ("negative", "neutral", "positive")),
        TargetSpec(task, "classification", ("negative", "positive")),
        TargetSpec(task, "regression"),
    )
    return next(t for t in candidates if metric in metric_names(t))


def stand_in_data(spec: StudySpec, seed: int) -> SourceData:
    """Tiny data with the study's modalities: variable-length sequences, then one vector."""
    rng = np.random.default_rng(seed)
    target = stand_in_target(spec.data.task or "label", spec.objective.metric)

    def split(n: int) -> SplitArrays:
        if target.kind == "classification":
            labels = rng.integers(0, target.num_classes, size=n)
        else:
            labels = rng.standard_normal(n).astype(np.float32)
        features, lengths = {}, {}
        for i, name in enumerate(spec.data.names):
            if i < len(spec.data.names) - 1:
                steps = rng.integers(1, 6, size=n).astype(np.int32)
                x = rng.standard_normal((n, 5, 4 + i), dtype=np.float32)
                x[np.arange(5)[None, :] >= steps[:, None]] = 0
                lengths[name] = steps
            else:
                x = rng.standard_normal((n, 4 + i), dtype=np.float32)
            features[name] = x + np.asarray(labels, np.float32).reshape(n, *[1] * (x.ndim - 1))
        return SplitArrays(features=features, targets={target.name: labels}, lengths=lengths)

    return SourceData(
        splits={"train": split(48), "val": split(16), "test": split(16)},
        targets=(target,),
        task=target.name,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every study: built-in sources are prepared into its ``runs/`` once."""
    return tmp_path_factory.mktemp("shipped")


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for every study (each run connects to it instead of starting its own)."""
    ray.init(
        num_cpus=2,
        resources={DRIVER_RESOURCE: DRIVER_SLOTS},
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.mark.parametrize("study_file", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_runs_to_a_report(
    study_file: Path, workdir: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MMLEARN_DATA", str(workdir / "data"))
    shipped = yaml.safe_load(study_file.read_text())
    path = workdir / study_file.name
    path.write_text(yaml.safe_dump(shrink(shipped, workdir / "runs")))
    spec = load_study(path)
    for fold in spec.data.fold_ids():
        store = spec.data.store_path(fold)
        if store is not None and not store.exists():
            write_store(stand_in_data(spec, seed=fold or 0), store, source="test", options={})

    lines: list[str] = []
    outcome = run_study(path, progress=lines.append)

    frame = pd.read_parquet(outcome.results)
    final = frame[frame["phase"] == "final"]
    methods = [m if isinstance(m, str) else m["name"] for m in shipped["methods"]]
    assert sorted(final["method"].unique()) == sorted(methods), "\n".join(lines)
    assert final["fold"].nunique(dropna=False) == len(spec.data.fold_ids())
    assert np.isfinite(final[f"test.{spec.objective.metric}"]).all()
    assert (outcome.report / "summary.md").is_file()
    assert os.listdir(outcome.report)
