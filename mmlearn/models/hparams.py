"""Typed, frozen hyperparameter records: each method's free choices, checked on construction.

A method declares a frozen dataclass deriving from ``HParams`` whose fields all carry the
official defaults, plus a ``search_space`` class variable in the study-file syntax::

    {"kl_weight": {"loguniform": [1e-4, 1e-2]}, "hidden": {"choice": [64, 128]}}

Construction coerces YAML-shaped values (lists to tuples, ints to floats) and raises one
``ConfigError`` that lists every field with a wrong type or value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

from mmlearn.errors import ConfigError
from mmlearn.models.layers import SequenceKind

SearchSpace = Mapping[str, Mapping[str, list[Any]]]


def _describe(tp: Any) -> str:
    """A short human name of a type annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"a mapping of {_describe(key)} to {_describe(value)}"
    if tp is type(None):
        return "null"
    return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to the annotation ``tp``.

    Raises:
        TypeError: if it cannot be, without loss (e.g. a bool where an int is asked).
    """
    origin = typing.get_origin(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
    elif origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _coerce(value, arm)
            except TypeError:
                continue
    elif origin is tuple and isinstance(value, list | tuple):
        return tuple(_coerce(v, typing.get_args(tp)[0]) for v in value)
    elif origin is dict and isinstance(value, Mapping):
        key, item = typing.get_args(tp)
        return {_coerce(k, key): _coerce(v, item) for k, v in value.items()}
    elif tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (bool, str) and isinstance(value, tp):
        return value
    raise TypeError(f"must be {_describe(tp)}, but got {value!r}")


@dataclass(frozen=True)
class HParams:
    """Base of every method's hyperparameters; fields are declared by subclasses."""

    search_space: ClassVar[SearchSpace] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        errors = []
        for f in dataclasses.fields(self):
            try:
                object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name]))
            except TypeError as e:
                errors.append(f"{f.name}: {e}")
        if not errors:
            errors = self._check()
        if errors:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(errors) + ".")

    def _check(self) -> list[str]:
        """Value checks beyond types, one message per broken rule; subclasses extend it."""
        return []


def positive(hp: HParams, *names: str) -> list[str]:
    """Messages for the named numeric fields of ``hp`` that are not > 0."""
    return [f"{n}: must be > 0, but got {getattr(hp, n)!r}" for n in names if getattr(hp, n) <= 0]


def all_positive(hp: HParams, *names: str) -> list[str]:
    """Messages for the named int-tuple fields of ``hp`` that are empty or hold a value <= 0."""
    return [
        f"{n}: must be a non-empty list of positive ints, but got {list(getattr(hp, n))!r}"
        for n in names
        if not getattr(hp, n) or min(getattr(hp, n)) <= 0
    ]


def in_unit_interval(hp: HParams, *names: str, closed: bool = True) -> list[str]:
    """Messages for the named fields outside [0, 1] (or [0, 1) when not ``closed``)."""
    out = []
    for n in names:
        v = getattr(hp, n)
        if not (0.0 <= v <= 1.0 if closed else 0.0 <= v < 1.0):
            out.append(f"{n}: must lie in [0, 1{']' if closed else ')'}, but got {v!r}")
    return out


@dataclass(frozen=True)
class EncoderHParams(HParams):
    """The per-modality encoders every method has.

    Attributes:
        hidden: encoder output size E (the embedding size of the official scripts).
        sequence_encoder: backbone of sequence modalities; vectors always get an MLP.
        encoder_overrides: modality name -> backbone, for sequences that differ from
            ``sequence_encoder`` (MMIN uses ``textcnn`` for the lexical modality).
        transformer_layers: blocks of the transformer backbone.
        transformer_heads: attention heads of the transformer backbone (must divide ``hidden``).
        key_padding_mask: let the transformer ignore padded steps (off in the official code).
    """

    hidden: int = 128
    sequence_encoder: SequenceKind = "lstm"
    encoder_overrides: dict[str, SequenceKind] = field(default_factory=dict)
    transformer_layers: int = 3
    transformer_heads: int = 8
    key_padding_mask: bool = False

    def _check(self) -> list[str]:
        errors = positive(self, "hidden", "transformer_layers", "transformer_heads")
        kinds = {self.sequence_encoder, *self.encoder_overrides.values()}
        if "transformer" in kinds and not errors and self.hidden % self.transformer_heads:
            errors.append(
                f"transformer_heads: must divide hidden, but got transformer_heads="
                f"{self.transformer_heads}, hidden={self.hidden}"
            )
        return errors


@dataclass(frozen=True)
class CodeBaseHParams(EncoderHParams):
    """Encoders of the methods ported from the MMIN/RedCore code base, and its initialisation.

    Attributes:
        official_init: initialise every Linear and Conv1d with kaiming-normal (fan_in) and
            zero biases, as the official ``init_net`` does. Its sqrt(2) gain also hits layers
            that read no ReLU, so each residual autoencoder block roughly doubles its input
            and the 5-block cascade of RedCore's generators and MMIN's imagination amplifies
            it about 50 times at initialisation. The default False uses a variance-preserving
            initialisation whose cascades start as the identity (``layers.init``).
    """

    official_init: bool = False
