"""Writers of published benchmark file layouts, from source data, for tests and benchmarks."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mmlearn.data.source import SourceData

MMSA_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def mmsa_layout(data: SourceData) -> dict[str, dict[str, Any]]:
    """MMSA's ``aligned_50.pkl`` / ``unaligned_50.pkl`` dict of MOSEI-shaped source data.

    ``data`` has modalities text, audio, vision and targets sentiment / sentiment3 (the
    synthetic source's); audio and vision lengths, when present, become ``*_lengths``. Every
    key MMSA writes is there: ``raw_text`` and ``id`` strings, ``text_bert`` ids (N, 3, T),
    ``annotations``, and float64 labels as MMSA stores them.
    """
    out = {}
    for split, key in MMSA_SPLITS.items():
        arrays = data.splits[split]
        n, t = arrays.features["text"].shape[:2]
        ids = (np.arange(n * t).reshape(n, t) % 30000 + 101).astype(np.int64)
        part: dict[str, Any] = {
            "raw_text": np.array([f"segment {i} of {split}" for i in range(n)], dtype=object),
            "id": np.array([f"video{i // 3}$_${i % 3}" for i in range(n)], dtype=object),
            "text": arrays.features["text"],
            "text_bert": np.stack([ids, np.ones_like(ids), np.zeros_like(ids)], axis=1),
            "audio": arrays.features["audio"],
            "vision": arrays.features["vision"],
            "annotations": np.array(["Positive"] * n, dtype=object),
            "classification_labels": arrays.targets["sentiment3"].astype(np.float64),
            "regression_labels": arrays.targets["sentiment"].astype(np.float64),
        }
        for m, lengths in arrays.lengths.items():
            part[f"{m}_lengths"] = lengths.tolist()
        out[key] = part
    return out


def write_pickle(obj: Any, path: Path) -> Path:
    """Pickle ``obj`` to ``path`` (protocol 4, as MMSA's files are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


def mimic_layout(n: int, seed: int = 0, steps: int = 24, series: int = 12) -> dict[str, Any]:
    """MultiBench's MIMIC-III ``im.pk`` dict of ``n`` made-up admissions.

    ``ep_tdata`` (n, steps, series) float64 with one NaN and one inf, ``adm_features_all``
    (n, 5), ``adm_labels_all`` (n, 6) 0/1 deaths (column 0 in-hospital, 1 in 5 died) and
    ``y_icd9`` (n, 20) 0/1, as the benchmark's preprocessing writes them.
    """
    rng = np.random.default_rng(seed)
    series_data = rng.normal(size=(n, steps, series))
    series_data[0, 0, 0] = np.nan
    series_data[1, 2, 3] = np.inf
    return {
        "ep_tdata": series_data,
        "adm_features_all": rng.normal(size=(n, 5)),
        "adm_labels_all": (np.arange(n)[:, None] % 5 == 0) * np.ones((1, 6)),
        "y_icd9": rng.integers(0, 2, size=(n, 20)).astype(np.float64),
    }
