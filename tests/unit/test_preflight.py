"""``mmlearn study run`` checks its stores, models and storage before Ray starts: a broken input
is one line naming the file, in a few seconds, and Ray never starts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import ray
import yaml

from mmlearn.errors import ConfigError, DataError, MmlearnError
from mmlearn.study import load_study
from mmlearn.study.preflight import preflight
from mmlearn.study.runner import run_study

TINY = {"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]}}


def study(tmp_path: Path, store: Path, **overrides: Any) -> Path:
    """A one-cell study of ``store`` whose storage is ``tmp_path/runs``."""
    spec = {
        "name": "pre",
        "data": {"path": str(store)},
        "train": {"epochs": 2},
        "conditions": [{"name": "c1", "rates": {"fac": 0.5}}],
        "methods": [TINY],
        "search": {"trials_per_cell": 2},
        "final": {"seeds": 3},
        "storage": str(tmp_path / "runs"),
        "tracking": {"aim": None},
        **overrides,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def store(mfeat_path: Path, tmp_path: Path) -> Path:
    """A copy of the mfeat store that a test may break."""
    return Path(shutil.copytree(mfeat_path, tmp_path / "store"))


def fails_before_ray(path: Path, error: type[MmlearnError], text: str) -> str:
    """``run_study`` raises ``error`` in one line holding ``text``, and Ray never started."""
    with pytest.raises(error) as caught:
        run_study(path)
    assert not ray.is_initialized()
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and text in lines[0], lines
    return lines[0]


def test_a_whole_store_passes_and_the_need_is_estimated(tmp_path, store):
    lines: list[str] = []
    need = preflight(load_study(study(tmp_path, store)), lines.append)
    assert lines == []  # this file system has room
    assert need.checkpoints == 2 + 3 + 1  # 2 trials, 3 final seeds, 1 running
    assert 256 * 1024 < need.largest < 4 * 2**20  # a tiny network's checkpoint
    assert (tmp_path / "runs" / "pre").is_dir()


def test_a_truncated_arrow_file_is_one_line_before_ray(tmp_path, store):
    file = store / "train.arrow"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    line = fails_before_ray(study(tmp_path, store), DataError, f"{file}: not a whole Arrow file")
    assert line.endswith("prepare the store again with `mmlearn data prepare`")


def test_a_missing_column_and_a_wrong_row_count_name_the_file(tmp_path, store):
    file = store / "val.arrow"
    table = pa.ipc.open_file(pa.BufferReader(file.read_bytes())).read_all()
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.slice(0, 10))
    fails_before_ray(study(tmp_path, store), DataError, f"{file}: has 10 rows but the manifest")
    shorter = table.drop_columns(["feature.fou"])
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, shorter.schema) as writer:
        writer.write_table(shorter)
    fails_before_ray(
        study(tmp_path, store), DataError, f"{file}: lacks column(s) feature.fou (fixed_size_list"
    )


def test_every_fold_store_is_checked(tmp_path, mfeat_path):
    for fold in (1, 2):
        shutil.copytree(mfeat_path, tmp_path / f"fold{fold}")
    broken = tmp_path / "fold2" / "test.arrow"
    broken.write_bytes(b"not arrow at all")
    path = study(tmp_path, tmp_path / "fold{fold}", data={
        "path": str(tmp_path / "fold{fold}"), "folds": [1, 2]})  # fmt: skip
    fails_before_ray(path, DataError, f"{broken}: not a whole Arrow file")


def test_a_model_with_more_stages_than_epochs_is_one_line(tmp_path, store):
    path = study(tmp_path, store, train={"epochs": 1}, methods=["mmin"])
    fails_before_ray(path, ConfigError, "mmin@c1: train.epochs: must be >= the 2 stages")


def test_storage_that_cannot_be_written(tmp_path, store):
    (tmp_path / "runs").write_text("a file where the storage folder should be")
    message = "runs/pre: cannot write there (Not a directory)"
    fails_before_ray(study(tmp_path, store), ConfigError, message)


def test_storage_without_room_fails_and_little_room_warns(tmp_path, store, small_filesystem):
    disk = small_filesystem(tmp_path / "disk", mib=2)
    path = study(tmp_path, store, storage=str(disk), search={"trials_per_cell": 4})
    fails_before_ray(path, ConfigError, f"storage {disk / 'pre'}: no space for the study's")
    lines: list[str] = []
    path = study(tmp_path, store, storage=str(disk), search={"trials_per_cell": 1},
                 final={"seeds": 1}, resources={"max_concurrent_trials": 1})  # fmt: skip
    need = preflight(load_study(path), lines.append)
    assert need.bytes < shutil.disk_usage(disk).free < 2 * need.bytes
    assert len(lines) == 1 and lines[0].startswith(f"warning: storage {disk / 'pre'} has less")
