"""A failed trial's cause in one line, read from the error.txt Tune writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmlearn.study.failures import MAX_CAUSE, error_cause, failures, first_failures, read_cause

# What Tune 2.60 wrote for a DMRNet trial that failed twice (shortened; colours as written).
RAY_ERROR = """Failure # 1 (occurred at 2026-12-07_22-48-15)
\x1b[36mray::ResourceTrainable.train()\x1b[39m (pid=16879, ip=192.0.2.2, repr=run_trial)
  File "/venv/lib/python3.11/site-packages/ray/tune/trainable/trainable.py", line 329, in train
    raise skipped from exception_cause(skipped)
  File "/venv/lib/python3.11/site-packages/torch/nn/functional.py", line 2898, in batch_norm
    return torch.batch_norm(
           ^^^^^^^^^^^^^^^^^
RuntimeError: expected scalar type BFloat16 but found Float

Failure # 2 (occurred at 2026-12-07_22-48-20)
\x1b[36mray::ResourceTrainable.train()\x1b[39m (pid=16880, ip=192.0.2.2, repr=run_trial)
ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.
"""


def test_the_cause_is_the_last_line_of_the_first_failure() -> None:
    assert error_cause(RAY_ERROR) == "RuntimeError: expected scalar type BFloat16 but found Float"


def test_a_long_cause_is_cut_and_an_empty_file_says_so() -> None:
    cause = error_cause("Failure # 1 (occurred at x)\nValueError: " + "9" * 1000 + "\n")
    assert len(cause) == MAX_CAUSE and cause.startswith("ValueError: 999") and cause[-3:] == "..."
    assert error_cause("") == "no error message was recorded"
    assert error_cause("ValueError: no header\n") == "ValueError: no header"


def test_unreadable_or_absent_error_files_are_described(tmp_path: Path) -> None:
    assert read_cause(None) == "no error file was written"
    assert read_cause(tmp_path / "missing.txt").startswith("its error file cannot be read (")


def _trial(experiment: Path, name: str, cell: object, error: str | None) -> Path:
    folder = experiment / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"cell": cell, "phase": "search"}))
    if error is not None:
        (folder / "error.txt").write_text(error)
    return folder


def test_failures_name_their_cell_oldest_first(tmp_path: Path) -> None:
    first = _trial(tmp_path, "run_trial_a", "dmrnet@c", RAY_ERROR)
    second = _trial(
        tmp_path, "run_trial_b", "dmrnet@c", "Failure # 1 (occurred at y)\nKeyError: 'x'"
    )
    _trial(tmp_path, "run_trial_c", "redcore@c", None)  # finished: no error.txt
    (tmp_path / "run_trial_d").mkdir()
    (tmp_path / "run_trial_d" / "error.txt").write_text("OSError: disk\n")  # no params.json
    for age, folder in ((30, first), (20, second), (10, tmp_path / "run_trial_d")):
        stamp = 1_000_000 - age
        os.utime(folder / "error.txt", (stamp, stamp))

    found = failures(tmp_path)
    assert [(f.cell, f.cause) for f in found] == [
        ("dmrnet@c", "RuntimeError: expected scalar type BFloat16 but found Float"),
        ("dmrnet@c", "KeyError: 'x'"),
        ("unknown cell", "OSError: disk"),
    ]
    firsts = first_failures(tmp_path)
    assert firsts["dmrnet@c"] == found[0]
    assert "redcore@c" not in firsts
