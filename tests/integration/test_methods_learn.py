"""Every registered method learns the real mfeat digits in a few epochs (CPU, default sizes).

Default hyperparameters, 5 epochs of batch 128 at lr 2e-4 (RedCore's official rate), seed 0.
RedCore trains at the per-epoch rates fac 0.8 / fou 0.2 / mor 0.5; every other method on its
own protocol. The bar is 40 % accuracy on the complete pattern of the test split, 30 points
over the majority class of the balanced 10 digits; at these settings every method scores
0.64 or more.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from mmlearn.data.missing import MissingProtocol
from mmlearn.data.store import FeatureStore
from mmlearn.models import ExperimentalWarning, registry
from mmlearn.train.config import TrainConfig
from mmlearn.train.engine import fit
from mmlearn.train.evaluation import evaluate

RATES = {"fac": 0.8, "fou": 0.2, "mor": 0.5}
CONFIG = TrainConfig(epochs=5, batch_size=128, lr=2e-4, seed=0)
COMPLETE = "fac+fou+mor"


@pytest.mark.parametrize("name", registry.names())
def test_method_beats_the_majority_class_by_30_points_on_complete_inputs(
    name: str, mfeat_store: FeatureStore
) -> None:
    spec = mfeat_store.spec()
    mode = registry.train_protocol(name)
    protocol = MissingProtocol(spec.names, mode, RATES if mode == "per_epoch" else {}, seed=0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        model = registry.build(name, {}, spec)
    result = fit(model, mfeat_store, protocol, CONFIG)
    model.load_state_dict(result.best_state)
    test = evaluate(model, mfeat_store.split("test"), spec, CONFIG.batch_size)
    accuracy = test["patterns"][COMPLETE]["accuracy"]
    losses = [round(epoch["train"]["loss"], 3) for epoch in result.history]
    assert accuracy >= 0.40, f"{name}: {accuracy:.3f} on {COMPLETE}; train losses {losses}"
