"""A trial restores from the newest checkpoint its folder holds when Tune's is gone."""

from __future__ import annotations

import pyarrow.fs
import ray.train
from ray.train._internal.session import _TrainingResult

from mmlearn.study.ray_private import newest_existing


def result_for(path) -> _TrainingResult:
    checkpoint = ray.train.Checkpoint(str(path), filesystem=pyarrow.fs.LocalFileSystem())
    return _TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": 2})


def test_an_existing_checkpoint_is_kept(tmp_path):
    (tmp_path / "checkpoint_000001").mkdir()
    (tmp_path / "checkpoint_000002").mkdir()
    result = result_for(tmp_path / "checkpoint_000001")
    assert newest_existing(result) is result


def test_a_deleted_checkpoint_falls_back_to_the_newest_beside_it(tmp_path):
    for name in ("checkpoint_000000", "checkpoint_000002", "checkpoint_000010", "params.json"):
        (tmp_path / name).mkdir()
    found = newest_existing(result_for(tmp_path / "checkpoint_000001"))
    assert found is not None
    assert found.checkpoint.path == str(tmp_path / "checkpoint_000010")
    assert found.metrics == {"training_iteration": 11}  # checkpoint_k is iteration k + 1


def test_no_checkpoint_left_means_a_fresh_start(tmp_path):
    (tmp_path / "result.json").write_text("")
    assert newest_existing(result_for(tmp_path / "checkpoint_000003")) is None
