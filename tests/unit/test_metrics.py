"""Metrics on small cases computed by hand (fractions in the comments)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlearn.data.missing import make_pattern
from mmlearn.data.spec import TargetSpec
from mmlearn.metrics import (
    PatternCounts,
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_f1,
    metric_names,
    regression_metrics,
    regression_stats,
    sentiment3_metrics,
    uar,
    weighted_f1,
)

# Rows are true classes, columns predictions.
CM = np.array([[2, 1, 0], [0, 1, 1], [0, 0, 3]])


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == CM.tolist()


def test_classification_metrics_of_a_three_class_matrix():
    # 6 of 8 right. Recall 2/3, 1/2, 3/3. Precision 2/2, 1/2, 3/4.
    # F1 = 2tp / (2tp + fp + fn): 4/5, 2/4, 6/7; supports 3, 2, 3.
    assert accuracy(CM) == pytest.approx(6 / 8)
    assert uar(CM) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert macro_f1(CM) == pytest.approx((4 / 5 + 1 / 2 + 6 / 7) / 3)
    assert weighted_f1(CM) == pytest.approx((3 * 4 / 5 + 2 * 1 / 2 + 3 * 6 / 7) / 8)
    assert classification_metrics(CM) == {
        "accuracy": accuracy(CM),
        "uar": uar(CM),
        "macro_f1": macro_f1(CM),
        "weighted_f1": weighted_f1(CM),
    }


def test_macro_averages_skip_classes_that_never_occur():
    # Class 2 is neither a label nor a prediction: averages run over classes 0 and 1.
    cm = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    assert uar(cm) == pytest.approx((1 / 2 + 1) / 2)
    assert macro_f1(cm) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_a_class_only_predicted_counts_as_zero_recall_and_f1():
    # Class 1 has no sample but is predicted once (scikit-learn's zero_division=0 default).
    cm = np.array([[1, 1], [0, 0]])
    assert uar(cm) == pytest.approx((1 / 2 + 0) / 2)
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0) / 2)
    assert weighted_f1(cm) == pytest.approx(2 / 3)  # class 1 has no weight


def test_empty_matrix_gives_zeros():
    assert classification_metrics(np.zeros((3, 3))) == {
        "accuracy": 0.0,
        "uar": 0.0,
        "macro_f1": 0.0,
        "weighted_f1": 0.0,
    }


def test_sentiment_acc2_variants_from_three_class_counts():
    # negative / neutral / positive; rows true.
    cm = np.array([[3, 1, 1], [1, 2, 1], [0, 1, 4]])
    # has-0: label >= 0 vs pred >= 0 -> [[3, 2], [1, 8]]: 11/14 right.
    # F1 (<0) = 6/9, support 5; F1 (>=0) = 16/19, support 9.
    # non-zero: neutral labels dropped, label > 0 vs pred > 0 -> [[4, 1], [1, 4]].
    got = sentiment3_metrics(cm)
    assert got["acc2_has0"] == pytest.approx(11 / 14)
    assert got["f1_has0"] == pytest.approx((5 * 6 / 9 + 9 * 16 / 19) / 14)
    assert got["acc2_nonzero"] == pytest.approx(8 / 10)
    assert got["f1_nonzero"] == pytest.approx(4 / 5)


def test_sentiment_variants_match_the_per_sample_definition():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (500,), generator=gen)
    preds = torch.randint(0, 3, (500,), generator=gen)
    got = sentiment3_metrics(confusion_matrix(labels, preds, 3).numpy())
    y, p = labels - 1, preds - 1
    assert got["acc2_has0"] == pytest.approx(((y >= 0) == (p >= 0)).double().mean().item())
    keep = y != 0
    nonzero = ((y[keep] > 0) == (p[keep] > 0)).double().mean().item()
    assert got["acc2_nonzero"] == pytest.approx(nonzero)


def test_regression_metrics_from_summed_statistics():
    y = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    p = torch.tensor([-1.0, 0.5, -0.5, 2.0])
    # |errors| 1, .5, 1.5, 1 -> MAE 1. has-0: y>=0 FTTT vs p>=0 FTFT -> 3/4.
    # non-zero (y != 0: samples 0, 2, 3): y>0 FTT vs p>0 FFT -> 2/3.
    got = regression_metrics(regression_stats(y, p).numpy())
    assert got["mae"] == pytest.approx(1.0)
    assert got["pearson"] == pytest.approx(np.corrcoef(y.numpy(), p.numpy())[0, 1])
    assert got["acc2_has0"] == pytest.approx(3 / 4)
    assert got["acc2_nonzero"] == pytest.approx(2 / 3)
    halves = regression_stats(y[:2], p[:2]) + regression_stats(y[2:], p[2:])
    assert regression_metrics(halves.numpy()) == pytest.approx(got)


def test_pearson_without_variance_is_zero():
    y = torch.tensor([1.0, 1.0, 1.0])
    assert regression_metrics(regression_stats(y, torch.tensor([0.0, 1.0, 2.0])).numpy())[
        "pearson"
    ] == pytest.approx(0.0)


def test_pattern_counts_give_metrics_per_pattern_and_their_mean():
    target = TargetSpec("digit", "classification", ("a", "b"))
    first, both = make_pattern(0b01, ("x", "y")), make_pattern(0b11, ("x", "y"))
    counts = PatternCounts(target, [first, both])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0, 1])
    pattern = torch.tensor([1, 1, 1, 3, 3])
    counts.update(logits, labels, pattern)
    summary = counts.summary()
    assert summary["samples"] == {"x": 3, "x+y": 2}
    assert summary["patterns"]["x"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["patterns"]["x+y"]["accuracy"] == pytest.approx(1.0)
    assert summary["mean"]["accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(summary["mean"]) == set(metric_names(target))
    with pytest.raises(ValueError, match="pattern bitmask 2"):
        counts.update(logits[:1], labels[:1], torch.tensor([2]))


def test_metric_names_follow_the_target():
    digits = TargetSpec("digit", "classification", tuple("0123456789"))
    sentiment = TargetSpec("sentiment", "classification", ("negative", "neutral", "positive"))
    score = TargetSpec("score", "regression")
    assert metric_names(digits) == ("accuracy", "uar", "macro_f1", "weighted_f1")
    assert metric_names(sentiment)[4:] == ("acc2_has0", "f1_has0", "acc2_nonzero", "f1_nonzero")
    assert metric_names(score)[:2] == ("mae", "pearson")
    sentiment_counts = PatternCounts(sentiment, [make_pattern(1, ("x", "y"))])
    sentiment_counts.update(torch.eye(3), torch.tensor([0, 1, 2]), torch.tensor([1, 1, 1]))
    assert sentiment_counts.summary()["mean"]["acc2_has0"] == pytest.approx(1.0)
