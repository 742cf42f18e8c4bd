"""A tiny Tune experiment tracked into a real Aim repository, interrupted by a failure, restored.

A trainable reports the study's result contract for four trials: one completes, one is stopped
early by a stop rule (pruned), one raises at epoch 2 (and again when Tune retries it), one is a
final run with test metrics. Every value it reports follows from the formulas below, so tests
compare with numbers computed by hand. ``run_tracked_study`` runs it once on a local Ray, reads
the repository, restores the experiment with ``resume_errored`` (the failed trial goes on) and
reads the repository again. Two more callbacks of the same study, pointed at unusable
repositories, watch the first run.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import ray
import yaml
from aim import Run
from aim.sdk.index_manager import RepoIndexManager
from ray import tune
from ray.tune import ResultGrid
from ray.tune.search import Searcher

from mmlearn.study.load import load_study
from mmlearn.study.spec import StudySpec
from mmlearn.tracking import tracking_callbacks
from mmlearn.tracking.aim_repo import open_repo

EPOCHS = 3
EF, RC = "early_fusion@c1", "redcore@c1"
COMPLETES = {
    "phase": "search",
    "cell": EF,
    "values": {"hidden": 64, "train.lr": 0.01},
    "seed": 0,
    "number": 0,
}
PRUNED = {"phase": "search", "cell": RC, "values": {"kl_weight": 0.001}, "seed": 0, "number": 0}
FAILS_ONCE = {**COMPLETES, "values": {"hidden": 96, "train.lr": 0.001}, "number": 1}
FINAL = {"phase": "final", "cell": RC, "values": {"kl_weight": 0.001}, "seed": 1}
CONFIGS = (COMPLETES, PRUNED, FAILS_ONCE, FINAL)

GAIN = {1: 0.1, 2: 0.3, 3: 0.2}  # validation accuracy = pattern offset + GAIN[epoch]: best at 2
OFFSET = {"fac+fou": 0.5, "mor": 0.3}


def split(epoch: int, shift: float = 0.0) -> dict[str, Any]:
    """Accuracy and macro-F1 (accuracy - 0.05) per pattern and their mean over patterns."""
    patterns = {
        p: {"accuracy": o + GAIN[epoch] + shift, "macro_f1": o + GAIN[epoch] + shift - 0.05}
        for p, o in OFFSET.items()
    }
    mean = {
        m: sum(v[m] for v in patterns.values()) / len(patterns) for m in ("accuracy", "macro_f1")
    }
    return {"mean": mean, "patterns": patterns}


def result(config: dict[str, Any], epoch: int) -> dict[str, Any]:
    """One epoch's result in the study's contract."""
    val = split(epoch)
    best = 1 if epoch == 1 else 2
    internals = {}
    if config["cell"] == RC:
        internals = {"beta/fac": 0.2 * epoch, "beta/mor": 1 - 0.2 * epoch, "eta": 0.01 * epoch}
    out = {
        "phase": config["phase"],
        "cell": config["cell"],
        "epoch": epoch,
        "epochs": EPOCHS,
        "stage": "fit",
        "score": val["mean"]["macro_f1"],
        "best_score": split(best)["mean"]["macro_f1"],
        "best_epoch": best,
        "loss": 1 / epoch,
        "train": {"loss": 1 / epoch, "task": 0.6 / epoch, "kl/fac": 0.4 / epoch},
        "lr": {"encoder.fac": 0.01 / epoch, "head.fused": 0.001},
        "internals": internals,
        "val": val,
        "train_seconds": 0.01,
        "seconds": 0.02,
    }
    if config["phase"] == "final" and epoch == EPOCHS:
        out |= {"test": split(best, shift=-0.1), "best_val": split(best)}
    return out


def tiny_trial(config: dict[str, Any], crash_marker: str) -> None:
    """Reports EPOCHS epochs with a checkpoint each; FAILS_ONCE raises at epoch 2 while the
    marker file exists."""
    start = 1
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            start = int((Path(folder) / "epoch").read_text()) + 1
    for epoch in range(start, EPOCHS + 1):
        if config == FAILS_ONCE and epoch == 2 and Path(crash_marker).exists():
            raise RuntimeError("boom at epoch 2")
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "epoch").write_text(str(epoch))
            tune.report(result(config, epoch), checkpoint=tune.Checkpoint.from_directory(folder))


def stop_pruned(trial_id: str, result: dict[str, Any]) -> bool:
    """Stops PRUNED's trial after epoch 2, as a scheduler would."""
    return result["config"] == PRUNED and result["epoch"] >= 2


class InOrder(Searcher):
    """Suggests the given configs in order, then finishes; restores how many it handed out."""

    def __init__(self, configs: tuple[dict[str, Any], ...]) -> None:
        super().__init__()
        self.configs, self.given = configs, 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.given == len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return copy.deepcopy(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(str(self.given))

    def restore(self, checkpoint_path: str) -> None:
        self.given = int(Path(checkpoint_path).read_text())


def study(folder: Path, aim: str | None) -> StudySpec:
    spec = {
        "name": "tiny",
        "data": {"source": "mfeat", "options": {"views": ["fac", "fou", "mor"]}},
        "train": {"epochs": EPOCHS, "batch_size": 32, "lr": 1e-3},
        "conditions": [{"name": "c1", "rates": {"fac": 0.5}}],
        "methods": [
            {"name": "early_fusion", "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}},
            "redcore",
        ],
        "scheduler": {"type": "none"},
        "resources": {"gpus_per_worker": 2},
        "tracking": {"aim": aim},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_study(path)


def tuner(storage: Path, marker: Path, callbacks: list[tune.Callback]) -> tune.Tuner:
    """The experiment ``search`` of CONFIGS in ``storage``; FAILS_ONCE fails while ``marker``
    exists."""
    return tune.Tuner(
        tune.with_parameters(tiny_trial, crash_marker=str(marker)),
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=InOrder(CONFIGS),
            num_samples=-1,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=str(storage),
            stop=stop_pruned,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),  # as the study runner retries
            callbacks=callbacks,
        ),
    )


@dataclasses.dataclass
class Tracked:
    """What the repository holds about one trial's run."""

    hash: str
    name: str
    experiment: str
    tags: list[str]
    params: dict[str, Any]
    outcome: dict[str, Any] | None
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]]


def read_runs(location: Path) -> dict[str, Tracked]:
    """Every run of the repository by its cell, phase and Optuna number."""
    repo = open_repo(str(location))
    indexer = RepoIndexManager.get_index_manager(repo)  # what `aim up` does in the background
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    out = {}
    for run_hash in repo.list_all_runs():
        run = Run(run_hash, repo=repo, read_only=True)
        metrics = {}
        for sequence in run.metrics():
            frame = sequence.dataframe()
            context = tuple(sorted(sequence.context.to_dict().items()))
            metrics[sequence.name, context] = dict(zip(frame["step"], frame["value"], strict=True))
        params = run["mmlearn"]
        key = f"{params['cell']} {params['phase']} {params['number']}"
        out[key] = Tracked(
            run_hash,
            run.name,
            run.experiment,
            sorted(run.props.tags),
            params,
            run.get("outcome"),
            metrics,
        )
    return out


@dataclasses.dataclass
class TrackedStudy:
    """The experiment, its repository before and after the restore, and the progress lines.

    Attributes:
        repo: the Aim repository.
        first: the first fit (FAILS_ONCE errored).
        second: the fit of the restored experiment.
        before: the runs after the first fit, by cell, phase and Optuna number.
        after: the runs after the restore.
        lines: the progress lines of each callback: "repo" (the good one), "file" (a repository
            path that is a file) and "database" (a repository whose database is garbage).
    """

    repo: Path
    first: ResultGrid
    second: ResultGrid
    before: dict[str, Tracked]
    after: dict[str, Tracked]
    lines: dict[str, list[str]]


def run_tracked_study(folder: Path) -> TrackedStudy:
    """Run, read, restore and read again the tracked experiment in ``folder``."""
    locations = {kind: folder / kind for kind in ("repo", "file", "database")}
    locations["file"].write_text("not a repository")
    broken = locations["database"] / ".aim"  # a repository whose run database is garbage
    broken.mkdir(parents=True)
    (broken / "VERSION").write_text("1.3\n")
    (broken / "run_metadata.sqlite").write_bytes(b"garbage" * 100)
    lines: dict[str, list[str]] = {kind: [] for kind in locations}
    callbacks = [
        callback
        for kind, location in locations.items()
        for callback in tracking_callbacks(study(folder, str(location)), lines[kind].append)
    ]
    marker = folder / "crash"
    marker.touch()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = tuner(folder, marker, callbacks).fit()
        before = read_runs(locations["repo"])
        marker.unlink()
        trainable = tune.with_parameters(tiny_trial, crash_marker=str(marker))
        second = tune.Tuner.restore(str(folder / "search"), trainable, resume_errored=True).fit()
    finally:
        ray.shutdown()
    return TrackedStudy(
        locations["repo"], first, second, before, read_runs(locations["repo"]), lines
    )
