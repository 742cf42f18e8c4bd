"""The MMIN / RedCore feature layout of IEMOCAP and MSP-IMPROV: one store per CV fold.

Layout (AIM3-RUC/MMIN ``data/multimodal_dataset.py``; data-formats.md §2c), under ROOT::

    A/comparE.h5             utt_id -> (T_a, 130)  acoustic ComParE LLDs, T_a varies
    A/comparE_mean_std.h5    "<fold>" -> {mean: (130,), std: (130,)}  training-fold statistics
    V/denseface.h5           utt_id -> (T_v, 342)  visual DenseFace
    L/bert_large.h5          utt_id -> (T_l, 1024) lexical BERT-large
    target/<fold>/{trn,val,tst}_label.npy     one-hot (N, C) (IEMOCAP) or ids (N,) (MSP)
    target/<fold>/{trn,val,tst}_int2name.npy  utt ids: (N, 1) bytes (IEMOCAP) or (N,) str (MSP)

IEMOCAP has folds 1-10, MSP-IMPROV 1-12; ``--fold`` picks one and the store holds that fold's
trn/val/tst as train/val/test. Labels are the argmax of one-hot rows, or the ids as given.

Acoustic normalisation (``--normalize``): ``trn`` (MMIN's ``norm_method=trn``, IEMOCAP) uses the
fold's training statistics from the stats file; ``all`` uses the statistics of every frame of
every utterance in the acoustic file (MMIN's ``comparE_raw`` treatment, MSP-IMPROV); ``utt``
standardises each utterance on its own frames; ``none`` keeps the values. A zero std counts as 1
(MMIN divides by it as it is). Only the acoustic features are normalised, as in MMIN.

A modality whose utterances all have the same number of steps is stored at that length; one
that varies is right-padded with zeros to its longest utterance, with lengths (MMIN pads each
batch to its longest utterance instead, without lengths).
"""

from __future__ import annotations

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
from mmlearn.data.sources._arrays import class_ids, numeric, right_pad, same_rows
from mmlearn.data.sources._files import existing_dir, load_npy, open_h5
from mmlearn.data.spec import TargetSpec
from mmlearn.errors import ConfigError, DataError

FILE_SPLITS = {"train": "trn", "val": "val", "test": "tst"}
"""Store split -> MMIN's file prefix."""
NORMALIZE = ("trn", "all", "utt", "none")
LAYOUT = "an MMIN feature file (utterance id -> (T, D) array)"


@dataclass(frozen=True)
class MminH5Options:
    root: str = input_option("MMIN feature folder holding A/, V/, L/ and target/")
    fold: int = option(1, "cross-validation fold: 1-10 (IEMOCAP) or 1-12 (MSP-IMPROV)")
    audio_file: str = option("A/comparE.h5", "acoustic features, relative to ROOT")
    vision_file: str = option("V/denseface.h5", "visual features, relative to ROOT")
    text_file: str = option("L/bert_large.h5", "lexical features, relative to ROOT")
    targets: str = option("target", "folder of the fold folders, relative to ROOT")
    normalize: str = option(
        "trn", "acoustic normalisation: trn (fold statistics), all, utt or none"
    )
    stats_file: str = option(
        "A/comparE_mean_std.h5", "per-fold acoustic mean/std for --normalize trn"
    )
    classes: tuple[str, ...] = option((), "class names of label ids 0, 1, ... (default: 0, 1, ...)")

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ConfigError(
                f"normalize must be one of {NORMALIZE}, but got normalize={self.normalize!r}."
            )
        if self.fold < 0:
            raise ConfigError(f"fold must be >= 0, but got fold={self.fold}.")


def _fold_dir(root: Path, opts: MminH5Options) -> Path:
    targets = existing_dir(root / opts.targets, "MMIN's target folder of fold folders")
    folder = targets / str(opts.fold)
    if not folder.is_dir():
        folds = sorted((p.name for p in targets.iterdir() if p.is_dir()), key=_numeric_first)
        raise DataError(f"{targets} has no fold {opts.fold}; its folds are {folds}.")
    return folder


def _numeric_first(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _utterances(folder: Path, split: str) -> list[str]:
    """The utterance ids of one split, decoded from bytes where stored as such."""
    file = folder / f"{FILE_SPLITS[split]}_int2name.npy"
    names = load_npy(file)
    if names.ndim == 2 and names.shape[1] == 1:
        names = names[:, 0]
    if names.ndim != 1 or names.dtype.kind not in "SU":
        raise DataError(
            f"{file} has shape {names.shape} ({names.dtype}), expected (N,) or (N, 1) "
            "utterance ids (strings or bytes)."
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


def _labels(folder: Path, split: str) -> tuple[np.ndarray, int]:
    """(N,) int64 class ids and the class count the file implies (one-hot width, or max + 1)."""
    file = folder / f"{FILE_SPLITS[split]}_label.npy"
    y = load_npy(file)
    if y.ndim == 2 and y.shape[1] > 1:
        if y.dtype.kind not in "biuf":
            raise DataError(f"{file} holds {y.dtype} values, expected one-hot rows.")
        return y.argmax(axis=1).astype(np.int64), y.shape[1]
    ids = class_ids(y, file, "the labels")
    return ids, int(ids.max()) + 1 if ids.size else 0


def _read(handle: h5py.File, file: Path, utt: str) -> np.ndarray:
    """One utterance's (T, D) or (D,) features."""
    if utt not in handle:
        raise DataError(f"{file} has no utterance {utt!r} (named in the fold's int2name files).")
    item = handle[utt]
    if not isinstance(item, h5py.Dataset):
        raise DataError(
            f"{file}: {utt!r} is a group, not an array; expected {LAYOUT}, not the aligned/ "
            "layout (feat, start, end per utterance)."
        )
    return numeric(item[()], item.ndim, file, f"utterance {utt!r}")


def _audio_stats(
    root: Path, opts: MminH5Options, handle: h5py.File, file: Path
) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) of --normalize trn or all, each (D,); None for utt and none."""
    if opts.normalize == "trn":
        stats_file = root / opts.stats_file
        with open_h5(stats_file, "MMIN's per-fold acoustic mean/std file") as stats:
            group = stats.get(str(opts.fold))
            if not isinstance(group, h5py.Group) or not {"mean", "std"} <= set(group):
                raise DataError(
                    f"{stats_file} has no group {str(opts.fold)!r} with mean and std; its keys "
                    f"are {sorted(stats)}. Use --normalize all, utt or none without it."
                )
            mean = numeric(group["mean"][()], 1, stats_file, f"{opts.fold}/mean")
            std = numeric(group["std"][()], 1, stats_file, f"{opts.fold}/std")
    elif opts.normalize == "all":
        every = np.concatenate(
            [x.reshape(-1, x.shape[-1]) for x in (_read(handle, file, u) for u in handle)]
        ).astype(np.float64)  # (all frames, D)
        mean, std = every.mean(axis=0), every.std(axis=0)
    else:
        return None
    return mean.astype(np.float32), np.where(std == 0, 1.0, std).astype(np.float32)


def _normalized(
    x: np.ndarray, opts: MminH5Options, stats: tuple[np.ndarray, np.ndarray] | None, file: Path
) -> np.ndarray:
    """One utterance's (T, D) acoustic features normalised as ``opts.normalize`` says."""
    if opts.normalize == "utt":
        std = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[-1], dtype=np.float32)
        return (x - x.mean(axis=0)) / np.where(std == 0, 1.0, std).astype(np.float32)
    if stats is None:
        return x
    mean, std = stats
    if mean.shape != x.shape[-1:] or std.shape != x.shape[-1:]:
        raise DataError(
            f"{file} has {x.shape[-1]}-d features but the acoustic statistics are "
            f"{mean.shape[0]}-d; --stats-file must belong to --audio-file."
        )
    return (x - mean) / std


def _stack(
    items: dict[str, list[np.ndarray]], file: Path, modality: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split -> (N, [T,] D) array and, when the steps vary, split -> (N,) lengths."""
    every = [x for part in items.values() for x in part]
    if len({x.shape[1:] for x in every}) > 1 or len({x.ndim for x in every}) > 1:
        shapes = sorted({str(x.shape[1:]) for x in every})
        raise DataError(
            f"{file}: {modality} features differ in feature size between utterances: "
            f"{', '.join(shapes)}."
        )
    if every[0].ndim == 1:
        return {s: np.stack(part) for s, part in items.items()}, {}
    steps = {len(x) for x in every}
    longest, dim = max(steps), every[0].shape[1]
    if len(steps) == 1:
        return {s: np.stack(part) for s, part in items.items()}, {}
    padded = {s: right_pad(part, longest, dim) for s, part in items.items()}
    return {s: x for s, (x, _) in padded.items()}, {s: n for s, (_, n) in padded.items()}


@register_source(
    "mmin_h5",
    "MMIN / RedCore IEMOCAP or MSP-IMPROV features, one CV fold",
    MminH5Options,
    modalities=lambda _: ("text", "audio", "vision"),
)
def build_mmin_h5(opts: MminH5Options) -> SourceData:
    """Read one fold of the MMIN layout into train, val and test (text, audio, vision).

    Raises:
        DataError: a file is missing, unreadable or not in MMIN's layout.
    """
    root = existing_dir(opts.root, "MMIN's feature folder (A/, V/, L/, target/)")
    folder = _fold_dir(root, opts)
    utterances, labels, widths = {}, {}, []
    for split in SPLITS:
        utterances[split] = _utterances(folder, split)
        labels[split], width = _labels(folder, split)
        same_rows(
            {"labels": len(labels[split]), "int2name": len(utterances[split])},
            folder,
            FILE_SPLITS[split],
        )
        widths.append(width)
    num_classes = max(widths)
    classes = opts.classes or tuple(str(c) for c in range(num_classes))
    if len(classes) < num_classes:
        raise DataError(
            f"{folder}: the labels have {num_classes} classes but --classes names "
            f"{len(classes)}: {list(classes)}."
        )
    features, lengths = {}, {s: {} for s in SPLITS}
    files = {"text": opts.text_file, "audio": opts.audio_file, "vision": opts.vision_file}
    for modality, name in files.items():
        file = root / name
        with open_h5(file, LAYOUT) as handle:
            stats = _audio_stats(root, opts, handle, file) if modality == "audio" else None
            items = {
                s: [
                    _normalized(_read(handle, file, u), opts, stats, file)
                    if modality == "audio"
                    else _read(handle, file, u)
                    for u in utterances[s]
                ]
                for s in SPLITS
            }
        features[modality], split_lengths = _stack(items, file, modality)
        for s, n in split_lengths.items():
            lengths[s][modality] = n
    splits = {
        s: SplitArrays({m: features[m][s] for m in files}, {"emotion": labels[s]}, lengths[s])
        for s in SPLITS
    }
    target = TargetSpec("emotion", "classification", tuple(classes))
    notes = {"fold": opts.fold, "normalize": opts.normalize}
    return SourceData(splits, (target,), "emotion", notes)
