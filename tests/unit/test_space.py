"""The search-space syntax: every kind, fixed values, every malformed form, Optuna draws."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from mmlearn.models import registry
from mmlearn.models.fusion import FusionHParams
from mmlearn.space import Dimension, parse_dimension


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"loguniform": [1e-5, 1e-2]}, Dimension("loguniform", (1e-5, 1e-2))),
        ({"uniform": [0, 0.5]}, Dimension("uniform", (0, 0.5))),
        ({"int": [1, 4]}, Dimension("int", (1, 4))),
        ({"choice": [64, "wide", None, True]}, Dimension("choice", (64, "wide", None, True))),
        ({"uniform": (0.2, 0.2)}, Dimension("uniform", (0.2, 0.2))),
    ],
)
def test_each_kind(value: dict, expected: Dimension) -> None:
    assert parse_dimension(value) == expected


@pytest.mark.parametrize("value", [3, 0.5, "lstm", None, True, [64, 32], (1, 2)])
def test_fixed_values_are_not_dimensions(value: Any) -> None:
    assert parse_dimension(value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"uniform": [0, 1], "int": [1, 2]}, "a search dimension is one of {loguniform, "),
        ({}, "a search dimension is one of"),
        ({"logunifrom": [1, 2]}, "unknown search kind 'logunifrom'; did you mean 'loguniform'?"),
        ({"gauss": [0, 1]}, "unknown search kind 'gauss' (use one of loguniform, uniform, int"),
        ({"choice": []}, "choice needs a non-empty list, but got []"),
        ({"uniform": 0.5}, "uniform needs a non-empty list, but got 0.5"),
        ({"uniform": [1]}, "uniform needs [low, high], but got [1]"),
        ({"int": [1, 2, 3]}, "int needs [low, high], but got [1, 2, 3]"),
        ({"int": [1.5, 3]}, "int bounds must be integers, but got [1.5, 3]"),
        ({"uniform": ["a", 1]}, "uniform bounds must be numbers, but got ['a', 1]"),
        ({"uniform": [True, 1]}, "uniform bounds must be numbers, but got [True, 1]"),
        ({"uniform": [0, math.inf]}, "uniform bounds must be finite, but got [0, inf]"),
        ({"loguniform": [0.1, 0.01]}, "loguniform needs low <= high, but got low=0.1, high=0.01"),
        ({"int": [4, 1]}, "int needs low <= high, but got low=4, high=1"),
        ({"loguniform": [0, 1]}, "loguniform needs low > 0, but got low=0"),
        ({"loguniform": [-1, 1]}, "loguniform needs low > 0, but got low=-1"),
        ({"choice": [[64, 32], [128]]}, "choice values must be null, bool, int, float or str, "),
    ],
)
def test_malformed_dimensions_say_why(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_dimension(value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_probe_values_are_what_a_draw_can_be() -> None:
    assert Dimension("uniform", (0, 1)).probe_values() == (0.0, 1.0)
    assert all(isinstance(v, float) for v in Dimension("loguniform", (1, 8)).probe_values())
    assert Dimension("int", (1, 4)).probe_values() == (1, 4)
    assert Dimension("choice", (64, "x")).probe_values() == (64, "x")


def test_optuna_draws_stay_within_the_dimension() -> None:
    space = {
        "lr": parse_dimension({"loguniform": [1e-5, 1e-2]}),
        "dropout": parse_dimension({"uniform": [0.0, 0.5]}),
        "layers": parse_dimension({"int": [1, 4]}),
        "hidden": parse_dimension({"choice": [64, 96, 128]}),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        drawn = {name: dim.suggest(trial, name) for name, dim in space.items() if dim}
        assert 1e-5 <= drawn["lr"] <= 1e-2
        assert 0.0 <= drawn["dropout"] <= 0.5
        assert isinstance(drawn["layers"], int) and 1 <= drawn["layers"] <= 4
        assert drawn["hidden"] in (64, 96, 128)
        assert trial.distributions["lr"].log and not trial.distributions["dropout"].log
        study.tell(trial, 0.0)


class _Builder:
    train_protocol = "complete"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"hiden": {"choice": [64]}}, "key 'hiden': must name a field of"),
        ({"hidden": {"choise": [64]}}, "unknown search kind 'choise'; did you mean 'choice'?"),
        ({"cls_dropout": {"uniform": [0.5, 0.1]}}, "uniform needs low <= high"),
        ({"hidden": 64}, "key 'hidden': must be a search dimension, but got 64"),
        ({"hidden": {"choice": [64, "wide"]}}, "key 'hidden': invalid"),
        ({"hidden": {"uniform": [64, 128]}}, "key 'hidden': invalid"),
    ],
)
def test_registering_a_bad_default_space_is_an_error(space: dict, message: str) -> None:
    hparams = type("BadSpace", (FusionHParams,), {"search_space": space})
    with pytest.raises(ValueError, match="search space of 'bad_space'") as e:
        registry.register("bad_space", hparams)(_Builder)  # type: ignore[arg-type]
    assert message in str(e.value)
    assert "bad_space" not in registry.names()
