"""Per-pattern evaluation: the metrics of every missing-modality pattern and their mean.

Evaluation pairs every sample with every non-empty pattern; ``PatternCounts`` keeps one row of
summable statistics per pattern (a flattened confusion matrix, or regression sums), so ranks
add their rows with one all-reduce before ``summary`` computes the metrics. The mean over
patterns is the selection score (methods.md §1.8, DMRNet's protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from mmlearn.data.missing import Pattern
from mmlearn.data.spec import TargetSpec
from mmlearn.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    is_sentiment3,
    sentiment3_metrics,
)
from mmlearn.metrics.regression import STATS_SIZE, regression_metrics, regression_stats

METRIC_MODES: dict[str, Literal["max", "min"]] = {
    "accuracy": "max",
    "uar": "max",
    "macro_f1": "max",
    "weighted_f1": "max",
    "acc2_has0": "max",
    "f1_has0": "max",
    "acc2_nonzero": "max",
    "f1_nonzero": "max",
    "mae": "min",
    "pearson": "max",
}
"""Every metric key, and whether larger (``max``) or smaller (``min``) is better."""

_CLASSIFICATION = ("accuracy", "uar", "macro_f1", "weighted_f1")
_ACC2 = ("acc2_has0", "f1_has0", "acc2_nonzero", "f1_nonzero")


def metric_names(target: TargetSpec) -> tuple[str, ...]:
    """The metric keys evaluated for ``target``.

    Classification gets accuracy, UAR, macro-F1 and weighted F1, plus the four Acc-2 variants
    when the classes are MOSEI's (negative, neutral, positive); regression gets MAE, Pearson r
    and the Acc-2 variants.
    """
    if target.kind == "regression":
        return ("mae", "pearson", *_ACC2)
    if is_sentiment3(target.class_names):
        return (*_CLASSIFICATION, *_ACC2)
    return _CLASSIFICATION


def default_selection_metric(target: TargetSpec) -> str:
    """macro-F1 for classification, MAE for regression."""
    return "macro_f1" if target.kind == "classification" else "mae"


class PatternCounts:
    """Summable evaluation statistics, one row per pattern.

    Args:
        target: the evaluated target (its kind and classes decide the statistics).
        patterns: the evaluated patterns; their order is the row order.
        device: where the counts live (the model's device, so that they can be all-reduced).
    """

    def __init__(
        self,
        target: TargetSpec,
        patterns: Sequence[Pattern],
        device: torch.device | str = "cpu",
    ) -> None:
        self.target = target
        self.patterns = tuple(patterns)
        self._row = {p.bits: i for i, p in enumerate(self.patterns)}
        classes = target.num_classes
        size = classes * classes if target.kind == "classification" else STATS_SIZE
        self.counts = torch.zeros(len(self.patterns), size, dtype=torch.float64, device=device)

    def update(self, prediction: torch.Tensor, labels: torch.Tensor, pattern: torch.Tensor) -> None:
        """Add one batch.

        Args:
            prediction: (B, C) class scores, or (B,) regression values.
            labels: (B,) class ids or regression targets.
            pattern: (B,) int64 pattern bitmask of each sample.

        Raises:
            ValueError: a sample's pattern is not one of ``patterns``.
        """
        for bits in torch.unique(pattern).tolist():
            if bits not in self._row:
                raise ValueError(
                    f"pattern bitmask {bits} is not among the evaluated patterns "
                    f"{[p.name for p in self.patterns]}."
                )
            keep = pattern == bits  # (B,)
            self.counts[self._row[bits]] += self._stats(prediction[keep], labels[keep])

    def _stats(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target.kind == "classification":
            classes = self.target.num_classes
            cm = confusion_matrix(labels, prediction.argmax(dim=-1), classes)  # (C, C)
            return cm.flatten().double()
        return regression_stats(labels, prediction.reshape(-1))

    def _metrics(self, row: np.ndarray) -> dict[str, float]:
        if self.target.kind == "regression":
            return regression_metrics(row)
        classes = self.target.num_classes
        cm = row.reshape(classes, classes)
        out = classification_metrics(cm)
        if is_sentiment3(self.target.class_names):
            out.update(sentiment3_metrics(cm))
        return out

    def samples(self) -> dict[str, int]:
        """Evaluated samples per pattern name."""
        counts = self.counts.cpu().numpy()
        classification = self.target.kind == "classification"
        totals = counts.sum(axis=1) if classification else counts[:, 0]  # (P,)
        return {p.name: int(round(n)) for p, n in zip(self.patterns, totals, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Metrics per pattern, their mean over patterns, and samples per pattern.

        Returns:
            ``{"mean": {metric: value}, "patterns": {pattern name: {metric: value}},
            "samples": {pattern name: count}}``.
        """
        counts = self.counts.cpu().numpy()
        per_pattern = {
            p.name: self._metrics(row) for p, row in zip(self.patterns, counts, strict=True)
        }
        names = metric_names(self.target)
        mean = {k: float(np.mean([m[k] for m in per_pattern.values()])) for k in names}
        return {"mean": mean, "patterns": per_pattern, "samples": self.samples()}
