"""UME and UME-MMA (Li et al., arXiv 2310.06383): uni-modal ensemble, missing-modality adaptation.

methods.md §3.3. There is no official code; the recipe below is the library's reading of the
paper (hence an ``ExperimentalWarning``):

1. ``unimodal`` stage: each modality's encoder and linear head are trained alone, on the samples
   where that modality is present.
2. ``adapt`` stage (UME-MMA only): the same modules form a late-fusion ensemble (mean of the
   logits of the present modalities) fine-tuned with branch-level modality drop: each present
   modality is dropped with ``p_drop``, at least one is kept, and dropped branches are left out
   of the mean. Encoders learn at ``encoder_lr_scale`` times the heads' rate.

The prediction is always the mean over present modalities. ``ume`` is stage 1 alone. The drop
is the method's own, so both train on complete data by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.models._experimental import warn_experimental
from mmlearn.models._inputs import build_encoders, columns, drop_independent, encode
from mmlearn.models._task import (
    as_prediction,
    masked_mean,
    named_groups,
    output_dim,
    present_mean,
    task_loss,
)
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput, Stage
from mmlearn.models.hparams import EncoderHParams, SearchSpace, in_unit_interval, positive
from mmlearn.models.registry import register


@dataclass(frozen=True)
class UMEHParams(EncoderHParams):
    """Hyperparameters of the uni-modal ensemble: the encoders only."""

    search_space: ClassVar[SearchSpace] = {"hidden": {"choice": [64, 96, 128]}}


@dataclass(frozen=True)
class UMEMMAHParams(UMEHParams):
    """UME-MMA's hyperparameters; the defaults are the library's own (methods.md §3.3).

    Attributes:
        p_drop: per-modality drop probability during adaptation.
        encoder_lr_scale: encoder learning rate relative to the heads' during adaptation.
        unimodal_weight: weight of the unimodal task losses added during adaptation.
        unimodal_share: share of the epoch budget given to unimodal training.
    """

    p_drop: float = 0.3
    encoder_lr_scale: float = 0.1
    unimodal_weight: float = 1.0
    unimodal_share: float = 0.5

    search_space: ClassVar[SearchSpace] = {
        "hidden": {"choice": [64, 96, 128]},
        "p_drop": {"uniform": [0.1, 0.6]},
        "encoder_lr_scale": {"loguniform": [0.01, 1.0]},
        "unimodal_weight": {"uniform": [0.0, 1.0]},
    }

    def _check(self) -> list[str]:
        errors = super()._check() + positive(self, "encoder_lr_scale")
        errors += in_unit_interval(self, "p_drop", closed=False)
        errors += in_unit_interval(self, "unimodal_share")
        if self.unimodal_weight < 0:
            errors.append(f"unimodal_weight: must be >= 0, but got {self.unimodal_weight!r}")
        return errors


def unimodal_losses(
    logits: dict[str, torch.Tensor],
    seen: dict[str, torch.Tensor],
    labels: torch.Tensor,
    spec: DatasetSpec,
) -> dict[str, torch.Tensor]:
    """Each modality's task loss averaged over the samples that see it (0 when none does)."""
    out = {}
    for m, raw in logits.items():
        per_sample = task_loss(as_prediction(raw, spec), labels, spec, reduction="none")
        out[m] = masked_mean(per_sample, seen[m])
    return out


@register("ume", UMEHParams)
class UnimodalEnsemble(MissingModalityModel):
    """UME: per-modality encoders and linear heads trained alone, averaged at prediction."""

    train_protocol = "complete"

    def __init__(self, spec: DatasetSpec, hp: UMEHParams) -> None:
        self.hparams = hp  # before the base initialiser, which calls stages()
        super().__init__(spec)
        warn_experimental(type(self).__name__, "no official code; recipe of methods.md §3.3")
        self.encoders = build_encoders(spec, hp)
        self.heads = nn.ModuleDict({m: nn.Linear(hp.hidden, output_dim(spec)) for m in spec.names})

    def stages(self) -> tuple[Stage, ...]:  # noqa: D102
        return (Stage("unimodal", 1.0),)

    def _seen(self, batch: Batch) -> torch.Tensor:
        """(B, M) the modalities the branches read; all present ones here."""
        return batch.present

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        seen = self._seen(batch)  # (B, M)
        z = encode(self.encoders, batch, seen)
        logits = {m: self.heads[m](h) for m, h in z.items()}  # name -> (B, K)
        by_name = columns(batch, seen)
        fused = present_mean(logits, by_name)
        return ModelOutput(as_prediction(fused, self.spec), {"logits": logits, "seen": by_name})

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:
        """Sum over modalities of each one's task loss on the samples where it is present."""
        parts = unimodal_losses(out.extras["logits"], out.extras["seen"], batch.labels, self.spec)
        total = sum(parts.values(), out.prediction.new_zeros(()))
        return LossOutput(total, {f"task/{m}": v.detach() for m, v in parts.items()})


@register("ume_mma", UMEMMAHParams)
class UMEMMA(UnimodalEnsemble):
    """UME-MMA: UME's unimodal stage, then late-fusion adaptation with branch-level drop."""

    hparams: UMEMMAHParams

    def stages(self) -> tuple[Stage, ...]:  # noqa: D102
        share = self.hparams.unimodal_share
        return (Stage("unimodal", share), Stage("adapt", 1.0 - share))

    def _seen(self, batch: Batch) -> torch.Tensor:
        if self.stage == "adapt" and self.training:
            return drop_independent(batch.present, self.hparams.p_drop)
        return batch.present

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:
        """Unimodal stage as UME; adaptation: fused task + weighted unimodal task losses."""
        if self.stage == "unimodal":
            return super().loss(out, batch)
        fused = task_loss(out.prediction, batch.labels, self.spec)
        parts = unimodal_losses(out.extras["logits"], out.extras["seen"], batch.labels, self.spec)
        total = fused + self.hparams.unimodal_weight * sum(parts.values(), fused.new_zeros(()))
        return LossOutput(
            total, {"task": fused.detach()} | {f"task/{m}": v.detach() for m, v in parts.items()}
        )

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Encoders and heads; during adaptation encoders run at ``encoder_lr_scale * lr``."""
        scale = self.hparams.encoder_lr_scale if self.stage == "adapt" else 1.0
        return named_groups(
            {"encoders": self.encoders, "heads": self.heads},
            {"encoders": scale * lr, "heads": lr},
        )
