"""Regression metrics (MOSEI sentiment scores) computed from summable statistics.

``regression_stats`` turns a batch into a fixed vector of sums; vectors add up across batches
and ranks, and ``regression_metrics`` computes every metric from the total. The Acc-2 variants
follow MOSEI practice: has-0 compares label >= 0 with prediction >= 0 over every sample,
non-zero compares label > 0 with prediction > 0 over the samples whose label is not 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mmlearn.metrics.classification import binary_acc2_metrics

# Sum of: 1, y, p, y^2, p^2, y*p, |y - p|; then the has-0 and non-zero (2, 2) matrices flattened.
_MOMENTS = 7
STATS_SIZE = _MOMENTS + 8


def regression_stats(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """(STATS_SIZE,) float64 sums over a batch; add vectors to combine batches or ranks.

    Args:
        labels: (B,) true scores.
        predictions: (B,) predicted scores.
    """
    y = labels.double().reshape(-1)  # (B,)
    p = predictions.double().reshape(-1)  # (B,)
    moments = torch.stack([torch.ones_like(y), y, p, y * y, p * p, y * p, (y - p).abs()])
    has0 = _binary_counts((y >= 0).long(), (p >= 0).long())
    keep = y != 0
    nonzero = _binary_counts((y[keep] > 0).long(), (p[keep] > 0).long())
    return torch.cat([moments.sum(dim=1), has0, nonzero])


def _binary_counts(truth: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(4,) float64 flattened (2, 2) confusion counts of 0/1 vectors."""
    return torch.bincount(truth * 2 + pred, minlength=4).double()


def mae(stats: np.ndarray) -> float:
    """Mean absolute error; 0 for no samples."""
    n, abs_err = stats[0], stats[6]
    return float(abs_err / n) if n > 0 else 0.0


def pearson(stats: np.ndarray) -> float:
    """Pearson correlation of labels and predictions; 0 when either has no variance."""
    n, sy, sp, syy, spp, syp = (float(v) for v in stats[:6])
    if n == 0:
        return 0.0
    cov = syp - sy * sp / n
    var_y = syy - sy * sy / n
    var_p = spp - sp * sp / n
    if var_y <= 0 or var_p <= 0:
        return 0.0
    return cov / math.sqrt(var_y * var_p)


def regression_metrics(stats: np.ndarray) -> dict[str, float]:
    """``mae``, ``pearson`` and the four Acc-2 / F1 variants from summed ``regression_stats``."""
    stats = np.asarray(stats, dtype=np.float64)
    has0 = stats[_MOMENTS : _MOMENTS + 4].reshape(2, 2)
    nonzero = stats[_MOMENTS + 4 :].reshape(2, 2)
    return {"mae": mae(stats), "pearson": pearson(stats), **binary_acc2_metrics(has0, nonzero)}
