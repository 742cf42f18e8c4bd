"""The rebuilt official RedCore step that the methods benchmark uses as the anchor's baseline.

A baseline that did less work than the official step would flatter our throughput; these pin
that it runs the official sub-networks and the same weighter arithmetic as ``RedCore``.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmlearn.models.redcore import RelativeAdvantageWeighter
from tests.benchmarks import official_redcore as official

DIMS = {"text": 12, "audio": 6, "vision": 5}


def test_weighter_matches_redcore_including_a_batch_without_a_modality() -> None:
    step = official.OfficialStep(official.OfficialRedCore(DIMS, 3))
    ours = RelativeAdvantageWeighter(
        "AVL", official.EMA_WEIGHT, official.ETA, official.ETA_GROWTH, 500, official.BETA_INTERVAL
    )
    losses = [(2.0, 1.0, 0.5), (1.5, math.nan, 0.25), (3.0, 2.0, 1.0), (0.5, 4.0, 2.0)]
    for values in losses:  # NaN = 0/0, the official R_m of a batch with n_m = 0
        step._update_weights(list(values))
        ours.update(torch.tensor(values), ~torch.tensor(values).isnan())
        # float64 tensor maths vs the official Python floats: equal up to rounding
        assert step.ema == pytest.approx(ours.ema.tolist(), rel=1e-12)
        assert step.beta == pytest.approx(ours.beta.tolist(), rel=1e-12)
    assert step.eta == ours.eta == official.ETA * official.ETA_GROWTH


def test_one_step_trains_every_live_network_and_runs_the_dead_ones() -> None:
    torch.manual_seed(0)
    model = official.OfficialRedCore(DIMS, 3).train()
    step = official.OfficialStep(model)
    x = {m: torch.randn(8, 4, d) for m, d in DIMS.items()}
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).repeat(4, 1)  # (8, 3), A V L
    ran = []
    model.nets["AE_cycle"].register_forward_hook(lambda *_: ran.append("AE_cycle"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step(x, mask, torch.randint(3, (8,)))
    assert ran == ["AE_cycle"]
    assert len(model.nets) == 13  # the official model_names
    for name, net in model.nets.items():
        moved = any(
            not torch.equal(before[f"nets.{name}.{k}"], v) for k, v in net.state_dict().items()
        )
        assert moved == (name not in {"AE", "AE_cycle", "C"}), name
