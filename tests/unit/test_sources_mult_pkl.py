"""The mult_pkl source: MulT's mosei_senti_data(_noalign).pkl, left padding and all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.sources._arrays import left_to_right
from mmlearn.data.store import open_store
from mmlearn.errors import DataError
from tests.formats import write_pickle

KEYS = {"train": "train", "val": "valid", "test": "test"}


def left_padded(rng: np.random.Generator, lengths: list[int], steps: int, dim: int) -> np.ndarray:
    """(N, steps, dim) with each sample's ``lengths[i]`` rows at the end, zeros before."""
    x = np.zeros((len(lengths), steps, dim), dtype=np.float32)
    for i, n in enumerate(lengths):
        x[i, steps - n :] = rng.uniform(0.5, 1.5, size=(n, dim))
    return x


def mult_layout(aligned: bool, seed: int = 0) -> dict[str, dict[str, Any]]:
    """MulT's dict: text 4x3, audio and vision 4 (aligned) or 6 / 5 steps, labels (N, 1, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, key in enumerate(KEYS.values()):
        n = 3 + i
        lengths = [1 + (j % 4) for j in range(n)]
        audio = left_padded(rng, lengths, 4 if aligned else 6, 2)
        audio[0, -1, 0] = -np.inf  # COVAREP's -inf, in the last (valid) step
        out[key] = {
            "text": left_padded(rng, lengths, 4, 3),
            "audio": audio,
            "vision": left_padded(rng, [min(k + 1, 4) for k in lengths], 4 if aligned else 5, 2),
            "labels": rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32),
            "id": np.array([[f"v{j}", "0", "1"] for j in range(n)]),
        }
    out["train"]["labels"][0, 0, 0] = 0.0  # neutral
    return out


def prepare(layout: dict, tmp_path: Path, name: str = "mosei_senti_data.pkl"):
    file = write_pickle(layout, tmp_path / name)
    return open_store(
        prepare_store("mult_pkl", {"path": str(file), "trust_pickle": True}, tmp_path / "s")
    )


def test_aligned_file_is_stored_as_it_is(tmp_path: Path) -> None:
    layout = mult_layout(aligned=True)
    store = prepare(layout, tmp_path)
    for split, key in KEYS.items():
        part, opened = layout[key], store.split(split)
        assert np.array_equal(opened.features["text"], part["text"])
        assert np.array_equal(opened.features["vision"], part["vision"])
        audio = np.where(np.isneginf(part["audio"]), 0, part["audio"])
        assert np.array_equal(opened.features["audio"], audio)
        assert np.array_equal(opened.targets["sentiment"], part["labels"][:, 0, 0])
        assert not opened.lengths
    train = store.split("train").targets
    labels = layout["train"]["labels"][:, 0, 0]
    assert train["sentiment3"].tolist() == (np.sign(labels) + 1).astype(int).tolist()
    assert train["sentiment3"][0] == 1 and train["sentiment2"][0] == 1
    assert store.manifest["notes"]["layout"] == "aligned, left-padded"
    assert store.manifest["notes"]["neg_inf_replaced_by_zero"] == {
        "train/audio": 1,
        "val/audio": 1,
        "test/audio": 1,
    }


def test_unaligned_file_moves_steps_to_the_front_with_lengths(tmp_path: Path) -> None:
    layout = mult_layout(aligned=False)
    store = prepare(layout, tmp_path, "mosei_senti_data_noalign.pkl")
    opened = store.split("val")  # 4 samples, lengths 1, 2, 3, 4
    assert opened.lengths["text"].tolist() == [1, 2, 3, 4]
    assert opened.lengths["audio"].tolist() == [1, 2, 3, 4]
    assert opened.lengths["vision"].tolist() == [2, 3, 4, 4]
    audio = layout["valid"]["audio"]  # (4, 6, 2), sample 3's rows at steps 2..5
    assert np.array_equal(opened.features["audio"][3, :4], audio[3, 2:])
    assert np.all(opened.features["audio"][3, 4:] == 0)
    assert np.array_equal(opened.features["text"][1, :2], layout["valid"]["text"][1, 2:])
    assert store.spec()["audio"].shape == (6, 2) and store.spec()["vision"].variable_length
    assert store.manifest["notes"]["layout"] == "unaligned, moved to right padding"


def test_left_to_right_keeps_inner_zero_steps_and_one_step_of_an_empty_sample() -> None:
    x = np.zeros((2, 4, 1), dtype=np.float32)
    x[0, 1:, 0] = [5.0, 0.0, 7.0]  # valid from step 1; step 2 is a real zero
    moved, lengths = left_to_right(x)
    assert lengths.tolist() == [3, 1]
    assert moved[:, :, 0].tolist() == [[5.0, 0.0, 7.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("key", "field", "value", "message"),
    [
        ("valid", "labels", None, r"split 'val' has no key 'labels'"),
        ("train", "labels", np.zeros((3, 4, 2)), r"labels have shape \(3, 4, 2\) .*\(N, 1, 1\)"),
        ("test", "vision", np.zeros((4, 4)), r"split 'test' vision has shape \(4, 4\)"),
        ("test", "text", np.zeros((2, 4, 3)), r"split 'test' has mismatched sample counts"),
    ],
    ids=["missing-key", "label-shape", "rank", "mismatched"],
)
def test_malformed_file(tmp_path: Path, key: str, field: str, value: Any, message: str) -> None:
    layout = mult_layout(aligned=True)
    if value is None:
        del layout[key][field]
    else:
        layout[key][field] = value
    with pytest.raises(DataError, match=message):
        prepare(layout, tmp_path)
    assert not (tmp_path / "s").exists()


def test_untrusted_pickle_is_refused(tmp_path: Path) -> None:
    file = write_pickle(mult_layout(aligned=True), tmp_path / "m.pkl")
    with pytest.raises(DataError, match=r"m\.pkl is a pickle.*--trust-pickle"):
        prepare_store("mult_pkl", {"path": str(file)}, tmp_path / "s")
