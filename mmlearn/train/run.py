"""Train one method on one data set without Ray: what ``mmlearn train`` runs.

The same function serves one process or every rank of ``run_distributed``: each rank resolves
the store, builds the model from the same seed, fits, restores the best epoch and evaluates
validation and test on every missing pattern (counts summed over ranks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mmlearn.data.missing import MissingProtocol
from mmlearn.data.resolve import resolve_store
from mmlearn.data.spec import DatasetSpec
from mmlearn.data.store import FeatureStore
from mmlearn.models.base import MissingModalityModel
from mmlearn.models.registry import build, train_protocol
from mmlearn.train.config import TrainConfig
from mmlearn.train.distributed import run_distributed
from mmlearn.train.engine import EpochCallback, fit
from mmlearn.train.evaluation import evaluate
from mmlearn.train.schedule import stage_spans


@dataclass(frozen=True)
class TrainRequest:
    """One training run, by names.

    Attributes:
        method: a registered method name.
        data: a store directory or a source name (prepared once into ``runs/stores``).
        rates: per-modality missing rates of the training data.
        protocol: the missing mode; None uses ``per_epoch`` when rates are given, else the
            method's own training protocol.
        config: optimiser, schedule, precision, epochs, seed.
        hyperparameters: overrides of the method's defaults.
        task: the target to train on; None uses the store's default.
        modalities: modalities to use, in order; None uses all.
        workers: processes (gloo on CPU, nccl on GPU); 1 trains in this process.
    """

    method: str
    data: str
    config: TrainConfig
    rates: Mapping[str, float] = field(default_factory=dict)
    protocol: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    task: str | None = None
    modalities: tuple[str, ...] | None = None
    workers: int = 1


def train_model(request: TrainRequest, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Fit ``request.method`` and evaluate its best epoch on validation and test.

    Args:
        request: what to train.
        on_epoch: called after every epoch on every rank (see ``mmlearn.train.fit``); with
            several workers it must be picklable (a module-level function).

    Returns:
        ``best_epoch``, ``best_score``, ``selection_metric``, ``protocol`` (mode and rates),
        ``history`` (per-epoch reports) and ``val`` / ``test`` (see ``mmlearn.train.evaluate``).

    Raises:
        ConfigError, DataError: bad names, options or data, before any training starts.
    """
    # Everything that can go wrong before training (names, data, hyperparameters, epochs per
    # stage) goes wrong here, in one line, before DeepSpeed or worker processes start; a
    # missing source is prepared here once.
    prepared = _prepare(request)
    if request.workers == 1:
        return _fit_and_evaluate(request, on_epoch, prepared)
    return run_distributed(_fit_and_evaluate, request.workers, request, on_epoch)[0]


@dataclass(frozen=True)
class _Prepared:
    """What one rank trains: the store, the protocol and the freshly built model."""

    store: FeatureStore
    spec: DatasetSpec
    mode: str
    protocol: MissingProtocol
    model: MissingModalityModel


def _prepare(request: TrainRequest) -> _Prepared:
    """Open the data, build the model from the request's seed and check its epoch budget.

    Raises:
        ConfigError, DataError: bad names, options, data or epochs.
    """
    store = resolve_store(request.data)
    spec = store.spec(request.task, request.modalities)
    mode = request.protocol or ("per_epoch" if request.rates else train_protocol(request.method))
    protocol = MissingProtocol(spec.names, mode, request.rates, seed=request.config.seed)
    protocol.check_feasible(len(store.split("train")))
    torch.manual_seed(request.config.seed)  # the same initial weights on every rank
    model = build(request.method, dict(request.hyperparameters), spec)
    stage_spans(model.stages(), request.config.epochs)
    return _Prepared(store, spec, mode, protocol, model)


def _fit_and_evaluate(
    request: TrainRequest, on_epoch: EpochCallback | None, prepared: _Prepared | None = None
) -> dict[str, Any]:
    """Fit and evaluate on this rank; ``prepared`` when ``train_model`` prepared it here."""
    p = prepared or _prepare(request)
    result = fit(p.model, p.store, p.protocol, request.config, on_epoch=on_epoch)
    p.model.load_state_dict(result.best_state)
    batch = request.config.batch_size
    return {
        "method": request.method,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "selection_metric": result.selection_metric,
        "protocol": {"mode": p.mode, "rates": dict(request.rates)},
        "history": result.history,
        "val": evaluate(p.model, p.store.split("val"), p.spec, batch),
        "test": evaluate(p.model, p.store.split("test"), p.spec, batch),
    }
