"""Checking and reshaping the arrays found in users' files, every problem naming the file.

Shared by the loaders of published benchmark layouts: a pickled ``{split: {key: array}}``
mapping, numeric feature arrays of a fixed rank, equal sample counts across one split's
modalities and labels, and conversions between the padding conventions (the store keeps
sequences right-padded with zeros, with their lengths when they vary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmlearn.data.source import SPLITS
from mmlearn.errors import DataError

SOURCE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
"""Store split -> its name in MMSA and MulT pickles and in the CMU SDK's folds."""


def pickle_splits(data: Any, file: Path) -> dict[str, Mapping[str, Any]]:
    """Store split name -> the split's mapping of a ``{"train"|"valid"|"test": {...}}`` pickle.

    Raises:
        DataError: ``data`` is not such a mapping.
    """
    if not isinstance(data, Mapping):
        raise DataError(
            f"{file} holds a {type(data).__name__}, expected a dict with keys "
            f"{list(SOURCE_SPLITS.values())}."
        )
    out = {}
    for split, key in SOURCE_SPLITS.items():
        part = data.get(key)
        if not isinstance(part, Mapping):
            problem = "has no" if part is None else f"has a {type(part).__name__} as its"
            raise DataError(
                f"{file} {problem} split {key!r} (a dict of arrays); its keys are {list(data)}."
            )
        out[split] = part
    return out


def entry(part: Mapping[str, Any], key: str, file: Path, split: str) -> Any:
    """``part[key]``, or a DataError naming the file, split and the keys that are there."""
    if key not in part:
        raise DataError(f"{file}: split {split!r} has no key {key!r}; it has {sorted(part)}.")
    return part[key]


def numeric(value: Any, ndim: int, file: Path, where: str) -> np.ndarray:
    """``value`` as a float32 array of rank ``ndim`` (no copy when it already is one).

    Raises:
        DataError: not numeric, or of another rank.
    """
    x = np.asarray(value)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{file}: {where} holds {x.dtype} values, expected numbers.")
    if x.ndim != ndim:
        raise DataError(
            f"{file}: {where} has shape {x.shape}, expected {ndim} dimensions "
            f"({'(N, T, D)' if ndim == 3 else '(N, D)' if ndim == 2 else '(N,)'})."
        )
    return x.astype(np.float32, copy=False)


def class_ids(value: Any, file: Path, where: str) -> np.ndarray:
    """(N,) int64 class ids from integer or integral float labels of shape (N,) or (N, 1).

    Raises:
        DataError: non-integral or negative labels, or another shape.
    """
    y = np.asarray(value)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "biuf" or y.ndim != 1:
        raise DataError(f"{file}: {where} has shape {y.shape} ({y.dtype}), expected (N,) ids.")
    if y.size and (not np.array_equal(y, np.round(y)) or y.min() < 0):
        raise DataError(f"{file}: {where} holds values that are not class ids (0, 1, ...).")
    return y.astype(np.int64)


def same_rows(sizes: Mapping[str, int], file: Path, split: str) -> int:
    """The common sample count of one split's arrays.

    Raises:
        DataError: the split is empty, or its arrays disagree on the number of samples.
    """
    counts = set(sizes.values())
    if len(counts) > 1:
        listed = ", ".join(f"{k} {n}" for k, n in sizes.items())
        raise DataError(
            f"{file}: split {split!r} has mismatched sample counts ({listed}); every modality "
            "and label needs one row per sample."
        )
    n = counts.pop()
    if n == 0:
        raise DataError(f"{file}: split {split!r} is empty; every split needs samples.")
    return n


def common_width(arrays: Mapping[str, Mapping[str, np.ndarray]], file: Path) -> None:
    """Check that every split gives each modality the same per-sample shape.

    Args:
        arrays: split -> modality -> (N, ...) array.
        file: named in the error.

    Raises:
        DataError: a modality's (T, D) or (D,) differs between splits.
    """
    first = arrays[SPLITS[0]]
    for split, part in arrays.items():
        for m, x in part.items():
            if x.shape[1:] != first[m].shape[1:]:
                raise DataError(
                    f"{file}: {m} has per-sample shape {x.shape[1:]} in split {split!r} but "
                    f"{first[m].shape[1:]} in {SPLITS[0]!r}; the splits must agree."
                )


def right_pad(
    sequences: Sequence[np.ndarray], max_len: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stack (T_i, D) sequences right-padded with zeros, keeping the last ``max_len`` rows.

    Args:
        sequences: N arrays of shape (T_i, D); an empty one (T_i = 0) becomes one zero row.
        max_len: the padded length T.
        dim: D.

    Returns:
        (N, T, D) float32 and (N,) int32 lengths in [1, T].
    """
    out = np.zeros((len(sequences), max_len, dim), dtype=np.float32)
    lengths = np.ones(len(sequences), dtype=np.int32)
    for i, seq in enumerate(sequences):
        kept = seq[-max_len:] if len(seq) else seq
        out[i, : len(kept)] = kept
        lengths[i] = max(1, len(kept))
    return out, lengths


def left_to_right(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded sequences (the CMU SDK's ``get_tensors``) moved to the right-padded form.

    A sample's valid steps start at its first step with a non-zero value; an all-zero sample
    keeps one zero step.

    Args:
        x: (N, T, D) left-padded with zeros.

    Returns:
        (N, T, D) float32 with the same steps at the start, zeros after; (N,) int32 lengths.
    """
    n, t, _ = x.shape
    nonzero = np.any(x != 0, axis=2)  # (N, T)
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), t - 1)  # (N,)
    lengths = (t - first).astype(np.int32)
    steps = np.arange(t)
    source = np.minimum(steps[None, :] + first[:, None], t - 1)  # (N, T)
    out = np.take_along_axis(x, source[:, :, None], axis=1).astype(np.float32, copy=False)
    out[steps[None, :] >= lengths[:, None]] = 0.0
    return out, lengths
