"""What a Tune trial runs: one search trial or one final run of a cell, on 1 or N workers.

``run_trial`` is the Tune function trainable of both phases. With ``workers: 1`` it trains
in-process and reports to Tune itself. With more it is a Ray Train driver: it builds a
``TorchTrainer`` (Train V2) whose workers run the same training loop under a gloo or nccl
process group and report through ``TuneReportCallback`` (rank 0's metrics reach Tune).

Every epoch reports the metrics of ``epoch_metrics`` with a checkpoint. A restored trial
resumes from its last checkpoint: Tune's for in-process trials; for Train trials the Train run
is named after the Tune trial, and Train V2 restores a run whose name and storage repeat. A
final run re-trains a configuration with one seed, restores the epoch selected on validation
and reports once more with the test metrics (``test``) of that epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray import tune

from mmlearn.data.store import open_store
from mmlearn.models.registry import build
from mmlearn.study import worst_case
from mmlearn.study.cells import Cell
from mmlearn.study.ray_private import TorchTrainerWithoutDatasets
from mmlearn.study.sections import WorstCaseSpec
from mmlearn.train.distributed import current_world
from mmlearn.train.engine import fit
from mmlearn.train.evaluation import evaluate


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares (sent once to the object store).

    Attributes:
        cells: cell id -> cell.
        store: the absolute path of the prepared feature store (cells with a fold have their
            own: ``Cell.store``).
        task: the target to train on; None uses the store's default.
        modalities: the study's modalities, in order.
        workers: training processes per trial.
        cpus: CPUs of one worker (its torch threads).
        gpus: GPUs of one worker.
        search_epochs: the epochs a search trial may reach (ASHA's max_t).
        train_storage: where Train runs keep their checkpoints (shared by every node).
        worst_case: the rate search of a worst-case study; None in standard mode.
        train_env: Ray Train settings of multi-worker trials (``drivers.train_env``).
    """

    cells: Mapping[str, Cell]
    store: str
    task: str | None
    modalities: tuple[str, ...]
    workers: int
    cpus: float
    gpus: float
    search_epochs: int
    train_storage: str
    worst_case: WorstCaseSpec | None = None
    train_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def rates(self, cell: Cell, values: Mapping[str, Any]) -> dict[str, float]:
        """The training rates of a run: the condition's, or those drawn in worst-case mode."""
        if cell.condition is not None:
            return dict(cell.condition.rates)
        assert self.worst_case is not None
        return worst_case.rates_of(values, self.worst_case, self.modalities)

    def weighs_patterns(self) -> bool:
        """True when the score weights patterns by their probability under the rates."""
        return self.worst_case is not None and self.worst_case.applies_to == "train_and_test"


def limit_threads(cpus: float) -> None:
    """Let torch and OpenMP use as many threads as the worker has CPUs (at least one)."""
    threads = max(1, int(cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def use_assigned_resources(default_cpus: float) -> tuple[float, list[str]]:
    """Take the threads and the CUDA device of what Ray gave this process.

    Threads follow the CPUs Ray assigned (``default_cpus`` outside a Ray worker). Ray sets
    ``CUDA_VISIBLE_DEVICES`` to the GPUs it assigned, a trial of a fraction of a GPU included,
    so the first visible device is the trial's; a Ray Train worker's is the one Train picked.

    Returns:
        The CPUs and the GPU ids Ray assigned.
    """
    assigned = ray.get_runtime_context().get_assigned_resources() if ray.is_initialized() else {}
    cpus = assigned.get("CPU", default_cpus)
    limit_threads(cpus)
    gpus = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    if gpus and torch.cuda.is_available():
        train_worker = current_world().world_size > 1
        torch.cuda.set_device(ray.train.torch.get_device() if train_worker else 0)
    return cpus, gpus


def epoch_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune of one epoch report of ``fit``."""
    return {
        "epoch": report["epoch"],
        "epochs": report["epochs"],
        "stage": report["stage"],
        "score": report["score"],
        "best_score": report["best_score"],
        "best_epoch": report["best_epoch"],
        "loss": report["train"]["loss"],
        "train": dict(report["train"]),
        "lr": dict(report["lr"]),
        "internals": dict(report["internals"]),
        "train_seconds": report["train_seconds"],
        "seconds": report["seconds"],
        "val": {"mean": report["val"]["mean"], "patterns": report["val"]["patterns"]},
    }


def worker_nodes() -> list[str]:
    """The Ray node id of every rank of this run, in rank order (every rank must call this)."""
    node = ray.get_runtime_context().get_node_id()
    world = current_world()
    if world.world_size == 1:
        return [node]
    nodes: list[Any] = [None] * world.world_size
    dist.all_gather_object(nodes, node)
    return nodes


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable: one run of one cell (a search trial or a final run).

    Args:
        config: ``{"phase": "search" | "final", "cell": id, "values": {key: value},
            "seed": int}`` and, for search trials, ``"number"`` (the Optuna trial number).
        setup: what the study's trials share.
    """
    if setup.workers == 1:
        train_loop(config, setup, tune)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    for name, value in setup.train_env.items():  # Train passes them on to its workers
        os.environ.setdefault(name, value)
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainerWithoutDatasets(
        functools.partial(_train_worker, setup=setup),
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=setup.workers,
            use_gpu=setup.gpus > 0,
            resources_per_worker={"CPU": setup.cpus, "GPU": setup.gpus},
        ),
        run_config=ray.train.RunConfig(
            name=f"{config['phase']}-{trial_id}",
            storage_path=setup.train_storage,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=1),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def _train_worker(config: dict[str, Any], setup: TrialSetup) -> None:
    """One Ray Train worker of a multi-worker trial."""
    train_loop(config, setup, ray.train)


def train_loop(config: Mapping[str, Any], setup: TrialSetup, session: Any) -> None:
    """Train one run, reporting every epoch (and a final run's test metrics) to ``session``.

    Args:
        config: the trial's config (see ``run_trial``).
        setup: what the study's trials share.
        session: ``ray.tune`` in-process, ``ray.train`` on a Train worker: the module whose
            ``report`` and ``get_checkpoint`` this run uses.
    """
    use_assigned_resources(setup.cpus)
    cell = setup.cells[config["cell"]]
    final = config["phase"] == "final"
    values = worst_case.without_rates(config["values"])
    hyperparameters, train = cell.configure(values)
    epochs = cell.train.epochs if final else setup.search_epochs
    train = dataclasses.replace(train, epochs=epochs, seed=config["seed"])
    rates = setup.rates(cell, config["values"])
    store = open_store(cell.store or setup.store)  # a fold's own store, else the study's
    spec = store.spec(setup.task, setup.modalities)
    protocol = cell.missing_protocol(config["seed"], rates)
    protocol.check_feasible(len(store.split("train")))
    torch.manual_seed(config["seed"])  # the same initial weights on every rank
    model = build(cell.method, hyperparameters, spec)
    metric = train.selection_metric
    nodes = worker_nodes()

    def score(evaluation: Mapping[str, Any]) -> float:
        if setup.weighs_patterns():
            return worst_case.weighted_score(evaluation["patterns"], metric, rates)
        return float(evaluation["mean"][metric])

    def on_epoch(report: dict[str, Any]) -> None:
        metrics = {"phase": config["phase"], "cell": cell.id, "nodes": nodes}
        metrics |= epoch_metrics(report)
        metrics["score"] = score(report["val"])
        checkpoint = ray.train.Checkpoint.from_directory(report["checkpoint"])
        session.report(metrics, checkpoint=checkpoint)

    with tempfile.TemporaryDirectory(prefix="mmlearn-trial-") as scratch:
        restored = session.get_checkpoint()
        if restored is None:
            result = fit(model, store, protocol, train, on_epoch=on_epoch, checkpoint_dir=scratch)
        else:
            with restored.as_directory() as resume_from:
                result = fit(model, store, protocol, train, on_epoch=on_epoch,
                             checkpoint_dir=scratch, resume_from=resume_from)  # fmt: skip
    if not final:
        return
    model.load_state_dict(result.best_state)
    batch = train.batch_size
    val = evaluate(model, store.split("val"), spec, batch)
    test = evaluate(model, store.split("test"), spec, batch)
    last = result.history[-1]
    session.report(
        {
            "phase": "final",
            "cell": cell.id,
            "nodes": nodes,
            **epoch_metrics(last),
            "score": score(last["val"]),
            "best_val": {"mean": val["mean"], "patterns": val["patterns"]},
            "test": {"mean": test["mean"], "patterns": test["patterns"]},
            "test_score": score(test),
            "rates": rates,
        }
    )
