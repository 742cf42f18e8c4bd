import json

import numpy as np
import pyarrow as pa
import pytest

from mmlearn.data.source import SourceData, SplitArrays
from mmlearn.data.sources.mfeat import MfeatOptions, build_mfeat
from mmlearn.data.store import open_store, write_store
from mmlearn.errors import DataError
from tests.sample_data import sequence_data


def assert_same(data: SourceData, store) -> None:
    for name, split in data.splits.items():
        opened = store.split(name)
        for m, x in split.features.items():
            assert np.array_equal(opened.features[m], x)
        for m, lens in split.lengths.items():
            assert np.array_equal(opened.lengths[m], lens)
        for t, y in split.targets.items():
            assert np.array_equal(opened.targets[t], y)


def test_round_trip_is_value_for_value(tmp_path):
    data = sequence_data()
    store = open_store(write_store(data, tmp_path / "s", source="test", options={"k": 1}))
    assert_same(data, store)
    spec = store.spec()
    assert spec.names == ("audio", "text", "pose")
    assert spec["audio"].variable_length and spec["audio"].shape == (4, 3)
    assert not spec["text"].variable_length and spec["text"].max_len == 2
    assert spec["pose"].shape == (7,) and not spec["pose"].is_sequence
    assert spec.target.num_classes == 3
    assert store.spec("score").target.kind == "regression"
    assert store.manifest["options"] == {"k": 1}
    assert store.manifest["splits"]["train"]["rows"] == 6


def test_real_mfeat_round_trip(tmp_path):
    data = build_mfeat(MfeatOptions())
    store = open_store(write_store(data, tmp_path / "m", source="mfeat", options={}))
    assert_same(data, store)


def test_opening_is_memory_mapped_and_zero_copy(tmp_path):
    data = build_mfeat(MfeatOptions())
    path = write_store(data, tmp_path / "m", source="mfeat", options={})
    before = pa.total_allocated_bytes()
    split = open_store(path).split("train")
    assert pa.total_allocated_bytes() == before  # nothing was copied into Arrow's heap
    x = split.features["fac"]
    assert not x.flags.writeable and not x.flags.owndata
    assert x.shape == (1400, 216)


def test_minus_inf_becomes_zero_and_is_counted(tmp_path):
    data = sequence_data()
    data.splits["train"].features["audio"][0, 0, :2] = -np.inf
    store = open_store(write_store(data, tmp_path / "s", source="test", options={}))
    assert store.manifest["notes"]["neg_inf_replaced_by_zero"] == {"train/audio": 2}
    assert np.isfinite(store.split("train").features["audio"]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_plus_inf_is_an_error_and_leaves_the_old_store(tmp_path, bad):
    out = write_store(sequence_data(seed=1), tmp_path / "s", source="test", options={})
    data = sequence_data(seed=2)
    data.splits["val"].features["pose"][2, 3] = bad
    with pytest.raises(DataError, match=r"split 'val' modality 'pose' holds 1 NaN or \+inf"):
        write_store(data, out, source="test", options={}, force=True)
    assert_same(sequence_data(seed=1), open_store(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary left behind


def test_existing_store_needs_force(tmp_path):
    out = write_store(sequence_data(seed=1), tmp_path / "s", source="test", options={})
    with pytest.raises(DataError, match="already exists and is not empty; .* --force"):
        write_store(sequence_data(seed=2), out, source="test", options={})
    write_store(sequence_data(seed=2), out, source="test", options={}, force=True)
    assert_same(sequence_data(seed=2), open_store(out))


def test_inconsistent_source_data_is_rejected(tmp_path):
    empty = sequence_data()
    empty.splits["val"] = SplitArrays(
        features={k: v[:0] for k, v in empty.splits["val"].features.items()},
        lengths={k: v[:0] for k, v in empty.splits["val"].lengths.items()},
        targets={k: v[:0] for k, v in empty.splits["val"].targets.items()},
    )
    with pytest.raises(DataError, match="split 'val' is empty"):
        write_store(empty, tmp_path / "a", source="t", options={})
    wrong = sequence_data()
    wrong.splits["test"].features["pose"] = np.zeros((4, 8), dtype=np.float32)
    with pytest.raises(DataError, match=r"'test' modality 'pose' has shape \(4, 8\), expected"):
        write_store(wrong, tmp_path / "b", source="t", options={})
    long = sequence_data()
    long.splits["train"].lengths["audio"][0] = 9
    with pytest.raises(DataError, match=r"lengths outside \[1, 4\]"):
        write_store(long, tmp_path / "c", source="t", options={})
    assert not any(tmp_path.iterdir())


def test_not_a_store(tmp_path):
    with pytest.raises(DataError, match="holds no manifest.json, so it is not a feature store"):
        open_store(tmp_path)


def test_truncated_split_file_names_the_file(tmp_path):
    path = write_store(sequence_data(), tmp_path / "s", source="test", options={})
    file = path / "train.arrow"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot read .*train.arrow: .*truncated or corrupt"):
        open_store(path).split("train")


def test_manifest_that_disagrees_with_the_file(tmp_path):
    path = write_store(sequence_data(), tmp_path / "s", source="test", options={})
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["splits"]["val"]["rows"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="has 3 rows but the manifest says 99"):
        open_store(path).split("val")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json is malformed"):
        open_store(path)


def test_unknown_task_or_modality(tmp_path):
    store = open_store(write_store(sequence_data(), tmp_path / "s", source="t", options={}))
    with pytest.raises(DataError, match=r"has no target 'mood'; it has \['label', 'score'\]"):
        store.spec("mood")
    with pytest.raises(DataError, match=r"has no modality \['video'\]"):
        store.spec(modalities=("audio", "video"))
    assert store.spec(modalities=("pose", "audio")).names == ("pose", "audio")
