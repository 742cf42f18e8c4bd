"""Data sources: code that turns files (or a seed) into arrays for the feature store.

A source is registered with the options it takes, as a dataclass whose fields carry their help
text; the CLI builds ``mmlearn data prepare SOURCE [INPUT] --option ...`` from those fields (an
option marked ``positional`` is the command's positional argument, e.g. the file to read).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from mmlearn.data.spec import TargetSpec
from mmlearn.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class SplitArrays:
    """One split as plain arrays, the form every source hands to the store writer.

    Attributes:
        features: modality -> float32 (N, D) or (N, T, D), right-padded with zeros.
        lengths: modality -> int32 (N,) valid steps, for variable-length sequences only.
        targets: target name -> (N,) int64 class ids or float32 values.
    """

    features: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.targets.values())))


@dataclass
class SourceData:
    """Everything a source produced: the splits, what the targets mean, and the default task.

    Attributes:
        splits: split name (train, val, test) -> arrays; modalities in the order given.
        targets: every target column's meaning; ``task`` names the default one.
        task: the target a model trains on unless told otherwise.
        notes: facts worth recording in the manifest (e.g. how many -inf were replaced).
    """

    splits: dict[str, SplitArrays]
    targets: tuple[TargetSpec, ...]
    task: str
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A registered source: its name, one-line summary, options type, builder and modalities.

    Attributes:
        modalities: the modality names the source writes for given options, found without
            reading any data (so that ``study check`` needs none); a ConfigError for options
            that name no valid modalities.
    """

    name: str
    summary: str
    options: type
    build: Callable[[Any], SourceData]
    modalities: Callable[[Any], tuple[str, ...]]

    def parse_options(self, values: dict[str, Any]) -> Any:
        """Options from a plain dict; unknown or missing keys and wrong types are a ConfigError."""
        known = {f.name: f for f in dataclasses.fields(self.options)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"source {self.name!r} has no option(s) {unknown}; it takes {sorted(known)}."
            )
        missing = [
            name
            for name, f in known.items()
            if name not in values and f.default is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(
                f"source {self.name!r} needs option(s) {missing}: "
                + "; ".join(f"{name}: {known[name].metadata.get('help', '')}" for name in missing)
                + "."
            )
        try:
            return _options_adapter(self.options).validate_python(values)
        except ValidationError as e:
            wrong = "; ".join(
                f"{'.'.join(map(str, d['loc']))}: {d['msg'].lower()}, but got {d['input']!r:.60}"
                for d in e.errors()
            )
            raise ConfigError(f"source {self.name!r} option {wrong}.") from e


@functools.cache
def _options_adapter(options: type) -> TypeAdapter[Any]:
    """Validates a source's options against the types of its dataclass fields."""
    return TypeAdapter(options)


SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    summary: str,
    options: type,
    *,
    modalities: Callable[[Any], tuple[str, ...]],
) -> Callable:
    """Decorator: register ``build(options) -> SourceData`` under ``name``.

    A new source is one module in ``mmlearn/data/sources/`` using this decorator, plus its
    import in that package's ``__init__``.
    """

    def wrap(build: Callable[[Any], SourceData]) -> Callable[[Any], SourceData]:
        if name in SOURCES:
            raise ValueError(f"source {name!r} is registered twice.")
        SOURCES[name] = Source(name, summary, options, build, modalities)
        return build

    return wrap


def list_sources() -> tuple[Source, ...]:
    """Every registered source, the built-in ones included, by name."""
    import mmlearn.data.sources  # noqa: F401  (registers the built-in sources)

    return tuple(SOURCES[name] for name in sorted(SOURCES))


def get_source(name: str) -> Source:
    """The source called ``name``; an unknown name is a ConfigError listing the known ones."""
    known = {source.name: source for source in list_sources()}
    if name not in known:
        raise ConfigError(f"unknown data source {name!r}; known sources: {sorted(known)}.")
    return known[name]


def option(default: Any, help: str, *, positional: bool = False) -> Any:
    """A source option with its CLI help text.

    Args:
        default: the value when the option is not given; ``dataclasses.MISSING`` makes it
            required (such options come first in the options dataclass).
        help: one line for ``mmlearn data prepare SOURCE -h``.
        positional: the option is the command's positional argument (at most one per source).
    """
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata={"help": help, "positional": positional})


def input_option(help: str) -> Any:
    """The required, positional option naming the file or folder a source reads."""
    return option(dataclasses.MISSING, help, positional=True)


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> dict[str, np.ndarray]:
    """Sorted train/val/test indices with each class split in the same proportions.

    Args:
        labels: (N,) class ids.
        fractions: (val, test) shares of every class; train gets the rest.
        seed: the split is a pure function of (labels, fractions, seed).
    """
    val_frac, test_frac = fractions
    if not (val_frac > 0 and test_frac > 0 and val_frac + test_frac < 1):
        raise ConfigError(
            "val and test fractions must be > 0 with a sum < 1, "
            f"but got val={val_frac}, test={test_frac}."
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_frac))
        n_test = int(round(len(idx) * test_frac))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}
