"""Putting batches where the model is: its device, and its floating dtype (bf16 under DeepSpeed)."""

from __future__ import annotations

import torch
from torch import nn

from mmlearn.data.batch import Batch


def model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    raise ValueError(f"{type(model).__name__} has no floating-point parameters.")


def to_model(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """``batch`` on ``device`` with its floating features in ``dtype``; labels keep theirs."""
    moved = batch.to(device, non_blocking=True)
    if dtype != torch.float32:
        moved.features = {
            k: v.to(dtype) if v.is_floating_point() else v for k, v in moved.features.items()
        }
    return moved
