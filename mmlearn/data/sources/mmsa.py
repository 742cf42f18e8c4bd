"""MMSA's processed pickles of CMU-MOSI and CMU-MOSEI: ``aligned_50.pkl`` and ``unaligned_50.pkl``.

The layout (thuiar/MMSA README, data-formats.md §2a) is ``{"train"|"valid"|"test": split}``
where each split maps keys to per-sample arrays:

* ``text`` (N, 50, 768) BERT features, or ``text_bert`` (N, 3, 50) rows of token ids, input
  mask and segment ids; ``--text text_bert`` stores the latter as (N, 50, 3) float32 (ids are
  exact in float32), step t holding (id, mask, segment) of token t.
* ``audio`` (N, T_a, D_a) COVAREP, which holds ``-inf``: the store writer replaces it by 0 as
  MMSA's loader does, and counts it in the manifest.
* ``vision`` (N, T_v, D_v) FACET.
* ``audio_lengths`` / ``vision_lengths`` (N,) in the unaligned files, whose audio and vision
  are right-padded with zeros; their steps past the length are set to exactly 0, and lengths
  outside [1, T] are clipped (counted in the manifest's notes).
* ``regression_labels`` (N,) sentiment in [-3, 3] and ``classification_labels`` (N,)
  0 negative / 1 neutral / 2 positive, the 3 classes RedCore trains on.

Every shape is read from the arrays: MMSA's config disagrees with its own files about the
unaligned lengths (data-formats.md §2a). The file is a pickle, so it is opened only with
``--trust-pickle``. Targets: ``sentiment3`` (the default task: classification_labels),
``sentiment`` (regression) and ``sentiment2`` (sentiment >= 0), so a MOSEI study gets the
Acc-2 variants and weighted F1 next to accuracy, UAR and macro-F1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmlearn.data.source import (
    SourceData,
    SplitArrays,
    input_option,
    option,
    register_source,
)
from mmlearn.data.sources._arrays import (
    class_ids,
    common_width,
    entry,
    numeric,
    same_rows,
)
from mmlearn.data.sources._files import pickled_splits, trust_pickle_option
from mmlearn.data.targets import SENTIMENT_TARGETS, sentiment_targets
from mmlearn.errors import ConfigError, DataError

TEXT_KEYS = ("text", "text_bert")
LAYOUT = "an MMSA aligned_50.pkl / unaligned_50.pkl"


@dataclass(frozen=True)
class MmsaOptions:
    path: str = input_option("MMSA pickle: Processed/aligned_50.pkl or unaligned_50.pkl")
    trust_pickle: bool = trust_pickle_option()
    text: str = option(
        "text", "text input: text (BERT features) or text_bert (token ids, mask, segment ids)"
    )

    def __post_init__(self) -> None:
        if self.text not in TEXT_KEYS:
            raise ConfigError(f"text must be one of {TEXT_KEYS}, but got text={self.text!r}.")


def _text(part: Mapping[str, Any], key: str, file: Path, split: str) -> np.ndarray:
    """(N, T, D) text features, ``text_bert`` turned from (N, 3, T) into (N, T, 3)."""
    x = numeric(entry(part, key, file, split), 3, file, f"split {split!r} {key}")
    if key == "text_bert":
        if x.shape[1] != 3:
            raise DataError(
                f"{file}: split {split!r} text_bert has shape {x.shape}, expected (N, 3, T) "
                "rows of token ids, mask and segment ids."
            )
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    return x


def _lengths(
    part: Mapping[str, Any], key: str, x: np.ndarray, file: Path, split: str
) -> tuple[np.ndarray, int]:
    """(N,) int32 lengths clipped to [1, T], their padding zeroed in ``x``; clipped count."""
    raw = np.asarray(entry(part, key, file, split))
    if raw.dtype.kind not in "biuf" or raw.shape != (len(x),):
        raise DataError(
            f"{file}: split {split!r} {key} has shape {raw.shape} ({raw.dtype}), expected "
            f"({len(x)},) like the other arrays of the split."
        )
    lengths = np.clip(raw, 1, x.shape[1]).astype(np.int32)
    x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0
    return lengths, int(np.count_nonzero(lengths != raw))


def _split(
    part: Mapping[str, Any], opts: MmsaOptions, file: Path, split: str, notes: dict[str, Any]
) -> SplitArrays:
    features = {
        "text": _text(part, opts.text, file, split),
        "audio": numeric(entry(part, "audio", file, split), 3, file, f"split {split!r} audio"),
        "vision": numeric(entry(part, "vision", file, split), 3, file, f"split {split!r} vision"),
    }
    sentiment = numeric(
        entry(part, "regression_labels", file, split),
        1,
        file,
        f"split {split!r} regression_labels",
    )
    targets = sentiment_targets(sentiment)
    sizes = {m: len(x) for m, x in features.items()} | {"regression_labels": len(sentiment)}
    if "classification_labels" in part:
        where = f"split {split!r} classification_labels"
        targets["sentiment3"] = class_ids(part["classification_labels"], file, where)
        sizes["classification_labels"] = len(targets["sentiment3"])
        if targets["sentiment3"].size and targets["sentiment3"].max() > 2:
            raise DataError(
                f"{file}: {where} go up to {targets['sentiment3'].max()}, expected "
                "0 negative, 1 neutral, 2 positive."
            )
    else:
        notes["sentiment3_from_sign"] = True
    same_rows(sizes, file, split)
    lengths = {}
    for m in ("audio", "vision"):
        if f"{m}_lengths" in part:
            x = features[m] = np.require(features[m], requirements="W")
            lengths[m], clipped = _lengths(part, f"{m}_lengths", x, file, split)
            if clipped:
                notes.setdefault("lengths_clipped", {})[f"{split}/{m}"] = clipped
    return SplitArrays(features, targets, lengths)


@register_source(
    "mmsa",
    "MMSA aligned_50.pkl / unaligned_50.pkl of CMU-MOSI or CMU-MOSEI",
    MmsaOptions,
    modalities=lambda _: ("text", "audio", "vision"),
)
def build_mmsa(opts: MmsaOptions) -> SourceData:
    """Read an MMSA pickle into the train, val and test splits (text, audio, vision).

    Raises:
        DataError: the pickle is untrusted, unreadable or not in MMSA's layout.
    """
    file, parts = pickled_splits(opts.path, opts.trust_pickle, LAYOUT)
    notes: dict[str, Any] = {"text": opts.text}
    splits = {split: _split(part, opts, file, split, notes) for split, part in parts.items()}
    common_width({s: a.features for s, a in splits.items()}, file)
    layouts = {bool(a.lengths) for a in splits.values()}
    if len(layouts) > 1:
        raise DataError(f"{file}: some splits have audio/vision lengths and others do not.")
    notes["layout"] = "unaligned" if layouts.pop() else "aligned"
    return SourceData(splits, SENTIMENT_TARGETS, "sentiment3", notes)
