"""A training step waits for the device at most once (docs/benchmarks.md, "gpu").

On this CPU the count is of the operators that would make a CUDA host wait
(``tests.host_syncs``); ``make bench-gpu`` counts CUDA's own synchronisations on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from mmlearn.data.missing import MissingProtocol
from mmlearn.data.store import FeatureStore
from mmlearn.models import build
from mmlearn.models.layers import keep_mask
from mmlearn.models.registry import names
from mmlearn.train.config import TrainConfig
from mmlearn.train.distributed import World
from mmlearn.train.engine import _deepspeed_config, fit
from tests.host_syncs import StepSyncs


@pytest.mark.parametrize("method", names())
def test_a_training_step_waits_at_most_once(mfeat_store: FeatureStore, method: str) -> None:
    spec = mfeat_store.spec()
    extra = {"ae_layers": (32, 16), "n_blocks": 2} if method == "redcore" else {}
    torch.manual_seed(0)
    model = build(method, {"hidden": 16} | extra, spec)
    protocol = MissingProtocol(spec.names, "per_epoch", {m: 0.3 for m in spec.names}, seed=0)
    counter = StepSyncs(model, torch.device("cpu"))
    config = TrainConfig(epochs=len(model.stages()), batch_size=256, lr=1e-3)
    with counter.active():
        fit(model, mfeat_store, protocol, config)
    assert len(counter.per_step) >= 3
    assert max(counter.per_step) <= 1, counter.per_step  # the finite check


def test_counter_sees_the_reads_it_is_meant_to_see() -> None:
    model = torch.nn.Linear(2, 1)
    counter = StepSyncs(model, torch.device("cpu"))
    x, mask = torch.ones(4, 2), torch.tensor([True, False, True, True])
    with counter.active():
        for _ in range(3):
            y = model(x)
            y.sum().item()  # 1
            y[mask].sum()  # 2: a boolean index
            int(mask.sum())  # 3
    assert counter.per_step == [3, 3]


@pytest.mark.parametrize(("device", "waits"), [("meta", 0), ("cpu", 2)])
def test_dropout_masks_wait_on_the_cpu_path_only(device: str, waits: int) -> None:
    counter = StepSyncs(torch.nn.Identity(), torch.device("cpu"))
    with counter.active():
        for _ in range(3):
            counter.model(torch.ones(1))
            keep_mask((64, 64), 0.3, device=device)
    # off the CPU one bernoulli_; the CPU's byte draws find their ties with a nonzero and a
    # boolean index, cheap on a CPU, where nothing waits
    assert counter.per_step == [waits, waits]


def test_deepspeed_config_turns_off_what_waits_for_the_device() -> None:
    config = _deepspeed_config(TrainConfig(precision="bf16"), World(rank=0, world_size=1))
    assert config["timers"] == {"throughput": {"enabled": False}}
    assert config["bf16"]["check_grad_overflow"] is False
