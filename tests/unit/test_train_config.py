"""The training config rejects bad values with one line each; the epoch budget and LR rule."""

from __future__ import annotations

import math

import pytest

from mmlearn.errors import ConfigError
from mmlearn.models.base import Stage
from mmlearn.train.config import TrainConfig
from mmlearn.train.schedule import lr_factor, stage_spans


def test_defaults_are_valid():
    config = TrainConfig()
    assert (config.precision, config.zero_stage, config.lr_schedule) == ("fp32", 0, "constant")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", math.nan),
        ("weight_decay", -1e-4),
        ("betas", (0.9, 1.0)),
        ("betas", (0.9,)),
        ("eps", 0.0),
        ("grad_clip", -1.0),
        ("lr_schedule", "cosine"),
        ("lr_constant_share", 1.5),
        ("precision", "fp16"),
        ("zero_stage", 3),
        ("zero_stage", True),
        ("seed", -1),
        ("selection_metric", "f1"),
    ],
)
def test_a_bad_value_is_one_line_naming_field_rule_and_value(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"train.{field}: must be ")
    assert f"but got {value!r}." in message


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig(epochs=0, lr=-1.0, precision="fp16")
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["train.epochs", "train.lr", "train.precision"]


def test_from_dict_rejects_unknown_keys_and_accepts_lists():
    assert TrainConfig.from_dict({"betas": [0.8, 0.99]}).betas == (0.8, 0.99)
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key \(allowed: "):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_linear_schedule_is_redcores_rule():
    config = TrainConfig(epochs=4, lr_schedule="linear", lr_constant_share=0.5)
    assert [lr_factor(e, config) for e in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    # IEMOCAP: niter = niter_decay = 30; epoch 31 runs at 1 - 1/31, epoch 60 at 1/31.
    redcore = TrainConfig(epochs=60, lr_schedule="linear", lr_constant_share=0.5)
    assert lr_factor(29, redcore) == 1.0
    assert lr_factor(30, redcore) == pytest.approx(1 - 1 / 31)
    assert lr_factor(59, redcore) == pytest.approx(1 / 31)
    assert lr_factor(59, TrainConfig(epochs=60)) == 1.0


def test_stage_spans_share_the_epochs_and_give_each_stage_one():
    two = (Stage("teacher", 0.25), Stage("student", 0.75))
    assert [(s.name, s.first, s.epochs) for s in stage_spans(two, 8)] == [
        ("teacher", 0, 2),
        ("student", 2, 6),
    ]
    assert [s.epochs for s in stage_spans(two, 2)] == [1, 1]
    halves = (Stage("a", 0.5), Stage("b", 0.5))
    assert [s.epochs for s in stage_spans(halves, 5)] == [3, 2]
    with pytest.raises(ConfigError, match=r"train\.epochs: must be >= the 2 stages"):
        stage_spans(two, 1)
