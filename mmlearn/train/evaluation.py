"""Evaluation on the expanded split: every sample under every pattern, summed over ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmlearn.data.loader import SplitLoader
from mmlearn.data.missing import Pattern, evaluation_patterns
from mmlearn.data.spec import DatasetSpec
from mmlearn.data.store import StoreSplit
from mmlearn.metrics.patterns import PatternCounts
from mmlearn.models.base import MissingModalityModel
from mmlearn.train.distributed import current_world
from mmlearn.train.placement import model_placement, on_device


@torch.no_grad()
def evaluate(
    model: MissingModalityModel,
    split: StoreSplit,
    spec: DatasetSpec,
    batch_size: int,
    patterns: Sequence[Pattern] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``split`` per pattern, and their mean over patterns.

    Under a process group every rank must call this: each evaluates its own disjoint shard and
    the per-pattern counts are summed (and the scores of a binary target gathered), so every
    (sample, pattern) pair is counted exactly once and every rank returns the same result.

    Args:
        model: the model (not a DeepSpeed engine); it is put in eval mode and back.
        split: the split to evaluate.
        spec: modalities and target of the split.
        batch_size: samples per rank and batch.
        patterns: patterns to evaluate; default every non-empty one.

    Returns:
        ``{"mean": {metric: value}, "patterns": {name: {metric: value}},
        "samples": {name: count}}``; see ``mmlearn.metrics.patterns.PatternCounts.summary``.
    """
    world = current_world()
    patterns = evaluation_patterns(spec.names) if patterns is None else tuple(patterns)
    loader = SplitLoader(split, spec, batch_size, rank=world.rank, world_size=world.world_size)
    device, dtype = model_placement(model)
    counts = PatternCounts(spec.target, patterns, device)
    was_training = model.training
    model.eval()
    try:
        for batch in on_device(loader.evaluate(patterns), device, dtype):
            prediction = model(batch).prediction.float()  # (B, C) or (B,)
            counts.update(prediction, batch.labels, batch.pattern)
    finally:
        model.train(was_training)
    if world.world_size > 1:
        counts.reduce_across_ranks()
    return counts.summary()
