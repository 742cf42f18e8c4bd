"""Per-pattern evaluation: the metrics of every missing-modality pattern and their mean.

Evaluation pairs every sample with every non-empty pattern; ``PatternCounts`` keeps one row of
summable statistics per pattern (a flattened confusion matrix, or regression sums), so ranks
add their rows with one all-reduce before ``summary`` computes the metrics. A binary target
also keeps every (pattern, score, label) triple for AUROC and AUPRC, which ranks gather: a
ranking metric of the whole split is not the mean of the ranks' values. The mean over
patterns is the selection score (methods.md §1.8, DMRNet's protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from mmlearn.data.missing import Pattern
from mmlearn.data.spec import TargetSpec
from mmlearn.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    is_sentiment3,
    sentiment3_metrics,
)
from mmlearn.metrics.ranking import auroc, average_precision
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
    "auroc": "max",
    "auprc": "max",
    "mae": "min",
    "pearson": "max",
}
"""Every metric key, and whether larger (``max``) or smaller (``min``) is better."""

_CLASSIFICATION = ("accuracy", "uar", "macro_f1", "weighted_f1")
_ACC2 = ("acc2_has0", "f1_has0", "acc2_nonzero", "f1_nonzero")
_RANKING = ("auroc", "auprc")


def is_binary(target: TargetSpec) -> bool:
    """A two-class target, whose class 1 is the positive one for AUROC and AUPRC."""
    return target.kind == "classification" and target.num_classes == 2


def metric_names(target: TargetSpec) -> tuple[str, ...]:
    """The metric keys evaluated for ``target``.

    Classification gets accuracy, UAR, macro-F1 and weighted F1, plus AUROC and AUPRC of class
    1 for two classes and the four Acc-2 variants when the classes are MOSEI's (negative,
    neutral, positive); regression gets MAE, Pearson r and the Acc-2 variants.
    """
    if target.kind == "regression":
        return ("mae", "pearson", *_ACC2)
    if is_sentiment3(target.class_names):
        return (*_CLASSIFICATION, *_ACC2)
    if is_binary(target):
        return (*_CLASSIFICATION, *_RANKING)
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
        # Binary targets: (K, 3) float64 blocks of (pattern row, score of class 1, label).
        self.scored: list[torch.Tensor] = []

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
        if is_binary(self.target):
            rows = torch.tensor([self._row[b] for b in pattern.tolist()], device=labels.device)
            # The logit margin ranks samples as the probability of class 1 does, without ties
            # from a saturated softmax.
            margin = prediction[:, 1].double() - prediction[:, 0].double()  # (B,)
            self.scored.append(torch.stack([rows.double(), margin, labels.double()], dim=1))

    def _stats(self, prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target.kind == "classification":
            classes = self.target.num_classes
            cm = confusion_matrix(labels, prediction.argmax(dim=-1), classes)  # (C, C)
            return cm.flatten().double()
        return regression_stats(labels, prediction.reshape(-1))

    def reduce_across_ranks(self) -> None:
        """Sum the counts of every rank and gather every rank's scores, on every rank.

        Every rank of the default process group must call this once, after its last update.
        """
        world = dist.get_world_size()
        dist.all_reduce(self.counts)
        if not is_binary(self.target):
            return
        local = self._scored()
        size = torch.tensor([len(local)], device=self.counts.device)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        # all_gather needs equal shapes: pad every block to the longest, then cut.
        padded = torch.zeros(int(max(sizes)), 3, dtype=torch.float64, device=self.counts.device)
        padded[: len(local)] = local
        blocks = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(blocks, padded)
        self.scored = [b[: int(n)] for b, n in zip(blocks, sizes, strict=True)]

    def _scored(self) -> torch.Tensor:
        """(K, 3) every (pattern row, score, label) triple so far."""
        if not self.scored:
            return torch.zeros(0, 3, dtype=torch.float64, device=self.counts.device)
        return torch.cat(self.scored)

    def _metrics(self, row: np.ndarray, scored: np.ndarray) -> dict[str, float]:
        if self.target.kind == "regression":
            return regression_metrics(row)
        classes = self.target.num_classes
        cm = row.reshape(classes, classes)
        out = classification_metrics(cm)
        if is_sentiment3(self.target.class_names):
            out.update(sentiment3_metrics(cm))
        if is_binary(self.target):
            out["auroc"] = auroc(scored[:, 1], scored[:, 2])
            out["auprc"] = average_precision(scored[:, 1], scored[:, 2])
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
        scored = self._scored().cpu().numpy()
        per_pattern = {
            p.name: self._metrics(row, scored[scored[:, 0] == i])
            for i, (p, row) in enumerate(zip(self.patterns, counts, strict=True))
        }
        names = metric_names(self.target)
        mean = {k: float(np.mean([m[k] for m in per_pattern.values()])) for k in names}
        return {"mean": mean, "patterns": per_pattern, "samples": self.samples()}
