"""Binary ranking metrics from (score, label) pairs: AUROC and AUPRC (average precision).

Unlike the confusion-matrix metrics, these need every score, so ranks gather their pairs
(``PatternCounts.reduce_across_ranks``) rather than add counts. Both follow scikit-learn's
definitions (``roc_auc_score``, ``average_precision_score``), ties included:

* AUROC is the Mann-Whitney statistic: the probability that a random positive scores higher
  than a random negative, a tie counting one half (Hanley & McNeil 1982). It is 0.5 (chance)
  when the labels hold one class only, where scikit-learn raises.
* AUPRC is average precision, AP = sum_n (R_n - R_{n-1}) P_n over the distinct score
  thresholds from the highest down, without interpolation. It is 0 without positives.
"""

from __future__ import annotations

import numpy as np


def _as_binary(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 scores (larger = more positive) and (N,) bool: the label is 1."""
    return np.asarray(scores, dtype=np.float64), np.asarray(labels) == 1


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of (N,) scores for (N,) 0/1 labels."""
    scores, positive = _as_binary(scores, labels)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share the mean of their ranks.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    rank_sums = np.bincount(inverse, weights=ranks)
    ranks = (rank_sums / counts)[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve of (N,) scores for (N,) 0/1 labels, as AP."""
    scores, positive = _as_binary(scores, labels)
    if not positive.any():
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], positive[order]
    # The last position of every run of equal scores is one threshold.
    last = np.flatnonzero(np.diff(sorted_scores) != 0)
    thresholds = np.concatenate([last, [len(scores) - 1]])
    true_pos = np.cumsum(hits)[thresholds]
    precision = true_pos / (thresholds + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))
