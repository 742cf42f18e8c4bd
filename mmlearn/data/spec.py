"""What a prepared data set holds: the single source of modality dimensions and the task.

Models size themselves from a ``DatasetSpec``; nobody types a feature dimension by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

TargetKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of a store.

    Attributes:
        name: the modality's own name (``fac``, ``text``, ...).
        dim: feature size D.
        max_len: padded length T for sequences; None for vectors.
        variable_length: True when samples carry their own lengths (right-padded with zeros).
    """

    name: str
    dim: int
    max_len: int | None = None
    variable_length: bool = False

    @property
    def is_sequence(self) -> bool:
        return self.max_len is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape: (D,) or (T, D)."""
        return (self.dim,) if self.max_len is None else (self.max_len, self.dim)


@dataclass(frozen=True)
class TargetSpec:
    """One label column: its kind and, for classification, the class names."""

    name: str
    kind: TargetKind
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class DatasetSpec:
    """The modalities of a data set and the target a model is trained on."""

    modalities: tuple[ModalitySpec, ...]
    target: TargetSpec

    def __post_init__(self) -> None:
        names = self.names
        if len(names) < 2:
            raise ValueError(f"a multimodal data set needs at least 2 modalities, but got {names}.")
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, but got {names}.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def __getitem__(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"unknown modality {name!r}; this data set has {self.names}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        t = d["target"]
        return cls(
            modalities=tuple(ModalitySpec(**m) for m in d["modalities"]),
            target=TargetSpec(t["name"], t["kind"], tuple(t["class_names"])),
        )
