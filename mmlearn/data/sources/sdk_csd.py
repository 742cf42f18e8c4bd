"""CMU Multimodal SDK computational sequences (``.csd``) of CMU-MOSEI or CMU-MOSI.

A ``.csd`` file is HDF5 with one root group named after the sequence (A2Zadeh/CMU-MultimodalSDK
``computational_sequence/file_ops.py``; data-formats.md §2b)::

    /<root>/data/<video_id>/features    (n, D) numbers
    /<root>/data/<video_id>/intervals   (n, 2) start and end in seconds
    /<root>/metadata/...                (not read)

The labels sequence (``CMU_MOSEI_Labels.csd``) has one row per segment: its interval and 7
values, sentiment in [-3, 3] then happy, sad, anger, surprise, disgust, fear in [0, 3] (MOSI's
opinion labels have the sentiment only). Segments are the label rows, as the SDK's
``align(labels)`` makes them: a segment takes the rows of a feature sequence whose intervals
overlap it by more than the SDK's epsilon (1e-3 s), in order of start time; segments shorter
than epsilon are skipped, and a segment that some modality has no rows for, or whose video a
modality lacks, is dropped (the SDK's ``unify``); both counts are in the manifest's notes.

``--mode average`` stores each modality's rows averaged over the segment, (N, D), the SDK's
usual ``avg`` collapse (unweighted by interval length). ``--mode sequence`` keeps them as
sequences of the last ``--seq-len`` rows, as ``get_tensors(seq_len)`` does. The SDK left-pads a
shorter sequence with zeros (its default ``direction=False``); the store right-pads instead, with
each segment's length, so the same rows are kept but they start at step 0.

Splits follow the standard folds by video id (2249 / 300 / 678 MOSEI videos), read from an
installed SDK (``--folds CMU_MOSEI``, also ``CMU_MOSI`` or ``POM``) or a file, ``.py`` in the
SDK's ``standard_{train,valid,test}_fold = [...]`` form (read, never run) or ``.json`` with keys
train, valid and test. Segments of videos outside the folds are left out. COVAREP's ``-inf``
values are set to 0 when read, before averaging (counted in the notes).

Targets: ``sentiment3`` (the default task: sign, negative / neutral / positive),
``sentiment`` (regression), ``sentiment2`` (sentiment >= 0) and, with 7 label columns, one
regression target per emotion.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mmlearn.data.source import (
    SPLITS,
    SourceData,
    SplitArrays,
    input_option,
    option,
    register_source,
)
from mmlearn.data.sources._arrays import SOURCE_SPLITS, numeric, right_pad
from mmlearn.data.sources._files import existing_dir, existing_file, open_h5
from mmlearn.data.spec import TargetSpec
from mmlearn.data.targets import SENTIMENT_TARGETS, sentiment_targets
from mmlearn.errors import ConfigError, DataError

EPSILON = 1e-3  # seconds; the SDK's ``epsilon = 10e-4``
EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
MODES = ("average", "sequence")
SDK_INSTALL = "pip install --no-deps cmu-multimodal-sdk==0.0.6"
LAYOUT = "a CMU SDK computational sequence (.csd)"


@dataclass(frozen=True)
class SdkCsdOptions:
    folder: str = input_option("folder of the .csd files")
    text: str = option("CMU_MOSEI_TimestampedWordVectors.csd", "text sequence, in FOLDER")
    audio: str = option("CMU_MOSEI_COVAREP.csd", "audio sequence, in FOLDER")
    vision: str = option("CMU_MOSEI_VisualFacet42.csd", "vision sequence, in FOLDER")
    labels: str = option("CMU_MOSEI_Labels.csd", "labels sequence (segments), in FOLDER")
    folds: str = option(
        "CMU_MOSEI", "standard folds: CMU_MOSEI, CMU_MOSI or POM of an installed SDK, or a file"
    )
    mode: str = option("average", "average: (D,) per segment; sequence: the last --seq-len rows")
    seq_len: int = option(50, "rows kept per segment with --mode sequence")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, but got mode={self.mode!r}.")
        if self.seq_len < 1:
            raise ConfigError(f"seq_len must be >= 1, but got seq_len={self.seq_len}.")


# ---------------------------------------------------------------------------------------------
# Folds


def _sdk_folds_file(name: str) -> Path:
    """The SDK's ``<name>/<name>_std_folds.py``, found without importing the SDK."""
    spec = importlib.util.find_spec("mmsdk")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the standard folds {name!r} ship with the CMU Multimodal SDK, which is not "
            f"installed; run `{SDK_INSTALL}` or pass --folds FILE (.py or .json)."
        )
    package = Path(spec.submodule_search_locations[0])
    file = package / "mmdatasdk" / "dataset" / "standard_datasets" / name
    file = file / f"{name.lower()}_std_folds.py"
    if not file.is_file():
        raise DataError(f"the installed CMU SDK has no folds {name!r} ({file} is missing).")
    return file


def _read_folds(folds: str) -> dict[str, str]:
    """Video id -> store split, from a standard fold name or a .py / .json fold file."""
    file = Path(folds).expanduser()
    if file.suffix not in (".py", ".json"):
        file = _sdk_folds_file(folds)
    existing_file(file, "a folds file (.py or .json)")
    try:
        if file.suffix == ".json":
            raw = json.loads(file.read_text())
            lists = {s: raw[key] for s, key in SOURCE_SPLITS.items()}
        else:
            values = {
                node.targets[0].id: node.value
                for node in ast.parse(file.read_text()).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            }
            lists = {
                s: ast.literal_eval(values[f"standard_{key}_fold"])
                for s, key in SOURCE_SPLITS.items()
            }
    except (KeyError, TypeError, ValueError, SyntaxError) as e:
        raise DataError(
            f"{file} is not a folds file ({type(e).__name__}: {e}); expected lists of video "
            "ids named train, valid and test (.json) or standard_train_fold, "
            "standard_valid_fold and standard_test_fold (.py)."
        ) from e
    split_of: dict[str, str] = {}
    for split, videos in lists.items():
        for video in videos:
            if split_of.setdefault(str(video), split) != split:
                raise DataError(f"{file} puts video {video!r} in two folds.")
    return split_of


# ---------------------------------------------------------------------------------------------
# Computational sequences


def _data(handle: h5py.File, file: Path) -> h5py.Group:
    """The ``/<root>/data`` group of an opened .csd file."""
    roots = list(handle)
    data = handle[roots[0]].get("data") if len(roots) == 1 else None
    if not isinstance(data, h5py.Group):
        raise DataError(
            f"{file} is not {LAYOUT}: expected one root group holding a 'data' group, but "
            f"found root keys {roots}."
        )
    return data


def _video(data: h5py.Group, video: str, file: Path, neg_inf: Counter, key: str) -> tuple:
    """(intervals (n, 2) float64, features (n, D) float32) of one video, sorted by start."""
    group = data[video]
    if not isinstance(group, h5py.Group) or not {"features", "intervals"} <= set(group):
        raise DataError(f"{file}: video {video!r} lacks 'features' and 'intervals'.")
    raw = group["features"]
    if raw.dtype.kind in "SOU":
        raise DataError(
            f"{file} holds text ({raw.dtype}), not numbers; use a numeric sequence such as "
            "the word vectors (TimestampedWordVectors), not the words."
        )
    intervals = np.asarray(group["intervals"][()], dtype=np.float64)
    features = raw[()]
    if features.ndim == 1:
        features = features[:, None]
    features = numeric(features, 2, file, f"video {video!r} features")
    if intervals.ndim != 2 or intervals.shape[1] != 2 or len(intervals) != len(features):
        raise DataError(
            f"{file}: video {video!r} has intervals {intervals.shape} for features "
            f"{features.shape}; expected ({len(features)}, 2)."
        )
    bad = np.isneginf(features)
    if bad.any():
        features = np.where(bad, np.float32(0), features)
        neg_inf[key] += int(bad.sum())
    order = np.argsort(intervals[:, 0], kind="stable")
    return intervals[order], features[order]


def _overlapping(intervals: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Rows whose interval overlaps ``segment`` by more than EPSILON (the SDK's intersection)."""
    overlap = np.minimum(intervals[:, 1], segment[1]) - np.maximum(intervals[:, 0], segment[0])
    return np.flatnonzero(overlap > EPSILON)


@dataclass
class _Collected:
    """One split's segments as they are read."""

    rows: dict[str, list[np.ndarray]]
    labels: list[np.ndarray]


def _collect(opts: SdkCsdOptions, folder: Path, split_of: dict[str, str]) -> tuple[dict, dict]:
    """Split -> collected segments, and the notes (dropped and replaced counts)."""
    files = {m: folder / getattr(opts, m) for m in ("text", "audio", "vision")}
    label_file = folder / opts.labels
    out = {s: _Collected({m: [] for m in files}, []) for s in SPLITS}
    neg_inf: Counter = Counter()
    dropped: Counter = Counter()
    width = 0  # label values per segment, the same in every video
    with contextlib.ExitStack() as stack:
        data = {m: _data(stack.enter_context(open_h5(f, LAYOUT)), f) for m, f in files.items()}
        labels = _data(stack.enter_context(open_h5(label_file, LAYOUT)), label_file)
        for video in labels:
            split = split_of.get(video)
            segments, values = _video(labels, video, label_file, neg_inf, "labels")
            width = width or values.shape[1]
            if values.shape[1] not in (1, 1 + len(EMOTIONS)) or values.shape[1] != width:
                raise DataError(
                    f"{label_file}: video {video!r} has {values.shape[1]} label values per "
                    f"segment, expected 1 (sentiment) or 7 (sentiment and {', '.join(EMOTIONS)})"
                    " in every video."
                )
            if split is None:
                dropped["not in the folds"] += len(segments)
                continue
            lacking = [m for m in files if video not in data[m]]
            if lacking:
                dropped[f"video missing from {lacking[0]}"] += len(segments)
                continue
            sequences = {m: _video(data[m], video, files[m], neg_inf, m) for m in files}
            for segment, label in zip(segments, values, strict=True):
                if segment[1] - segment[0] < EPSILON:
                    dropped["shorter than epsilon"] += 1
                    continue
                picked = {m: f[_overlapping(iv, segment)] for m, (iv, f) in sequences.items()}
                empty = [m for m, rows in picked.items() if not len(rows)]
                if empty:
                    dropped[f"no {empty[0]} rows"] += 1
                    continue
                for m, rows in picked.items():
                    out[split].rows[m].append(rows)
                out[split].labels.append(label)
    notes = {"mode": opts.mode, "segments_dropped": dict(dropped)}
    if neg_inf:
        notes["csd_neg_inf_replaced_by_zero"] = dict(neg_inf)
    return out, notes


def _split(collected: _Collected, opts: SdkCsdOptions, label_file: Path, split: str) -> SplitArrays:
    if not collected.labels:
        raise DataError(
            f"{label_file}: split {split!r} has no segment with features in every modality; "
            "check that the files and --folds belong to the same data set."
        )
    values = np.stack(collected.labels)  # (N, 1 or 7)
    targets = sentiment_targets(values[:, 0])
    if values.shape[1] > 1:
        targets |= {e: values[:, 1 + i] for i, e in enumerate(EMOTIONS)}
    features, lengths = {}, {}
    for m, rows in collected.rows.items():
        dims = {r.shape[1] for r in rows}
        if len(dims) > 1:
            raise DataError(f"{opts.folder}: {m} features differ in size: {sorted(dims)}.")
        if opts.mode == "average":
            features[m] = np.stack([r.mean(axis=0) for r in rows]).astype(np.float32)
        else:
            features[m], lengths[m] = right_pad(rows, opts.seq_len, dims.pop())
    return SplitArrays(features, targets, lengths)


@register_source(
    "sdk_csd",
    "CMU Multimodal SDK .csd sequences of CMU-MOSEI or CMU-MOSI",
    SdkCsdOptions,
    modalities=lambda _: ("text", "audio", "vision"),
)
def build_sdk_csd(opts: SdkCsdOptions) -> SourceData:
    """Segment the .csd sequences on the label intervals into the standard folds.

    Raises:
        DataError: a file is missing, unreadable or not a computational sequence, or a split
            ends up empty.
    """
    folder = existing_dir(opts.folder, "a folder of CMU SDK .csd files")
    collected, notes = _collect(opts, folder, _read_folds(opts.folds))
    label_file = folder / opts.labels
    splits = {s: _split(collected[s], opts, label_file, s) for s in SPLITS}
    emotions = tuple(TargetSpec(e, "regression") for e in EMOTIONS if e in splits["train"].targets)
    return SourceData(splits, SENTIMENT_TARGETS + emotions, "sentiment3", notes)
