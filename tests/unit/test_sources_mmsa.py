"""The mmsa source: MMSA's aligned_50.pkl / unaligned_50.pkl into the store, value for value."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.source import SourceData
from mmlearn.data.sources.synthetic import SyntheticOptions, build_synthetic
from mmlearn.data.store import open_store
from mmlearn.errors import ConfigError, DataError
from mmlearn.metrics.patterns import metric_names
from tests.formats import mmsa_layout, write_pickle

SPLIT_KEYS = {"train": "train", "val": "valid", "test": "test"}


def tiny(layout: str) -> SourceData:
    """8 samples per split; text 5x6, audio 12x4 with -inf, vision 9x3."""
    options = SyntheticOptions(
        scale=1e-4,
        layout=layout,
        text_dim=6,
        audio_dim=4,
        vision_dim=3,
        text_len=5,
        audio_len=12,
        vision_len=9,
        audio_neg_inf=0.05,
    )
    return build_synthetic(options)


def prepare(path: Path, out: Path, **options: Any):
    return open_store(prepare_store("mmsa", {"path": str(path), **options}, out))


def test_aligned_file_round_trips_value_for_value(tmp_path: Path) -> None:
    layout = mmsa_layout(tiny("aligned"))
    file = write_pickle(layout, tmp_path / "aligned_50.pkl")
    neg_inf = sum(int(np.isneginf(layout[k]["audio"]).sum()) for k in SPLIT_KEYS.values())
    assert neg_inf > 0
    store = prepare(file, tmp_path / "mosei", trust_pickle=True)
    for split, key in SPLIT_KEYS.items():
        part, opened = layout[key], store.split(split)
        assert np.array_equal(opened.features["text"], part["text"])
        assert np.array_equal(opened.features["vision"], part["vision"])
        assert np.array_equal(
            opened.features["audio"], np.where(part["audio"] == -np.inf, 0, part["audio"])
        )
        assert not opened.lengths
        assert np.array_equal(opened.targets["sentiment3"], part["classification_labels"])
        assert np.array_equal(
            opened.targets["sentiment"], part["regression_labels"].astype(np.float32)
        )
        assert np.array_equal(opened.targets["sentiment2"], part["regression_labels"] >= 0)
    spec = store.spec()
    assert spec.names == ("text", "audio", "vision") and spec["audio"].shape == (5, 4)
    assert store.task == "sentiment3" and spec.target.class_names == (
        "negative",
        "neutral",
        "positive",
    )
    assert {"acc2_has0", "acc2_nonzero", "weighted_f1", "uar"} <= set(metric_names(spec.target))
    notes = store.manifest["notes"]
    assert sum(notes["neg_inf_replaced_by_zero"].values()) == neg_inf
    assert notes["layout"] == "aligned" and store.manifest["options"]["trust_pickle"] is True


def test_unaligned_file_keeps_lengths_and_zeroes_padding(tmp_path: Path) -> None:
    data = tiny("unaligned")
    layout = mmsa_layout(data)
    train = layout["train"]
    train["vision"][0, 8] = 7.0  # past sample 0's length: must become 0
    lengths = data.splits["train"].lengths["vision"]
    train["vision_lengths"] = [0, 99, *lengths[2:].tolist()]  # clipped to 1 and to 9
    store = prepare(write_pickle(layout, tmp_path / "u.pkl"), tmp_path / "s", trust_pickle=True)
    opened = store.split("train")
    assert opened.lengths["vision"].tolist()[:2] == [1, 9]
    assert np.array_equal(opened.lengths["audio"], data.splits["train"].lengths["audio"])
    assert np.all(opened.features["vision"][0, 1:] == 0)
    assert np.array_equal(opened.features["vision"][0, 0], train["vision"][0, 0])
    assert np.array_equal(opened.features["vision"][1], train["vision"][1])
    assert store.manifest["notes"]["lengths_clipped"] == {"train/vision": 2}
    assert store.spec()["audio"].variable_length and not store.spec()["text"].variable_length
    val = store.split("val")
    assert np.array_equal(val.lengths["vision"], data.splits["val"].lengths["vision"])
    assert np.array_equal(val.features["vision"], layout["valid"]["vision"])


def test_text_bert_is_stored_as_steps_of_id_mask_segment(tmp_path: Path) -> None:
    layout = mmsa_layout(tiny("aligned"))
    file = write_pickle(layout, tmp_path / "a.pkl")
    store = prepare(file, tmp_path / "s", trust_pickle=True, text="text_bert")
    text = store.split("test").features["text"]
    bert = layout["test"]["text_bert"]  # (N, 3, T)
    assert text.shape == (8, 5, 3)
    assert np.array_equal(text[:, :, 0], bert[:, 0, :]) and np.all(text[:, :, 1] == 1)
    assert text[0, 0].tolist() == [101.0, 1.0, 0.0]


def test_untrusted_pickle_is_refused_with_the_reason_and_the_flag(tmp_path: Path) -> None:
    file = write_pickle(mmsa_layout(tiny("aligned")), tmp_path / "aligned_50.pkl")
    with pytest.raises(
        DataError,
        match=r"aligned_50\.pkl is a pickle, and loading a pickle runs any code.*--trust-pickle",
    ):
        prepare(file, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned_50.pkl"]


def _drop(key: str, field: str) -> Callable[[dict], None]:
    return lambda layout: layout[key].pop(field)


def _set(key: str, field: str, value: Callable[[Any], Any]) -> Callable[[dict], None]:
    return lambda layout: layout[key].__setitem__(field, value(layout[key][field]))


def _empty(key: str) -> Callable[[dict], None]:
    return lambda layout: layout[key].update({k: v[:0] for k, v in layout[key].items()})


MALFORMED = {
    "missing-key": (_drop("valid", "vision"), r"split 'val' has no key 'vision'; it has \["),
    "missing-split": (lambda layout: layout.pop("test"), r"has no split 'test' \(a dict of"),
    "rank": (
        _set("train", "audio", lambda x: x[:, 0]),
        r"split 'train' audio has shape \(8, 4\), expected 3 dimensions",
    ),
    "mismatched": (
        _set("train", "audio", lambda x: x[:-1]),
        r"split 'train' has mismatched sample counts \(text 8, audio 7, vision 8",
    ),
    "labels": (
        _set("test", "regression_labels", lambda y: y[:5]),
        r"split 'test' has mismatched sample counts .*regression_labels 5",
    ),
    "width": (
        _set("valid", "vision", lambda x: x[:, :, :2]),
        r"vision has per-sample shape \(5, 2\) in split 'val' but \(5, 3\) in 'train'",
    ),
    "strings": (
        _set("valid", "text", lambda x: x.astype(str)),
        r"split 'val' text holds <U\d+ values, expected numbers",
    ),
    "non-integer": (
        _set("valid", "classification_labels", lambda y: y + 0.5),
        r"classification_labels holds values that are not class ids",
    ),
    "range": (
        _set("valid", "classification_labels", lambda y: y + 3),
        r"classification_labels go up to 5, expected 0 negative",
    ),
    "empty": (_empty("valid"), r"split 'val' is empty; every split needs samples"),
}


@pytest.mark.parametrize(("edit", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_file_names_file_and_problem_and_writes_nothing(
    tmp_path: Path, edit: Callable[[dict], Any], message: str
) -> None:
    layout = mmsa_layout(tiny("aligned"))
    edit(layout)
    file = write_pickle(layout, tmp_path / "in" / "aligned_50.pkl")
    with pytest.raises(DataError, match=message) as e:
        prepare(file, tmp_path / "out" / "mosei", trust_pickle=True)
    assert str(e.value).startswith(str(file)) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_truncated_or_foreign_pickle(tmp_path: Path) -> None:
    file = write_pickle(mmsa_layout(tiny("aligned")), tmp_path / "a.pkl")
    file.write_bytes(file.read_bytes()[:2000])
    with pytest.raises(
        DataError, match=r"a\.pkl cannot be unpickled \(.*\); the file is truncated"
    ):
        prepare(file, tmp_path / "out", trust_pickle=True)
    other = write_pickle([1, 2], tmp_path / "list.pkl")
    with pytest.raises(DataError, match=r"list\.pkl holds a list, expected a dict with keys"):
        prepare(other, tmp_path / "out", trust_pickle=True)
    with pytest.raises(DataError, match=r"nope\.pkl does not exist"):
        prepare(tmp_path / "nope.pkl", tmp_path / "out", trust_pickle=True)
    assert not (tmp_path / "out").exists()


def test_command_line_takes_the_file_as_positional_argument(tmp_path: Path) -> None:
    file = write_pickle(mmsa_layout(tiny("aligned")), tmp_path / "aligned_50.pkl")

    def prepare_cli(*flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mmlearn", "data", "prepare", "mmsa", str(file), *flags]
        return subprocess.run(command, capture_output=True, text=True)

    refused = prepare_cli("--out", str(tmp_path / "no"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("mmlearn: error: ") and "--trust-pickle" in refused.stderr
    done = prepare_cli("--trust-pickle", "--out", str(tmp_path / "mosei"))
    assert done.returncode == 0, done.stderr
    assert open_store(tmp_path / "mosei").manifest["options"]["path"] == str(file)


def test_the_input_option_is_required() -> None:
    with pytest.raises(
        ConfigError, match=r"source 'mmsa' needs option\(s\) \['path'\]: path: MMSA"
    ):
        prepare_store("mmsa", {"trust_pickle": True}, "unused")
