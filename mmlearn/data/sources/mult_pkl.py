"""The MulT / MultiBench CMU-MOSEI pickles: ``mosei_senti_data.pkl`` and ``_noalign``.

The layout (yaohungt/Multimodal-Transformer ``src/dataset.py``, MultiBench
``datasets/affect/get_data.py``; data-formats.md §2d) is ``{"train"|"valid"|"test": split}``,
each split holding ``text`` (N, T, 300) GloVe, ``audio`` (N, T_a, 74) COVAREP, ``vision``
(N, T_v, 35) FACET, ``labels`` (N, 1, 1) sentiment in [-3, 3] and ``id`` (N, 3) metadata
(not kept). The sequences come from the CMU SDK's ``get_tensors``: **left**-padded with zeros,
the last T steps kept.

* Word-aligned file (every modality has the same T): the sequences are stored as they are,
  fixed-length and left-padded, as MulT reads them.
* Unaligned file (``_noalign``: text 50, audio and vision 500 steps): each sample's steps are
  moved to the front, zeros after, and its length recorded (the store's right padding). A
  sample's valid steps start at its first non-zero step, so leading steps that are exactly
  zero count as padding; an all-zero sample keeps one zero step.

Audio ``-inf`` becomes 0 in the store (MultiBench does the same). The file is a pickle, so it is
opened only with ``--trust-pickle``. Targets: ``sentiment`` (regression), ``sentiment3`` (sign:
negative / neutral / positive, the default task) and ``sentiment2`` (sentiment >= 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmlearn.data.source import SourceData, SplitArrays, input_option, register_source
from mmlearn.data.sources._arrays import (
    common_width,
    entry,
    left_to_right,
    numeric,
    same_rows,
)
from mmlearn.data.sources._files import pickled_splits, trust_pickle_option
from mmlearn.data.targets import SENTIMENT_TARGETS, sentiment_targets
from mmlearn.errors import DataError

MODALITIES = ("text", "audio", "vision")
LAYOUT = "a MulT mosei_senti_data.pkl / mosei_senti_data_noalign.pkl"


@dataclass(frozen=True)
class MultPklOptions:
    path: str = input_option("MulT pickle: mosei_senti_data.pkl or mosei_senti_data_noalign.pkl")
    trust_pickle: bool = trust_pickle_option()


def _labels(part: Mapping[str, Any], file: Path, split: str) -> np.ndarray:
    """(N,) float32 sentiment from MulT's (N, 1, 1) labels (or (N, 1), (N,))."""
    y = np.asarray(entry(part, "labels", file, split))
    if y.dtype.kind not in "biuf" or y.ndim == 0 or y[0].size != 1:
        raise DataError(
            f"{file}: split {split!r} labels have shape {y.shape} ({y.dtype}), expected "
            "(N, 1, 1) sentiment scores."
        )
    return y.reshape(len(y)).astype(np.float32)


def _split(part: Mapping[str, Any], file: Path, split: str) -> SplitArrays:
    features = {
        m: numeric(entry(part, m, file, split), 3, file, f"split {split!r} {m}") for m in MODALITIES
    }
    sentiment = _labels(part, file, split)
    same_rows({m: len(x) for m, x in features.items()} | {"labels": len(sentiment)}, file, split)
    return SplitArrays(features, sentiment_targets(sentiment))


@register_source(
    "mult_pkl",
    "MulT / MultiBench mosei_senti_data(_noalign).pkl of CMU-MOSEI",
    MultPklOptions,
    modalities=lambda _: ("text", "audio", "vision"),
)
def build_mult_pkl(opts: MultPklOptions) -> SourceData:
    """Read a MulT pickle into the train, val and test splits (text, audio, vision).

    Raises:
        DataError: the pickle is untrusted, unreadable or not in MulT's layout.
    """
    file, parts = pickled_splits(opts.path, opts.trust_pickle, LAYOUT)
    splits = {split: _split(part, file, split) for split, part in parts.items()}
    common_width({s: a.features for s, a in splits.items()}, file)
    steps = {x.shape[1] for x in splits["train"].features.values()}
    aligned = len(steps) == 1
    if not aligned:
        for arrays in splits.values():
            for m, x in arrays.features.items():
                arrays.features[m], arrays.lengths[m] = left_to_right(x)
    notes = {"layout": "aligned, left-padded" if aligned else "unaligned, moved to right padding"}
    return SourceData(splits, SENTIMENT_TARGETS, "sentiment3", notes)
