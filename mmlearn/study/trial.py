"""What runs in a Ray worker: one search trial (a Tune function) and one final run (a task).

A search trial trains one configuration of one cell in-process, reports every epoch to Tune
with a checkpoint, and resumes from Tune's checkpoint when the trial is restored. A final run
re-trains a cell's best configuration with one seed for the full epochs, restores the epoch
selected on validation and evaluates validation and test once.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from ray import tune

from mmlearn.data.missing import MissingProtocol
from mmlearn.data.spec import DatasetSpec
from mmlearn.data.store import FeatureStore, open_store
from mmlearn.models.base import MissingModalityModel
from mmlearn.models.registry import build
from mmlearn.study.spec import Cell
from mmlearn.train.config import TrainConfig
from mmlearn.train.engine import fit
from mmlearn.train.evaluation import evaluate


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares (sent once to the object store).

    Attributes:
        cells: cell id -> cell.
        store: the absolute path of the prepared feature store.
        task: the target to train on; None uses the store's default.
        modalities: the study's modalities, in order.
        cpus: CPUs of one worker (its torch threads).
        search_epochs: the epochs a search trial may reach (ASHA's max_t).
    """

    cells: Mapping[str, Cell]
    store: str
    task: str | None
    modalities: tuple[str, ...]
    cpus: float
    search_epochs: int


@dataclass
class _Prepared:
    store: FeatureStore
    spec: DatasetSpec
    model: MissingModalityModel
    protocol: MissingProtocol
    config: TrainConfig


def limit_threads(cpus: float) -> None:
    """Let torch and OpenMP use as many threads as the worker has CPUs (at least one)."""
    threads = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _prepare(
    setup: TrialSetup, cell: Cell, values: Mapping[str, Any], epochs: int, seed: int
) -> _Prepared:
    """Store, model, masks and training settings of one run of ``cell`` with ``values``."""
    limit_threads(setup.cpus)
    hyperparameters, config = cell.configure(values)
    config = dataclasses.replace(config, epochs=epochs, seed=seed)
    store = open_store(setup.store)
    spec = store.spec(setup.task, setup.modalities)
    protocol = cell.missing_protocol(seed)
    protocol.check_feasible(len(store.split("train")))
    torch.manual_seed(seed)
    model = build(cell.method, hyperparameters, spec)
    return _Prepared(store, spec, model, protocol, config)


def epoch_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune of one epoch report of ``fit``."""
    return {
        "score": report["score"],
        "epoch": report["epoch"],
        "best_score": report["best_score"],
        "best_epoch": report["best_epoch"],
        "loss": report["train"]["loss"],
        "train_seconds": report["train_seconds"],
        "seconds": report["seconds"],
        "val": {"mean": report["val"]["mean"], "patterns": report["val"]["patterns"]},
    }


def search_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: one configuration of one cell, reported every epoch.

    Args:
        config: ``{"cell": id, "values": {key: value}, "number": Optuna trial number}``.
        setup: what the study's trials share.
    """
    cell = setup.cells[config["cell"]]
    run = _prepare(setup, cell, config["values"], setup.search_epochs, cell.train.seed)

    def on_epoch(report: dict[str, Any]) -> None:
        checkpoint = tune.Checkpoint.from_directory(report["checkpoint"])
        tune.report(epoch_metrics(report), checkpoint=checkpoint)

    with tempfile.TemporaryDirectory(prefix="mmlearn-trial-") as scratch:
        restored = tune.get_checkpoint()
        if restored is None:
            fit(run.model, run.store, run.protocol, run.config, on_epoch=on_epoch,
                checkpoint_dir=scratch)  # fmt: skip
            return
        with restored.as_directory() as resume_from:
            fit(run.model, run.store, run.protocol, run.config, on_epoch=on_epoch,
                checkpoint_dir=scratch, resume_from=resume_from)  # fmt: skip


def final_run(
    setup: TrialSetup, cell_id: str, values: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    """Re-train ``values`` of a cell with ``seed`` for the full epochs; test once.

    Returns:
        ``cell``, ``seed``, ``epochs`` (run), ``best_epoch``, ``val`` and ``test`` (see
        ``mmlearn.train.evaluate``) and ``seconds`` (wall time).
    """
    started = time.perf_counter()
    cell = setup.cells[cell_id]
    run = _prepare(setup, cell, values, cell.train.epochs, seed)
    result = fit(run.model, run.store, run.protocol, run.config)
    run.model.load_state_dict(result.best_state)
    batch = run.config.batch_size
    return {
        "cell": cell_id,
        "seed": seed,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "val": evaluate(run.model, run.store.split("val"), run.spec, batch),
        "test": evaluate(run.model, run.store.split("test"), run.spec, batch),
        "seconds": time.perf_counter() - started,
    }
