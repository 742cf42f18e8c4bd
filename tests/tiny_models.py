"""Every registered method at a tiny size, shared by the model contract tests."""

from __future__ import annotations

import dataclasses
import warnings

import torch

from mmlearn.data.spec import DatasetSpec
from mmlearn.models import ExperimentalWarning, MissingModalityModel, registry

TINY = {
    "hidden": 8,
    "transformer_heads": 2,
    "transformer_layers": 1,
    "ae_layers": (8, 4),
    "n_blocks": 2,
    "cls_layers": (8,),
}


def tiny_model(name: str, spec: DatasetSpec, **extra: object) -> MissingModalityModel:
    """Method ``name`` at a tiny size, seeded; a second sequence modality gets a TextCNN."""
    fields = {f.name for f in dataclasses.fields(registry.hparams_class(name))}
    overrides = {k: v for k, v in TINY.items() if k in fields}
    sequences = [m.name for m in spec.modalities if m.is_sequence]
    if len(sequences) > 1 and "encoder_overrides" in fields:
        overrides["encoder_overrides"] = {sequences[1]: "textcnn"}  # exercise every backbone
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return registry.build(name, overrides | extra, spec)
