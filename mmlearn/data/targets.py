"""The targets of MOSEI-style sentiment data, shared by every source that reads such data.

A segment's sentiment is the mean of its annotators' ratings in [-3, 3]; the sources derive the
same three targets from it (data-formats.md, MOSEI): the rating itself (regression), MMSA's three
classes and the binary "has-0" split of Acc-2.
"""

from __future__ import annotations

import numpy as np

from mmlearn.data.spec import TargetSpec

SENTIMENT_TARGETS = (
    TargetSpec("sentiment", "regression"),
    TargetSpec("sentiment3", "classification", ("negative", "neutral", "positive")),
    TargetSpec("sentiment2", "classification", ("negative", "non-negative")),
)
"""The targets ``sentiment_targets`` returns, with what they mean."""


def sentiment_targets(sentiment: np.ndarray) -> dict[str, np.ndarray]:
    """The three targets of a (N,) float32 mean rating.

    Returns:
        ``sentiment`` (float32 regression), ``sentiment3`` (int64: 0 negative, 1 neutral,
        2 positive; MMSA's classification labels) and ``sentiment2`` (int64: 1 if >= 0, the
        Acc-2 "has-0" split).
    """
    return {
        "sentiment": sentiment.astype(np.float32),
        "sentiment3": (np.sign(sentiment).astype(np.int64) + 1),
        "sentiment2": (sentiment >= 0).astype(np.int64),
    }
