"""The sdk_csd source: CMU SDK .csd sequences segmented on the label intervals, by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import FeatureStore, open_store
from mmlearn.errors import DataError

Video = tuple[list[list[float]], list[list[Any]]]  # (intervals (n, 2), features (n, D))

# Videos A (train), B (val), C (test), E (train, no vision) and D (in no fold).
LABELS: dict[str, Video] = {
    "vA": (
        [[0, 2], [2, 4], [5, 5.0005]],  # the last is shorter than epsilon: skipped
        [[1.0, 0.5, 0, 0, 0, 0, 0], [-2 / 3, 0, 1, 0, 0, 0, 2], [0.0] * 7],
    ),
    "vB": ([[0, 3]], [[0.0, 0, 0, 1.5, 0, 0, 0]]),
    "vC": ([[1, 2], [2.5, 3]], [[2.0, 3, 0, 0, 0, 0, 0], [1.0] * 7]),  # 2nd: no audio rows
    "vD": ([[0, 1]], [[1.0] * 7]),
    "vE": ([[0, 1]], [[1.0] * 7]),
}
TEXT: dict[str, Video] = {  # stored out of order: sorted by start when read
    "vA": ([[2, 3], [0, 1], [3, 4], [1, 2]], [[5, 6], [1, 2], [7, 8], [3, 4]]),
    "vB": ([[0, 3]], [[1, 1]]),
    "vC": ([[1, 2], [2.5, 3]], [[2, 2], [3, 3]]),
    "vE": ([[0, 1]], [[0, 0]]),
}
AUDIO: dict[str, Video] = {  # [0.5, 1.9995] is -inf; [1.9995, 2.5] overlaps [0, 2] by < eps
    "vA": ([[0, 0.5], [0.5, 1.9995], [1.9995, 2.5], [2.5, 4]], [[1], [-np.inf], [4], [6]]),
    "vB": ([[0, 1], [1, 3]], [[2], [4]]),
    "vC": ([[1, 2]], [[1]]),
    "vE": ([[0, 1]], [[0]]),
}
VISION: dict[str, Video] = {
    "vA": ([[0, 4]], [[9]]),
    "vB": ([[0, 3]], [[5]]),
    "vC": ([[0, 3]], [[7]]),
}
FOLDS = {"train": ["vA", "vE"], "valid": ["vB"], "test": ["vC"]}


def write_csd(file: Path, root: str, videos: dict[str, Video]) -> Path:
    """A computational sequence: /<root>/data/<video>/{features,intervals}, json metadata."""
    with h5py.File(file, "w") as f:
        data = f.create_group(root).create_group("data")
        for video, (intervals, features) in videos.items():
            group = data.create_group(video)
            kind = np.asarray(features).dtype.kind
            group.create_dataset(
                "features", data=np.asarray(features, None if kind == "S" else np.float32)
            )
            group.create_dataset("intervals", data=np.asarray(intervals, dtype=np.float64))
        metadata = f[root].create_group("metadata")
        for key, value in {"root name": root, "dimension names": ["x"]}.items():
            metadata.create_dataset(key, (1,), dtype=h5py.string_dtype())
            metadata[key][0] = json.dumps(value)
    return file


def write_folds_py(file: Path, folds: dict[str, list[str]]) -> Path:
    file.write_text("".join(f"standard_{k}_fold={v!r}\n" for k, v in folds.items()))
    return file


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "csd"
    data.mkdir()
    write_csd(data / "CMU_MOSEI_Labels.csd", "All Labels", LABELS)
    write_csd(data / "CMU_MOSEI_TimestampedWordVectors.csd", "glove_vectors", TEXT)
    write_csd(data / "CMU_MOSEI_COVAREP.csd", "COVAREP", AUDIO)
    write_csd(data / "CMU_MOSEI_VisualFacet42.csd", "FACET 4.2", VISION)
    return data


def prepare(folder: Path, out: Path, **options: Any) -> FeatureStore:
    return open_store(prepare_store("sdk_csd", {"folder": str(folder), **options}, out))


def test_segments_average_the_overlapping_rows(folder: Path, tmp_path: Path) -> None:
    folds = write_folds_py(tmp_path / "cmu_mosei_std_folds.py", FOLDS)
    store = prepare(folder, tmp_path / "s", folds=str(folds))
    train = store.split("train")
    assert train.features["text"].tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert train.features["audio"].tolist() == [[0.5], [5.0]]  # (1 + 0) / 2, (4 + 6) / 2
    assert train.features["vision"].tolist() == [[9.0], [9.0]]
    assert train.targets["sentiment"].tolist() == pytest.approx([1.0, -2 / 3])
    assert train.targets["sentiment3"].tolist() == [2, 0]
    assert train.targets["sentiment2"].tolist() == [1, 0]
    assert train.targets["happy"].tolist() == [0.5, 0.0]
    assert train.targets["fear"].tolist() == [0.0, 2.0]
    val, test = store.split("val"), store.split("test")
    assert val.features["audio"].tolist() == [[3.0]] and val.targets["anger"].tolist() == [1.5]
    assert val.targets["sentiment3"].tolist() == [1]
    assert test.features["text"].tolist() == [[2.0, 2.0]]
    assert test.targets["happy"].tolist() == [3.0]
    notes = store.manifest["notes"]
    assert notes["segments_dropped"] == {
        "shorter than epsilon": 1,
        "no audio rows": 1,
        "not in the folds": 1,
        "video missing from vision": 1,
    }
    assert notes["csd_neg_inf_replaced_by_zero"] == {"audio": 1}
    assert [t["name"] for t in store.manifest["targets"]] == [
        "sentiment", "sentiment3", "sentiment2", "happy", "sad", "anger", "surprise", "disgust",
        "fear",
    ]  # fmt: skip
    assert store.task == "sentiment3" and store.spec().names == ("text", "audio", "vision")


def test_sequence_mode_keeps_the_last_rows_right_padded(folder: Path, tmp_path: Path) -> None:
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps(FOLDS))
    store = prepare(folder, tmp_path / "s", folds=str(folds), mode="sequence", seq_len=3)
    train = store.split("train")
    assert train.lengths["text"].tolist() == [2, 2]
    assert train.features["text"][0].tolist() == [[1, 2], [3, 4], [0, 0]]
    assert train.lengths["audio"].tolist() == [2, 2]
    assert train.features["audio"][:, :, 0].tolist() == [[1, 0, 0], [4, 6, 0]]
    short = prepare(folder, tmp_path / "t", folds=str(folds), mode="sequence", seq_len=1)
    assert short.split("train").features["text"][:, 0].tolist() == [[3, 4], [7, 8]]
    assert short.spec()["text"].shape == (1, 2) and short.spec()["text"].variable_length


def test_standard_folds_come_from_an_installed_sdk(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match=r"which is not installed; run `pip install --no-deps cmu"):
        prepare(folder, tmp_path / "s")
    datasets = tmp_path / "site" / "mmsdk" / "mmdatasdk" / "dataset" / "standard_datasets"
    (datasets / "CMU_MOSEI").mkdir(parents=True)
    (tmp_path / "site" / "mmsdk" / "__init__.py").write_text("raise ImportError('not run')\n")
    write_folds_py(datasets / "CMU_MOSEI" / "cmu_mosei_std_folds.py", FOLDS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    store = prepare(folder, tmp_path / "s")
    assert store.manifest["splits"]["train"]["rows"] == 2
    with pytest.raises(DataError, match=r"the installed CMU SDK has no folds 'POM'"):
        prepare(folder, tmp_path / "p", folds="POM")


def _add_root(file: Path) -> None:
    with h5py.File(file, "a") as f:
        f.create_group("x")


def _replace(name: str, root: str, videos: dict[str, Video]):
    return lambda folder: write_csd(folder / name, root, videos)


MALFORMED = {
    "truncated": (
        lambda folder: (folder / "CMU_MOSEI_COVAREP.csd").write_bytes(b"\x89HDF\r\n"),
        r"CMU_MOSEI_COVAREP\.csd is not a readable HDF5 file .*truncated or not a CMU SDK",
    ),
    "missing": (
        lambda folder: (folder / "CMU_MOSEI_VisualFacet42.csd").unlink(),
        r"CMU_MOSEI_VisualFacet42\.csd does not exist",
    ),
    "words": (
        _replace("CMU_MOSEI_TimestampedWordVectors.csd", "words", {"vA": ([[0, 1]], [[b"sp"]])}),
        r"TimestampedWordVectors\.csd holds text \(\|S2\), not numbers",
    ),
    "intervals": (
        _replace("CMU_MOSEI_COVAREP.csd", "COVAREP", {**AUDIO, "vB": ([[0, 1]], [[1], [2]])}),
        r"COVAREP\.csd: video 'vB' has intervals \(1, 2\) for features \(2, 1\)",
    ),
    "label-width": (
        _replace("CMU_MOSEI_Labels.csd", "All Labels", {**LABELS, "vB": ([[0, 3]], [[0, 1]])}),
        r"Labels\.csd: video 'vB' has 2 label values per segment, expected 1 .* or 7",
    ),
    "empty-split": (
        _replace("CMU_MOSEI_COVAREP.csd", "COVAREP", {k: AUDIO[k] for k in ("vA", "vC", "vE")}),
        r"Labels\.csd: split 'val' has no segment with features in every modality",
    ),
    "two-roots": (
        lambda folder: _add_root(folder / "CMU_MOSEI_VisualFacet42.csd"),
        r"VisualFacet42\.csd is not a CMU SDK computational sequence .*\['FACET 4\.2', 'x'\]",
    ),
}


@pytest.mark.parametrize(("edit", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_name_file_and_problem(folder: Path, tmp_path: Path, edit, message) -> None:
    edit(folder)
    folds = write_folds_py(tmp_path / "folds.py", FOLDS)
    with pytest.raises(DataError, match=message) as e:
        prepare(folder, tmp_path / "out" / "s", folds=str(folds))
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_bad_folds_file(folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "folds.py"
    bad.write_text("standard_train_fold=['vA']\n")
    with pytest.raises(DataError, match=r"folds\.py is not a folds file \(KeyError"):
        prepare(folder, tmp_path / "s", folds=str(bad))
    twice = write_folds_py(tmp_path / "twice.py", {**FOLDS, "test": ["vC", "vA"]})
    with pytest.raises(DataError, match=r"twice\.py puts video 'vA' in two folds"):
        prepare(folder, tmp_path / "s", folds=str(twice))
