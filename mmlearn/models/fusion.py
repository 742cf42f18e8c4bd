"""Zero-fill fusion baselines (methods.md §4.2): early fusion, late fusion, modality dropout.

``early_fusion`` is MMIN/RedCore's ``utt_fusion``: per-modality encoders, concatenation and an
MLP classifier, trained on complete data and tested with absent inputs zero-filled.
``modality_dropout`` is the same model trained with random missing patterns (``utt_dataaug``;
here the mask is applied at evaluation too, unlike RedCore's baseline, §6 pitfall 14).
``late_fusion`` averages per-modality heads over the present modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.models._inputs import build_encoders, columns, encode
from mmlearn.models._task import as_prediction, output_dim, present_mean, supervised_loss
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput
from mmlearn.models.hparams import (
    CodeBaseHParams,
    EncoderHParams,
    SearchSpace,
    all_positive,
    in_unit_interval,
)
from mmlearn.models.layers import MLP, init_weights_
from mmlearn.models.registry import register


@dataclass(frozen=True)
class FusionHParams(CodeBaseHParams):
    """Hyperparameters of the zero-fill baselines (official ``utt_fusion`` values).

    Attributes:
        cls_layers: hidden sizes of the classifier.
        cls_dropout: classifier dropout.
    """

    cls_layers: tuple[int, ...] = (128, 128)
    cls_dropout: float = 0.3

    search_space: ClassVar[SearchSpace] = {
        "hidden": {"choice": [64, 96, 128]},
        "cls_dropout": {"uniform": [0.0, 0.5]},
    }

    def _check(self) -> list[str]:
        return (
            super()._check()
            + all_positive(self, "cls_layers")
            + in_unit_interval(self, "cls_dropout", closed=False)
        )


class ConcatClassifier(nn.Module):
    """Per-modality encoders, concatenated in spec order, then an MLP head.

    Args:
        spec: the data set.
        hp: encoder settings.
        cls_layers: hidden sizes of the head.
        dropout: head dropout.
    """

    def __init__(
        self, spec: DatasetSpec, hp: EncoderHParams, cls_layers: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        self.encoders = build_encoders(spec, hp)
        self.head = MLP(len(spec.names) * hp.hidden, cls_layers, output_dim(spec), dropout)

    def forward(self, batch: Batch, seen: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) head output from the zero-filled inputs of the ``seen`` modalities."""
        z = encode(self.encoders, batch, seen)
        return self.head(torch.cat(list(z.values()), dim=-1))  # (B, K)


@register("early_fusion", FusionHParams)
class EarlyFusion(MissingModalityModel):
    """Zero-filled inputs, concatenated encodings, one classifier; trained on complete data."""

    train_protocol = "complete"

    def __init__(self, spec: DatasetSpec, hp: FusionHParams) -> None:
        super().__init__(spec)
        self.hparams = hp
        self.net = ConcatClassifier(spec, hp, hp.cls_layers, hp.cls_dropout)
        init_weights_(self, hp.official_init)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        return ModelOutput(as_prediction(self.net(batch), self.spec))

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:  # noqa: D102
        return supervised_loss(out, batch, self.spec)


@register("modality_dropout", FusionHParams)
class ModalityDropout(EarlyFusion):
    """``early_fusion`` trained with a uniformly drawn non-empty pattern per sample."""

    train_protocol = "uniform_nonempty"


@register("late_fusion", FusionHParams)
class LateFusion(MissingModalityModel):
    """One encoder and head per modality; the prediction averages the present modalities."""

    train_protocol = "complete"

    def __init__(self, spec: DatasetSpec, hp: FusionHParams) -> None:
        super().__init__(spec)
        self.hparams = hp
        self.encoders = build_encoders(spec, hp)
        self.heads = nn.ModuleDict(
            {m: MLP(hp.hidden, hp.cls_layers, output_dim(spec), hp.cls_dropout) for m in spec.names}
        )
        init_weights_(self, hp.official_init)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        z = encode(self.encoders, batch)
        raw = {m: self.heads[m](h) for m, h in z.items()}  # name -> (B, K)
        fused = present_mean(raw, columns(batch, batch.present))
        return ModelOutput(as_prediction(fused, self.spec))

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:  # noqa: D102
        return supervised_loss(out, batch, self.spec)
