"""Classification metrics computed from a confusion matrix.

Every metric here is a function of the (C, C) confusion matrix alone (rows: true class, columns:
predicted class), so ranks can sum their matrices with one all-reduce and compute the metrics
once, counting nothing twice. The averages follow scikit-learn's defaults: a macro average runs
over the classes that occur as a label or as a prediction, and an undefined ratio (0 / 0)
counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SENTIMENT3 = ("negative", "neutral", "positive")


def confusion_matrix(
    labels: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """(C, C) int64 counts: entry [i, j] is the number of samples of class i predicted as j.

    Args:
        labels: (B,) int64 true classes in [0, C).
        predictions: (B,) int64 predicted classes in [0, C).
        num_classes: C.
    """
    flat = labels.long() * num_classes + predictions.long()  # (B,)
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den is 0."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, support, predicted counts) per class, each (C,) float64."""
    cm = np.asarray(cm, dtype=np.float64)
    return np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)


def _occurring(support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(C,) bool: classes that occur as a label or as a prediction."""
    return (support > 0) | (predicted > 0)


def accuracy(cm: np.ndarray) -> float:
    """Share of correct predictions (weighted accuracy, WA); 0 for an empty matrix."""
    tp, support, _ = _counts(cm)
    return float(_safe_ratio(tp.sum(), support.sum()))


def uar(cm: np.ndarray) -> float:
    """Unweighted average recall (UA): the mean per-class recall (macro recall)."""
    tp, support, predicted = _counts(cm)
    used = _occurring(support, predicted)
    if not used.any():
        return 0.0
    return float(_safe_ratio(tp, support)[used].mean())


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
    """(C,) F1 = 2 tp / (2 tp + fp + fn) per class, 0 where undefined."""
    tp, support, predicted = _counts(cm)
    return _safe_ratio(2 * tp, support + predicted)


def macro_f1(cm: np.ndarray) -> float:
    """Mean per-class F1 over the classes that occur."""
    _, support, predicted = _counts(cm)
    used = _occurring(support, predicted)
    if not used.any():
        return 0.0
    return float(_f1_per_class(cm)[used].mean())


def weighted_f1(cm: np.ndarray) -> float:
    """Per-class F1 averaged with the class supports as weights."""
    _, support, _ = _counts(cm)
    return float(_safe_ratio((_f1_per_class(cm) * support).sum(), support.sum()))


def classification_metrics(cm: np.ndarray) -> dict[str, float]:
    """``accuracy``, ``uar``, ``macro_f1`` and ``weighted_f1`` of one confusion matrix."""
    return {
        "accuracy": accuracy(cm),
        "uar": uar(cm),
        "macro_f1": macro_f1(cm),
        "weighted_f1": weighted_f1(cm),
    }


def is_sentiment3(class_names: Sequence[str]) -> bool:
    """True for MOSEI-style 3-class sentiment: classes negative, neutral, positive in order."""
    return tuple(class_names) == SENTIMENT3


def binary_confusions(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two (2, 2) binary matrices behind MOSEI's Acc-2, from a 3-class matrix.

    With classes (negative, neutral, positive) read as pred - 1 and label - 1 in {-1, 0, 1}
    (methods.md §1.8, RedCore's ``binary_metrics``):

    * has-0: label >= 0 vs prediction >= 0 over every sample (neutral counts as non-negative);
    * non-zero: label > 0 vs prediction > 0 over the samples whose label is not neutral.

    Args:
        cm: (3, 3) counts, rows true class, columns predicted class.

    Returns:
        (has0, nonzero): (2, 2) counts each, index 1 = the positive side.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (3, 3):
        raise ValueError(f"a sentiment confusion matrix must be (3, 3), but got {cm.shape}.")
    has0_side = np.array([0, 1, 1])  # class -> side of ">= 0"
    nonzero_side = np.array([0, 0, 1])  # class -> side of "> 0"
    has0 = np.zeros((2, 2))
    nonzero = np.zeros((2, 2))
    for true in range(3):
        for pred in range(3):
            has0[has0_side[true], has0_side[pred]] += cm[true, pred]
            if true != 1:
                nonzero[nonzero_side[true], nonzero_side[pred]] += cm[true, pred]
    return has0, nonzero


def binary_acc2_metrics(has0: np.ndarray, nonzero: np.ndarray) -> dict[str, float]:
    """Acc-2 and weighted F1 of both binary variants, from their (2, 2) matrices."""
    return {
        "acc2_has0": accuracy(has0),
        "f1_has0": weighted_f1(has0),
        "acc2_nonzero": accuracy(nonzero),
        "f1_nonzero": weighted_f1(nonzero),
    }


def sentiment3_metrics(cm: np.ndarray) -> dict[str, float]:
    """``acc2_has0``, ``f1_has0``, ``acc2_nonzero``, ``f1_nonzero`` of a 3-class matrix."""
    return binary_acc2_metrics(*binary_confusions(cm))
