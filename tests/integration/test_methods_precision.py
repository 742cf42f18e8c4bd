"""Every registered method through the real DeepSpeed engine, in fp32 and bf16, on vector and
variable-length sequence inputs: training steps, an evaluation and a checkpoint round trip.

The unit contract (``tests/unit/test_models_contract.py``) checks the methods as plain modules;
this one checks them as the engine runs them, where DeepSpeed casts the model to the training
precision. That is where DMRNet's batch norm once failed in bf16 while every unit test passed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmlearn.data.missing import MissingProtocol, evaluation_patterns
from mmlearn.data.source import SourceData, SplitArrays
from mmlearn.data.spec import TargetSpec
from mmlearn.data.store import FeatureStore, open_store, write_store
from mmlearn.models import registry
from mmlearn.train.config import TrainConfig
from mmlearn.train.engine import FitResult, fit
from mmlearn.train.evaluation import evaluate
from tests.tiny_models import tiny_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCH = 16
# bf16 keeps 8 bits of mantissa (relative rounding 2^-8 ~ 0.4 % per operation); over a few
# steps of a tiny network the mean training loss of an epoch stays within 5 % of fp32's.
LOSS_TOLERANCE = 0.05


def _source(kind: str, seed: int = 0) -> SourceData:
    """3 modalities, 3 classes; "sequence": two variable-length sequences and a vector."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> SplitArrays:
        labels = rng.integers(0, 3, size=n)
        signal = labels[:, None].astype(np.float32)  # every modality carries the label a little
        features, lengths = {}, {}
        for name, dim in (("speech", 6), ("face", 5), ("words", 4)):
            if kind == "sequence" and name != "words":
                steps = rng.integers(1, 8, size=n).astype(np.int32)
                x = rng.standard_normal((n, 7, dim), dtype=np.float32) + signal[:, :, None]
                x[np.arange(7)[None, :] >= steps[:, None]] = 0
                lengths[name] = steps
            else:
                x = rng.standard_normal((n, dim), dtype=np.float32) + signal
            features[name] = x
        return SplitArrays(features=features, targets={"label": labels}, lengths=lengths)

    return SourceData(
        splits={"train": split(3 * BATCH), "val": split(20), "test": split(20)},
        targets=(TargetSpec("label", "classification", ("a", "b", "c")),),
        task="label",
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FeatureStore]:
    root = tmp_path_factory.mktemp("precision-stores")
    return {
        kind: open_store(write_store(_source(kind), root / kind, source="test", options={}))
        for kind in ("vector", "sequence")
    }


def _fit(name: str, store: FeatureStore, precision: str, out: Path) -> tuple[object, FitResult]:
    spec = store.spec()
    model = tiny_model(name, spec)
    rates = {"speech": 0.5, "face": 0.2} if registry.train_protocol(name) == "per_epoch" else {}
    protocol = MissingProtocol(spec.names, registry.train_protocol(name), rates, seed=0)
    epochs = max(2, len(model.stages()))
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=1e-3, precision=precision, seed=0)
    return model, fit(model, store, protocol, config, checkpoint_dir=out)


def _floating_dtypes(model: torch.nn.Module) -> set[torch.dtype]:
    tensors = [*model.parameters(), *model.buffers()]
    return {t.dtype for t in tensors if t.is_floating_point()}


@pytest.mark.parametrize("kind", ["vector", "sequence"])
@pytest.mark.parametrize("name", registry.names())
def test_trains_evaluates_and_round_trips_in_both_precisions(
    name: str, kind: str, stores: dict[str, FeatureStore], tmp_path: Path
) -> None:
    store = stores[kind]
    spec = store.spec()
    losses = {}
    for precision, dtype in DTYPES.items():
        model, result = _fit(name, store, precision, tmp_path / precision)
        assert _floating_dtypes(model) == {dtype}, "a parameter or buffer left the precision"
        losses[precision] = [epoch["train"]["loss"] for epoch in result.history]
        assert all(math.isfinite(v) for v in losses[precision]), losses

        test = evaluate(model, store.split("test"), spec, BATCH)
        assert set(test["patterns"]) == {p.name for p in evaluation_patterns(spec.names)}
        assert all(math.isfinite(v) for v in test["mean"].values())

        # The last checkpoint restores the trained model exactly: a resumed fit with no epochs
        # left leaves a fresh model with the same predictions.
        restored = tiny_model(name, spec)
        last = sorted((tmp_path / precision).glob("epoch-*"))[-1]
        rates = {"speech": 0.5, "face": 0.2} if registry.train_protocol(name) == "per_epoch" else {}
        protocol = MissingProtocol(spec.names, registry.train_protocol(name), rates, seed=0)
        config = TrainConfig(
            epochs=len(result.history), batch_size=BATCH, lr=1e-3, precision=precision, seed=0
        )
        again = fit(restored, store, protocol, config, resume_from=last)
        assert again.best_epoch == result.best_epoch
        assert evaluate(restored, store.split("test"), spec, BATCH) == test

    for fp32, bf16 in zip(losses["fp32"], losses["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=LOSS_TOLERANCE), losses
