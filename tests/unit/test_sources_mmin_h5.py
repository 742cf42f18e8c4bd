"""The mmin_h5 source: MMIN's IEMOCAP / MSP-IMPROV h5 features and fold folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import FeatureStore, open_store
from mmlearn.errors import DataError

UTTS = [f"Ses0{1 + i // 4}{'FM'[i % 2]}_impro0{i}_F00{i}" for i in range(7)]
AUDIO_STEPS = [3, 1, 4, 2, 5, 2, 3]  # acoustic frames vary per utterance
FOLDS = {  # fold -> split file prefix -> utterance indices
    1: {"trn": [0, 1, 2], "val": [3, 4], "tst": [5, 6]},
    2: {"trn": [3, 4, 5], "val": [6, 0], "tst": [1, 2]},
}
CLASSES = [0, 1, 2, 3, 1, 0, 2]  # per utterance


def audio(i: int) -> np.ndarray:
    """(T_i, 2) frames of utterance i: row t is (i + t, 10 * i)."""
    t = np.arange(AUDIO_STEPS[i], dtype=np.float32)
    return np.stack([i + t, np.full_like(t, 10.0 * i)], axis=1)


def write_h5(file: Path, items: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(file, "w") as f:
        for key, value in items.items():
            if isinstance(value, dict):
                group = f.create_group(key)
                for name, array in value.items():
                    group.create_dataset(name, data=array)
            else:
                f.create_dataset(key, data=value)


def write_mmin(root: Path, msp: bool = False) -> Path:
    """MMIN's layout; IEMOCAP style (one-hot labels, (N, 1) byte names) unless ``msp``."""
    write_h5(root / "A" / "comparE.h5", {u: audio(i) for i, u in enumerate(UTTS)})
    write_h5(
        root / "A" / "comparE_mean_std.h5",
        {
            "1": {"mean": np.array([1.0, 2.0]), "std": np.array([2.0, 0.0])},
            "2": {"mean": np.zeros(2), "std": np.ones(2)},
        },
    )
    faces = {u: np.full((2, 3), i, dtype=np.float32) for i, u in enumerate(UTTS)}
    faces[UTTS[6]] = np.zeros((1, 3), dtype=np.float32)  # faceless: MMIN writes zeros((1, D))
    write_h5(root / "V" / "denseface.h5", faces)
    write_h5(
        root / "L" / "bert_large.h5",
        {u: np.full((3, 2), -i, dtype=np.float32) for i, u in enumerate(UTTS)},
    )
    for fold, splits in FOLDS.items():
        folder = root / "target" / str(fold)
        folder.mkdir(parents=True)
        for prefix, index in splits.items():
            labels = np.array([CLASSES[i] for i in index])
            names = np.array([UTTS[i] for i in index])
            if not msp:
                labels = np.eye(4)[labels]  # one-hot
                names = names.astype(bytes)[:, None]  # (N, 1) byte strings
            np.save(folder / f"{prefix}_label.npy", labels)
            np.save(folder / f"{prefix}_int2name.npy", names)
    return root


def prepare(root: Path, out: Path, **options: Any) -> FeatureStore:
    return open_store(prepare_store("mmin_h5", {"root": str(root), **options}, out))


def test_iemocap_fold_with_training_statistics(tmp_path: Path) -> None:
    store = prepare(write_mmin(tmp_path / "feat"), tmp_path / "s", fold=1)
    train = store.split("train")
    assert train.targets["emotion"].tolist() == [0, 1, 2]
    assert store.split("test").targets["emotion"].tolist() == [0, 2]
    assert train.lengths["audio"].tolist() == [3, 1, 4]
    x = train.features["audio"]  # (3, 5, 2): longest utterance of the fold has 5 frames
    assert x.shape == (3, 5, 2)
    # utterance 2, frame 1 is (3, 20): ((3 - 1) / 2, (20 - 2) / 1), the zero std counting as 1
    assert x[2, 1].tolist() == [1.0, 18.0]
    assert np.all(x[1, 1:] == 0) and np.all(x[0, 3:] == 0)
    vision = store.split("test").features["vision"]  # utterance 6 is faceless (1 step)
    assert store.split("test").lengths["vision"].tolist() == [2, 1]
    assert vision[0].tolist() == [[5.0] * 3, [5.0] * 3] and vision[1].tolist() == [[0.0] * 3] * 2
    text = store.split("val").features["text"]
    assert text.shape == (2, 3, 2) and text[1, 0].tolist() == [-4.0, -4.0]
    spec = store.spec()
    assert spec.names == ("text", "audio", "vision") and not spec["text"].variable_length
    assert spec.target.class_names == ("0", "1", "2", "3") and store.task == "emotion"
    assert store.manifest["notes"] == {"fold": 1, "normalize": "trn"}


def test_each_fold_is_its_own_split_of_the_utterances(tmp_path: Path) -> None:
    root = write_mmin(tmp_path / "feat")
    store = prepare(root, tmp_path / "s", fold=2, classes=("neu", "hap", "ang", "sad"))
    assert store.split("val").targets["emotion"].tolist() == [2, 0]
    assert store.split("train").features["audio"][0, 0].tolist() == [3.0, 30.0]  # mean 0, std 1
    assert store.spec().target.class_names == ("neu", "hap", "ang", "sad")
    with pytest.raises(DataError, match=r"target has no fold 3; its folds are \['1', '2'\]"):
        prepare(root, tmp_path / "t", fold=3)


def test_msp_layout_integer_labels_and_whole_set_statistics(tmp_path: Path) -> None:
    root = write_mmin(tmp_path / "feat", msp=True)
    store = prepare(root, tmp_path / "s", fold=1, normalize="all")
    every = np.concatenate([audio(i) for i in range(7)]).astype(np.float64)
    mean, std = every.mean(axis=0), every.std(axis=0)
    train = store.split("train")
    assert train.targets["emotion"].tolist() == [0, 1, 2]
    expected = ((audio(2) - mean) / std).astype(np.float32)
    assert np.allclose(train.features["audio"][2, :4], expected, atol=1e-6)
    utt = prepare(root, tmp_path / "u", fold=1, normalize="utt").split("train").features["audio"]
    assert utt[2, :4, 0].tolist() == pytest.approx(
        (np.arange(4) - 1.5) / np.std(np.arange(4), ddof=1)
    )
    assert utt[2, :4, 1].tolist() == [0.0] * 4  # a constant column: zero std counts as 1
    raw = prepare(root, tmp_path / "n", fold=1, normalize="none").split("val").features["audio"]
    assert np.array_equal(raw[1, :5], audio(4))


def _save(path: str, array: Any):
    return lambda root: np.save(root / path, array)


def _h5(path: str, items: dict[str, Any]):
    return lambda root: write_h5(root / path, items)


MALFORMED = {
    "missing-utterance": (
        _h5("V/denseface.h5", {u: np.zeros((2, 3)) for u in UTTS[1:]}),
        rf"denseface\.h5 has no utterance '{UTTS[0]}' \(named in the fold's int2name files\)",
    ),
    "truncated": (
        lambda root: (root / "L" / "bert_large.h5").write_bytes(b"\x89HDF\r\n\x1a\n\0\0"),
        r"bert_large\.h5 is not a readable HDF5 file .*truncated",
    ),
    "mismatched": (
        _save("target/1/val_label.npy", np.eye(4)[[1]]),
        r"target/1: split 'val' has mismatched sample counts \(labels 1, int2name 2\)",
    ),
    "empty": (
        lambda root: [
            np.save(root / "target/1/tst_label.npy", np.zeros((0, 4))),
            np.save(root / "target/1/tst_int2name.npy", np.zeros((0, 1), dtype="S4")),
        ],
        r"target/1: split 'tst' is empty",
    ),
    "objects": (
        _save("target/1/trn_int2name.npy", np.array([["a"], ["b"], ["c"]], dtype=object)),
        r"trn_int2name\.npy holds Python objects, which only unpickling can read",
    ),
    "truncated-npy": (
        lambda root: (root / "target/1/trn_label.npy").write_bytes(b"\x93NUMPY\x01\x00"),
        r"trn_label\.npy is not a readable \.npy array",
    ),
    "group": (
        _h5("L/bert_large.h5", {u: {"feat": np.zeros((3, 2))} for u in UTTS}),
        r"bert_large\.h5: '.*' is a group, not an array; expected an MMIN feature file",
    ),
    "no-stats": (
        _h5("A/comparE_mean_std.h5", {"2": {"mean": np.zeros(2), "std": np.ones(2)}}),
        r"comparE_mean_std\.h5 has no group '1' with mean and std; its keys are \['2'\]",
    ),
    "stats-size": (
        _h5("A/comparE_mean_std.h5", {"1": {"mean": np.zeros(3), "std": np.ones(3)}}),
        r"comparE\.h5 has 2-d features but the acoustic statistics are 3-d",
    ),
    "feature-size": (
        _h5("L/bert_large.h5", {u: np.zeros((3, 2 + (u == UTTS[4]))) for u in UTTS}),
        r"bert_large\.h5: text features differ in feature size between utterances",
    ),
}


@pytest.mark.parametrize(("edit", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_name_file_and_problem(tmp_path: Path, edit, message: str) -> None:
    root = write_mmin(tmp_path / "feat")
    edit(root)
    with pytest.raises(DataError, match=message) as e:
        prepare(root, tmp_path / "out" / "fold1", fold=1)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_too_few_class_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"the labels have 4 classes but --classes names 2"):
        prepare(write_mmin(tmp_path / "feat"), tmp_path / "s", classes=("a", "b"))
