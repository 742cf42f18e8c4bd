"""The method registry: one name per method, its hyperparameters and default search space.

``build`` is the only lookup. A method registers a builder (usually its class) called as
``builder(spec, hparams)``; the builder carries a ``train_protocol`` attribute naming the
training mask protocol of its paper (a mode of ``mmlearn.data.missing``), so a study can
default to it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mmlearn.data.missing import MODES
from mmlearn.data.spec import DatasetSpec
from mmlearn.errors import ConfigError, did_you_mean
from mmlearn.models.base import MissingModalityModel
from mmlearn.models.hparams import HParams
from mmlearn.space import parse_dimension


class Builder(Protocol):
    """What ``register`` decorates: a callable ``(spec, hparams) -> model``."""

    train_protocol: str

    def __call__(self, spec: DatasetSpec, hparams: Any) -> MissingModalityModel: ...  # noqa: D102


B = TypeVar("B", bound=Callable[..., MissingModalityModel])


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    hparams_cls: type[HParams]


_REGISTRY: dict[str, _Entry] = {}


def _check_search_space(name: str, hparams_cls: type[HParams]) -> None:
    """Raise ValueError unless every search-space entry names a field and is well formed."""
    fields = {f.name for f in dataclasses.fields(hparams_cls)}
    for key, value in hparams_cls.search_space.items():
        where = f"search space of {name!r}, key {key!r}"
        if key not in fields:
            raise ValueError(f"{where}: must name a field of {hparams_cls.__name__}.")
        try:
            dimension = parse_dimension(value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}.") from e
        if dimension is None:
            raise ValueError(f"{where}: must be a search dimension, but got {value!r}.")
        for probe in dimension.probe_values():
            try:
                hparams_cls(**{key: probe})  # every choice and bound must be a valid value
            except ConfigError as e:
                raise ValueError(f"{where}: {e}") from e


def register(name: str, hparams_cls: type[HParams]) -> Callable[[B], B]:
    """Decorator registering a method builder under ``name``.

    Args:
        name: the registry name (snake_case).
        hparams_cls: the frozen dataclass of the method's hyperparameters.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ValueError: if ``name`` is taken, the builder has no valid ``train_protocol``, or the
            default search space does not fit ``hparams_cls``.
    """

    def decorate(builder: B) -> B:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered; names must be unique.")
        protocol = getattr(builder, "train_protocol", None)
        if protocol not in MODES:
            raise ValueError(
                f"{name!r}: train_protocol must be one of {MODES}, but got {protocol!r}."
            )
        _check_search_space(name, hparams_cls)
        _REGISTRY[name] = _Entry(builder, hparams_cls)  # type: ignore[arg-type]
        return builder

    return decorate


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown method {name!r}{did_you_mean(name, names())} (known: {', '.join(names())})"
        )
    return _REGISTRY[name]


def names() -> list[str]:
    """Every registered method name, sorted."""
    return sorted(_REGISTRY)


def hparams_class(name: str) -> type[HParams]:
    """The hyperparameter dataclass of method ``name``.

    Raises:
        ConfigError: if ``name`` is not registered.
    """
    return _entry(name).hparams_cls


def default_search_space(name: str) -> dict[str, dict[str, list[Any]]]:
    """A fresh copy of method ``name``'s default search space (study-file syntax).

    Raises:
        ConfigError: if ``name`` is not registered.
    """
    return copy.deepcopy(dict(_entry(name).hparams_cls.search_space))  # type: ignore[arg-type]


def train_protocol(name: str) -> str:
    """The training mask protocol of method ``name``'s paper (a ``mmlearn.data.missing`` mode).

    Raises:
        ConfigError: if ``name`` is not registered.
    """
    return _entry(name).builder.train_protocol


def make_hparams(name: str, hyperparameters: Mapping[str, Any] | HParams | None) -> HParams:
    """Method ``name``'s hyperparameters from a mapping of overrides (or an instance).

    Raises:
        ConfigError: for an unknown method, unknown keys (all of them, with close matches), or
            values of the wrong type or range.
    """
    cls = _entry(name).hparams_cls
    if isinstance(hyperparameters, HParams):
        if type(hyperparameters) is not cls:
            raise ConfigError(
                f"{name}: hyperparameters must be a {cls.__name__}, "
                f"but got a {type(hyperparameters).__name__}."
            )
        return hyperparameters
    given = dict(hyperparameters or {})
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [
        f"{name}.{key}: unknown hyperparameter{did_you_mean(key, fields)}"
        for key in given
        if key not in fields
    ]
    if unknown:
        raise ConfigError("; ".join(unknown) + f" (allowed: {', '.join(fields)}).")
    try:
        return cls(**given)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from e


def build(
    name: str,
    hyperparameters: Mapping[str, Any] | HParams | None,
    spec: DatasetSpec,
) -> MissingModalityModel:
    """Build method ``name`` for the data set ``spec``.

    Args:
        name: a registered method name.
        hyperparameters: overrides of the defaults (unknown keys are errors) or an instance of
            the method's hyperparameter class.
        spec: the data set the model is sized for.

    Returns:
        The model, in its first stage.

    Raises:
        ConfigError: for an unknown name, an unknown key, a wrong type or value, or a
            hyperparameter that does not fit ``spec`` (e.g. an override for a missing modality).
    """
    hp = make_hparams(name, hyperparameters)
    try:
        return _entry(name).builder(spec, hp)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from e
