"""Tune snapshots a killed driver left torn are set aside, newest first, down to a whole one."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from mmlearn.study.snapshots import has_snapshot, set_aside_torn

OLD, NEW = "2026-12-07_10-00-00", "2026-12-07_11-00-00"


def _write_session(folder: Path, session: str, *, torn: str | None = None) -> list[Path]:
    """A session's snapshot files as Tune writes them; ``torn`` names one cut short."""
    files = {
        folder / f"experiment_state-{session}.json": json.dumps({"trial_data": []}).encode(),
        folder / f"search_gen_state-{session}.json": pickle.dumps({"counter": 3}),
        folder / f"searcher-state-{session}.pkl": json.dumps({"live": {}}).encode(),
    }
    for path, data in files.items():
        path.write_bytes(data[: len(data) // 2] if path.name.startswith(torn or "-") else data)
    return list(files)


def test_a_whole_snapshot_is_left_alone(tmp_path: Path) -> None:
    _write_session(tmp_path, OLD)
    _write_session(tmp_path, NEW)
    assert set_aside_torn(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 6


def test_a_torn_newest_snapshot_is_set_aside_for_the_one_before(tmp_path: Path) -> None:
    old = _write_session(tmp_path, OLD)
    for torn in ("experiment_state", "search_gen_state", "searcher-state"):
        new = _write_session(tmp_path, NEW, torn=torn)
        assert set_aside_torn(tmp_path) == [NEW], torn
        assert all(p.with_name(p.name + ".torn").exists() and not p.exists() for p in new)
        assert all(p.exists() for p in old) and has_snapshot(tmp_path)


def test_a_missing_file_tears_a_snapshot_and_none_may_be_left(tmp_path: Path) -> None:
    files = _write_session(tmp_path, NEW)
    files[2].unlink()  # the copy stopped before the searcher's state
    assert set_aside_torn(tmp_path) == [NEW]
    assert not has_snapshot(tmp_path)
    assert set_aside_torn(tmp_path) == []
