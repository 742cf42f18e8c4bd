"""MultiBench's MIMIC-III pickle ``im.pk``: ICU time series and static admission features.

The layout (pliang279/MultiBench ``datasets/mimic/get_data.py``; data-formats.md §2d) is one
dict over all N admissions, as produced by the MIMIC-III benchmark of Purushotham et al.
("Benchmarking deep learning models on large healthcare datasets", J. Biomed. Inform. 2018):

* ``ep_tdata`` (N, T, D) float: hourly time series of the first T = 24 hours (the MultiBench
  paper counts D = 12 measurements; other exports of the benchmark hold 15; shapes are read
  from the array);
* ``adm_features_all`` (N, S) float: static admission features (S = 5: age, AIDS,
  hematologic malignancy, metastatic cancer, admission type);
* ``adm_labels_all`` (N, 6): mortality labels, columns in-hospital, 1-day, 2-day, 3-day,
  30-day and 1-year (the preprocessing notebook's ``ADM_LABELS``); a value > 0 is a death;
* ``y_icd9`` (N, 20): the 20 ICD-9 diagnosis groups, > 0 where present.

Targets: ``mortality`` (in-hospital mortality, binary, the default task, as RedCore reports
it) and ``icd9_<k>`` (group k present, binary) for every column k of ``y_icd9``. The split is
MultiBench's: the admissions shuffled by Python's ``random`` with seed 10, the first tenth for
validation, the second for test, the rest for training. NaN and inf become 0, as in MultiBench;
standardisation uses the train split (MultiBench uses all admissions). The file is a pickle,
so it is opened only with ``--trust-pickle``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmlearn.data.source import (
    SPLITS,
    SourceData,
    SplitArrays,
    input_option,
    option,
    register_source,
)
from mmlearn.data.sources._arrays import numeric
from mmlearn.data.sources._files import load_pickle, trust_pickle_option
from mmlearn.data.spec import TargetSpec
from mmlearn.errors import DataError

LAYOUT = "MultiBench's MIMIC-III im.pk"
KEYS = {"ep_tdata": 3, "adm_features_all": 2, "adm_labels_all": 2, "y_icd9": 2}
"""Every key the file must hold, and the rank of its array."""
OUTCOMES = ("survived", "died")


@dataclass(frozen=True)
class MimicOptions:
    path: str = input_option("MultiBench's im.pk (MIMIC-III time series, static features)")
    trust_pickle: bool = trust_pickle_option()
    seed: int = option(10, "seed of Python's random.shuffle of the admissions (MultiBench: 10)")
    standardize: bool = option(True, "standardise both modalities with train-split statistics")


def read_arrays(data: Any, file: Path) -> dict[str, np.ndarray]:
    """The four arrays of ``im.pk``, checked; every problem names the key that is wrong.

    Raises:
        DataError: not a dict, a key missing, not numeric, of another rank or row count.
    """
    if not isinstance(data, Mapping):
        raise DataError(
            f"{file} holds a {type(data).__name__}, expected {LAYOUT}: a dict with keys "
            f"{list(KEYS)}."
        )
    arrays = {}
    for key, ndim in KEYS.items():
        if key not in data:
            raise DataError(f"{file} has no key {key!r} of {LAYOUT}; it has {sorted(data)}.")
        arrays[key] = numeric(data[key], ndim, file, f"key {key!r}")
    n = len(arrays["ep_tdata"])
    for key, x in arrays.items():
        if len(x) != n:
            raise DataError(
                f"{file}: key {key!r} has {len(x)} rows but 'ep_tdata' has {n}; every key "
                "needs one row per admission."
            )
    if n < 10:
        raise DataError(f"{file} holds {n} admissions; the 10 % splits need at least 10.")
    if arrays["adm_labels_all"].shape[1] < 1:
        raise DataError(f"{file}: key 'adm_labels_all' has no column (in-hospital mortality).")
    return arrays


def multibench_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """MultiBench's split: ``random.seed(seed)``, shuffle, then valid / test / train tenths.

    Shuffling the indices gives the permutation MultiBench applies to its sample list, since
    ``random.shuffle`` depends only on the length.
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    index = np.array(order)
    parts = {"val": index[: n // 10], "test": index[n // 10 : n // 5], "train": index[n // 5 :]}
    return {s: parts[s] for s in SPLITS}


def _standardised(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``x`` standardised per feature (the last axis) with the train rows' statistics."""
    fit = x[train].reshape(-1, x.shape[-1])
    std = fit.std(axis=0)
    return ((x - fit.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


@register_source(
    "multibench_mimic",
    "MultiBench im.pk of MIMIC-III: time series + static, mortality and ICD-9 targets",
    MimicOptions,
    modalities=lambda _: ("timeseries", "static"),
)
def build_multibench_mimic(opts: MimicOptions) -> SourceData:
    """Read ``im.pk`` into MultiBench's train, val and test splits (timeseries, static).

    Raises:
        DataError: the pickle is untrusted, unreadable or not in MultiBench's layout.
    """
    file = Path(opts.path).expanduser()
    arrays = read_arrays(load_pickle(file, opts.trust_pickle, LAYOUT), file)
    features = {"timeseries": arrays["ep_tdata"], "static": arrays["adm_features_all"]}
    replaced = {}
    for name, x in features.items():
        bad = ~np.isfinite(x)
        replaced[name] = int(bad.sum())
        features[name] = np.where(bad, 0.0, x).astype(np.float32)
    index = multibench_split(len(features["static"]), opts.seed)
    if opts.standardize:
        features = {m: _standardised(x, index["train"]) for m, x in features.items()}
    targets = {"mortality": (arrays["adm_labels_all"][:, 0] > 0).astype(np.int64)}
    for k in range(arrays["y_icd9"].shape[1]):
        targets[f"icd9_{k}"] = (arrays["y_icd9"][:, k] > 0).astype(np.int64)
    splits = {
        split: SplitArrays(
            features={m: np.ascontiguousarray(x[idx]) for m, x in features.items()},
            targets={t: y[idx] for t, y in targets.items()},
        )
        for split, idx in index.items()
    }
    specs = tuple(TargetSpec(t, "classification", OUTCOMES) for t in targets)
    notes = {"non_finite_replaced_by_zero": {m: n for m, n in replaced.items() if n}}
    return SourceData(splits, specs, "mortality", notes)
