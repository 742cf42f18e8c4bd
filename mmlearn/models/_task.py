"""The task side shared by every method: head size, prediction shape, task loss, fusion ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.models.base import LossOutput, ModelOutput


def output_dim(spec: DatasetSpec) -> int:
    """Size of a head's output: the number of classes, or 1 for regression."""
    return spec.target.num_classes if spec.target.kind == "classification" else 1


def as_prediction(raw: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """A head's (B, K) output as a prediction: (B, C) logits, or (B,) regression values."""
    return raw if spec.target.kind == "classification" else raw.squeeze(-1)


def task_loss(
    prediction: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy on logits, or mean squared error on regression values.

    Args:
        prediction: (B, C) logits or (B,) values.
        labels: (B,) class ids or targets.
        spec: the data set (its target kind picks the loss).
        reduction: ``"mean"``, or ``"none"`` for (B,) per-sample losses.

    Returns:
        The scalar loss, or (B,) per-sample losses.
    """
    if spec.target.kind == "classification":
        return F.cross_entropy(prediction, labels.long(), reduction=reduction)
    return F.mse_loss(prediction, labels.to(prediction.dtype), reduction=reduction)


def supervised_loss(out: ModelOutput, batch: Batch, spec: DatasetSpec) -> LossOutput:
    """The plain task loss of a model whose only objective is its prediction."""
    total = task_loss(out.prediction, batch.labels, spec)
    return LossOutput(total, {"task": total.detach()})


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the (B,) ``values`` where the (B,) bool ``mask`` holds; 0 if it never does.

    A masked sum, not ``values[mask]``: indexing by a mask sizes its output by the data, which
    makes a GPU host wait (docs/benchmarks.md, "gpu").
    """
    total = torch.where(mask, values, values.new_zeros(())).sum()
    return total / mask.sum().clamp(min=1)


def present_mean(
    outputs: Mapping[str, torch.Tensor], seen: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Mean of per-modality (B, K) outputs over the modalities each sample sees (0 if none).

    Args:
        outputs: name -> (B, K).
        seen: name -> (B,) bool.

    Returns:
        (B, K) the late-fusion average.
    """
    stacked = torch.stack(list(outputs.values()))  # (M, B, K)
    weights = torch.stack([seen[name] for name in outputs]).to(stacked.dtype)  # (M, B)
    total = (stacked * weights[..., None]).sum(dim=0)  # (B, K)
    return total / weights.sum(dim=0).clamp(min=1.0)[:, None]


def named_groups(
    parts: Mapping[str, nn.Module | Sequence[nn.Module]], lr: Mapping[str, float] | float
) -> list[dict[str, object]]:
    """Named optimizer groups over the trainable parameters of each part.

    Args:
        parts: group name -> module(s); empty or fully frozen groups are left out.
        lr: one learning rate, or one per group name.

    Returns:
        Groups ``{"name", "params", "lr"}``.
    """
    groups: list[dict[str, object]] = []
    for name, modules in parts.items():
        mods = [modules] if isinstance(modules, nn.Module) else list(modules)
        params = [p for mod in mods for p in mod.parameters() if p.requires_grad]
        if params:
            rate = lr if isinstance(lr, float | int) else lr[name]
            groups.append({"name": name, "params": params, "lr": float(rate)})
    return groups
