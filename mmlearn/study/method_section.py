"""The ``methods`` entries and the ``train`` section of a study file.

A method entry fixes or searches the method's hyperparameters and, with keys
``train.<setting>``, training settings of that method only; the ``train`` section sets those of
every cell. Both are checked against the method's hyperparameter class and ``TrainConfig``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from mmlearn.errors import ConfigError, Loc, Problem, did_you_mean, unknown_key
from mmlearn.models.registry import hparams_class, make_hparams, names
from mmlearn.space import parse_dimension
from mmlearn.study._errors import raise_problems
from mmlearn.study.fields import Section
from mmlearn.train.config import TrainConfig

TRAIN_PREFIX = "train."
"""Keys of ``fixed`` and ``space`` that start with this name a training setting."""

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_STUDY_WIDE = {
    "epochs": "every cell trains for the same epochs (budget-matched cells); set train.epochs",
    "seed": "seeds belong to the study: train.seed for the search, final.seeds for the final runs",
    "selection_metric": "the study selects epochs and trials by objective.metric",
}


def method_entry(value: Any) -> Any:
    """A bare method name stands for ``{name: NAME}``."""
    return {"name": value} if isinstance(value, str) else value


class MethodSpec(Section):
    """A method of the study, with its fixed hyperparameters and search-space overrides.

    Keys of ``fixed`` and ``space`` are the method's hyperparameters, or ``train.<setting>``
    for a training setting of this method only (not epochs, seed or selection_metric, which
    every cell shares).
    """

    name: str = Field(description="a registered method (redcore, dmrnet, ume_mma, mmin, ...)")
    fixed: dict[str, Any] = Field(
        default_factory=dict,
        description="hyperparameters fixed for every trial; they leave the search space",
    )
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the method's default search space: {loguniform|uniform|int|"
        "choice: [...]}, or a fixed value",
    )

    @model_validator(mode="after")
    def _check(self) -> MethodSpec:
        if self.name not in names():
            problems = [
                (
                    ("name",),
                    f"unknown method {self.name!r}{did_you_mean(self.name, names())} "
                    f"(known: {', '.join(names())})",
                )
            ]
        else:
            problems = self._key_problems()
        raise_problems("methods", problems)
        return self

    def _key_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for section in ("fixed", "space"):
            for key, value in getattr(self, section).items():
                loc: Loc = (section, key)
                problem = self._key_problem(key)
                if problem is None and section == "space" and key in self.fixed:
                    problem = "also in fixed; a hyperparameter is either fixed or searched"
                if problem is None:
                    problem = self._value_problem(key, value, searched=section == "space")
                if problem is not None:
                    problems.append((loc, problem))
        if not problems:
            try:
                make_hparams(self.name, self.hyperparameters(self.fixed))
            except ConfigError as e:
                problems.append((("fixed",), str(e)))
        return problems

    def _key_problem(self, key: str) -> str | None:
        if key.startswith(TRAIN_PREFIX):
            setting = key.removeprefix(TRAIN_PREFIX)
            if setting in _STUDY_WIDE:
                return f"cannot be set per method: {_STUDY_WIDE[setting]}"
            allowed = [f"{TRAIN_PREFIX}{f}" for f in TRAIN_FIELDS if f not in _STUDY_WIDE]
            return None if setting in TRAIN_FIELDS else unknown_key(key, allowed)
        fields = [f.name for f in dataclasses.fields(hparams_class(self.name))]
        if key in fields:
            return None
        if key in TRAIN_FIELDS:
            return f"{key!r} is a training setting, not a hyperparameter; write 'train.{key}'"
        return (
            f"unknown hyperparameter of {self.name}{did_you_mean(key, fields)} "
            f"(allowed: {', '.join(fields)}, or {TRAIN_PREFIX}<setting>)"
        )

    def _value_problem(self, key: str, value: Any, searched: bool) -> str | None:
        """Why ``value`` (or, in ``space``, a draw from it) is not valid for ``key``, or None."""
        try:
            dimension = parse_dimension(value) if searched else None
        except ValueError as e:
            return str(e)
        for probe in dimension.probe_values() if dimension else (value,):
            problem = (
                _train_value_problem(key.removeprefix(TRAIN_PREFIX), probe)
                if key.startswith(TRAIN_PREFIX)
                else self._hparam_value_problem(key, probe)
            )
            if problem is not None:
                return f"{dimension.kind} value {probe!r}: {problem}" if dimension else problem
        return None

    def _hparam_value_problem(self, key: str, value: Any) -> str | None:
        try:
            make_hparams(self.name, {key: value})
        except ConfigError as e:
            prefix = f"{self.name}: invalid {hparams_class(self.name).__name__}: "
            return str(e).removeprefix(prefix).removeprefix(f"{key}: ")
        return None

    @staticmethod
    def hyperparameters(values: Mapping[str, Any]) -> dict[str, Any]:
        """The method's own keys of ``values`` (those that are not ``train.<setting>``)."""
        return {k: v for k, v in values.items() if not k.startswith(TRAIN_PREFIX)}

    @staticmethod
    def train_settings(values: Mapping[str, Any]) -> dict[str, Any]:
        """The ``train.<setting>`` keys of ``values``, without the prefix."""
        return {
            k.removeprefix(TRAIN_PREFIX): v for k, v in values.items() if k.startswith(TRAIN_PREFIX)
        }


def _train_value_problem(setting: str, value: Any) -> str | None:
    """Why ``value`` is not valid for training setting ``setting``, or None."""
    try:
        TrainConfig.from_dict({setting: value})
    except ConfigError as e:
        return str(e).removeprefix(f"{TRAIN_PREFIX}{setting}: ")
    return None


def train_section(value: Any) -> Any:
    """The ``train`` section as a TrainConfig, every bad key reported on its own."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of training settings, but got {value!r}")
    problems: list[Problem] = []
    for key, item in value.items():
        if key not in TRAIN_FIELDS:
            allowed = [f for f in TRAIN_FIELDS if f != "selection_metric"]
            problems.append(((key,), unknown_key(str(key), allowed)))
        elif key == "selection_metric":
            problems.append(((key,), f"set by the study: {_STUDY_WIDE[key]}"))
        elif (problem := _train_value_problem(key, item)) is not None:
            problems.append(((key,), problem))
    raise_problems("train", problems)
    try:
        return TrainConfig.from_dict(value)
    except ConfigError as e:
        raise ValueError(str(e)) from e
