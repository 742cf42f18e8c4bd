"""The unit every model consumes: named modality tensors plus which of them are present."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A mini-batch of B samples over the named modalities of a store.

    Modalities are addressed by name; ``present`` columns follow ``modalities``. Features of an
    absent modality still hold the stored values: models must not read them (``masked_features``
    zero-fills them, as every method in methods.md does at the raw input).

    Attributes:
        modalities: modality names, in store order.
        features: name -> (B, D) for vector modalities or (B, T, D) for sequences.
        lengths: name -> (B,) valid steps, for every sequence modality (vectors have none).
        present: (B, M) bool, True where the modality is observed.
        labels: (B,) int64 class ids or float32 regression targets.
        pattern: (B,) int64 bitmask of ``present`` (bit m set = modality m present).
        index: (B,) int64 sample ids within the split.
    """

    modalities: tuple[str, ...]
    features: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    present: torch.Tensor
    labels: torch.Tensor
    pattern: torch.Tensor
    index: torch.Tensor

    def __post_init__(self) -> None:
        if set(self.features) != set(self.modalities):
            raise ValueError(
                f"features must have exactly the modalities {self.modalities}, "
                f"but got {tuple(self.features)}."
            )
        if self.present.shape != (len(self.labels), len(self.modalities)):
            raise ValueError(
                f"present must be (B, M) = ({len(self.labels)}, {len(self.modalities)}), "
                f"but got {tuple(self.present.shape)}."
            )

    def __len__(self) -> int:
        return len(self.labels)

    def is_present(self, modality: str) -> torch.Tensor:
        """(B,) bool: where ``modality`` is observed."""
        return self.present[:, self.modalities.index(modality)]

    def masked_features(self) -> dict[str, torch.Tensor]:
        """Features with every absent modality zero-filled at the raw input (methods.md §1.3)."""
        out = {}
        for m, name in enumerate(self.modalities):
            x = self.features[name]
            keep = self.present[:, m].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
            out[name] = x * keep
        return out

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A copy of the batch with ``fn`` applied to every tensor."""
        return Batch(
            modalities=self.modalities,
            features={k: fn(v) for k, v in self.features.items()},
            lengths={k: fn(v) for k, v in self.lengths.items()},
            present=fn(self.present),
            labels=fn(self.labels),
            pattern=fn(self.pattern),
            index=fn(self.index),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy of the batch on ``device``."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))
