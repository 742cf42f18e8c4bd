"""Evaluation metrics, computed from counts that can be summed across batches and ranks."""

from mmlearn.metrics.classification import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_f1,
    sentiment3_metrics,
    uar,
    weighted_f1,
)
from mmlearn.metrics.patterns import (
    METRIC_MODES,
    PatternCounts,
    default_selection_metric,
    metric_names,
)
from mmlearn.metrics.regression import regression_metrics, regression_stats

__all__ = [
    "METRIC_MODES",
    "PatternCounts",
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "default_selection_metric",
    "macro_f1",
    "metric_names",
    "regression_metrics",
    "regression_stats",
    "sentiment3_metrics",
    "uar",
    "weighted_f1",
]
