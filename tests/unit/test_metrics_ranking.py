"""AUROC and AUPRC: hand-computed cases, scikit-learn where installed, and ranks gathered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlearn.data.missing import make_pattern
from mmlearn.data.spec import TargetSpec
from mmlearn.metrics import PatternCounts, metric_names
from mmlearn.metrics.ranking import auroc, average_precision
from mmlearn.train.distributed import run_distributed

BINARY = TargetSpec("mortality", "classification", ("survived", "died"))
PATTERNS = (make_pattern(0b01, ("x", "y")), make_pattern(0b11, ("x", "y")))


def test_hand_computed_without_ties():
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    # Pairs (positive, negative): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4.
    assert auroc(scores, labels) == pytest.approx(3 / 4)
    # From the top: 0.8 hit (P 1, R 1/2); 0.4 miss; 0.35 hit (P 2/3, R 1); 0.1 miss.
    assert average_precision(scores, labels) == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)


def test_hand_computed_with_ties():
    scores, labels = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1, 0, 0, 1])
    # Pairs: (1 vs 1) tie = 1/2, (1 vs 2) = 0, (3 vs 1) = 1, (3 vs 2) = 1 -> 2.5/4.
    assert auroc(scores, labels) == pytest.approx(2.5 / 4)
    # Thresholds 3 (P 1, R 1/2), 2 (P 1/2, R 1/2), 1 (P 2/4, R 1).
    assert average_precision(scores, labels) == pytest.approx(1 / 2 * 1 + 1 / 2 * 1 / 2)


def test_one_class_only_is_chance_and_zero():
    assert auroc(np.array([0.2, 0.9]), np.array([1, 1])) == 0.5
    assert auroc(np.array([0.2, 0.9]), np.array([0, 0])) == 0.5
    assert average_precision(np.array([0.2, 0.9]), np.array([0, 0])) == 0.0


def test_equal_to_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n in (5, 50, 500):
        labels = rng.integers(0, 2, n)
        scores = np.round(rng.normal(size=n) + labels, 1)  # rounding makes ties
        assert auroc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
        assert average_precision(scores, labels) == pytest.approx(
            metrics.average_precision_score(labels, scores)
        )


# Pattern x: scores (margins) 0.3, -1, 2, 0.5 for labels 1, 0, 1, 0 -> AUROC 3/4.
# Pattern x+y: margins 1, -1, 0 for labels 1, 0, 0 -> AUROC 1.
LOGITS = torch.tensor(
    [[0.0, 0.3], [1.0, 0.0], [0.0, 2.0], [0.0, 0.5], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
)
LABELS = torch.tensor([1, 0, 1, 0, 1, 0, 0])
PATTERN = torch.tensor([1, 1, 1, 1, 3, 3, 3])


def test_pattern_counts_rank_scores_per_pattern():
    counts = PatternCounts(BINARY, PATTERNS)
    counts.update(LOGITS[:3], LABELS[:3], PATTERN[:3])
    counts.update(LOGITS[3:], LABELS[3:], PATTERN[3:])
    summary = counts.summary()
    assert metric_names(BINARY)[-2:] == ("auroc", "auprc")
    assert summary["patterns"]["x"]["auroc"] == pytest.approx(3 / 4)
    # x from the top: 2 hit, 0.5 miss, 0.3 hit, -1 miss -> 1/2 * 1 + 1/2 * 2/3.
    assert summary["patterns"]["x"]["auprc"] == pytest.approx(1 / 2 + 1 / 3)
    assert summary["patterns"]["x+y"]["auroc"] == pytest.approx(1.0)
    assert summary["patterns"]["x+y"]["auprc"] == pytest.approx(1.0)
    assert summary["mean"]["auroc"] == pytest.approx((3 / 4 + 1) / 2)


def _rank_summary(rows: list[int]) -> dict:
    import torch.distributed as dist

    mine = rows[:2] if dist.get_rank() == 0 else rows[2:]  # uneven shards: 2 and 5 samples
    counts = PatternCounts(BINARY, PATTERNS)
    counts.update(LOGITS[mine], LABELS[mine], PATTERN[mine])
    counts.reduce_across_ranks()
    return counts.summary()


def test_two_ranks_gather_scores_instead_of_averaging():
    ranks = run_distributed(_rank_summary, 2, [0, 2, 1, 3, 4, 5, 6])
    whole = PatternCounts(BINARY, PATTERNS)
    whole.update(LOGITS, LABELS, PATTERN)
    assert ranks[0] == ranks[1] == whole.summary()
    # Rank 0 alone holds only positives of x (chance, 0.5); averaging ranks would be wrong.
    assert ranks[0]["patterns"]["x"]["auroc"] == pytest.approx(3 / 4)
