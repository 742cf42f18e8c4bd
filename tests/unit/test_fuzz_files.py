"""Property tests: every mutation of a shipped study or cluster file is either valid or refused in
at most 3 lines naming the problem; never a crash, never a traceback.

Each shipped file gets ``EXAMPLES`` mutations (hypothesis, derandomised so that CI is
reproducible): a key renamed or deleted, a value swapped for another type, a number pushed out
of range, the file replaced by random bytes, or random bytes spliced into its text. The checks
run in-process (``check_studies`` and ``check_clusters`` are what the commands call); two runs of
the real command line check the exit code and the output of the same property.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmlearn.cluster.check import check_clusters
from mmlearn.errors import ConfigError
from mmlearn.study import check_studies

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))
CLUSTERS = sorted((ROOT / "cluster").glob("*.yaml"))
EXAMPLES = 500
MAX_LINES = 3
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

Path_ = tuple[Any, ...]
OUT_OF_RANGE = (-1, 0, -(2**63), 2**63, 10**100, -0.5, 1e308, -1e308, math.inf, -math.inf, math.nan)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=2),
)


def key_paths(tree: Any, prefix: Path_ = ()) -> list[Path_]:
    """The path of every value in ``tree``: mapping keys and list indices."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    found = []
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list):
            found += key_paths(value, (*prefix, key))
    return found


@st.composite
def mutations(draw: st.DrawFn, text: str) -> bytes:
    """A mutation of the YAML ``text``: the bytes of a file to check (libyaml parses and
    writes the mutated trees: PyYAML's own would take most of the time)."""
    kind = draw(st.sampled_from(["rename", "delete", "swap", "number", "bytes", "splice"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "splice":
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=20)) + raw[at:]
    tree = copy.deepcopy(_parsed(text))
    path = draw(st.sampled_from(key_paths(tree)))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if kind == "rename" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=12))] = parent.pop(key)
    elif kind in ("rename", "delete"):
        del parent[key]
    elif kind == "swap":
        parent[key] = draw(VALUES)
    else:
        parent[key] = draw(st.sampled_from(OUT_OF_RANGE))
    return yaml.dump(tree, Dumper=yaml.CSafeDumper, allow_unicode=True).encode()


@functools.cache
def _parsed(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def assert_valid_or_refused(check: Any, path: Path) -> None:
    """``check(path)`` returns, or raises ConfigError in at most ``MAX_LINES`` lines."""
    try:
        check(path)
    except ConfigError as e:
        lines = str(e).splitlines()
        assert 1 <= len(lines) <= MAX_LINES, lines
        assert all(line.startswith(f"{path}: ") for line in lines), lines
        assert "Traceback" not in str(e)


def fuzz(original: Path, check: Any, tmp_path: Path) -> None:
    path = tmp_path / original.name

    @FUZZ
    @given(content=mutations(original.read_text()))
    def property_(content: bytes) -> None:
        path.write_bytes(content)
        assert_valid_or_refused(check, path)

    property_()


@pytest.mark.parametrize("original", STUDIES, ids=lambda p: p.stem)
def test_mutated_study_files_are_valid_or_refused(original, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths name nothing here
    fuzz(original, lambda path: check_studies([path]), tmp_path)


@pytest.mark.parametrize("original", CLUSTERS, ids=lambda p: p.stem)
def test_mutated_cluster_files_are_valid_or_refused(original, tmp_path):
    fuzz(original, lambda path: check_clusters([path], []), tmp_path)


@pytest.mark.parametrize(
    ("command", "original", "edit"),
    [
        ("study", "digits_imbalance", lambda text: text[:200].encode() + b"\xff\xfe\x00"),
        (
            "study",
            "digits_imbalance",
            lambda text: text.replace("epochs: 30", "epochs: -1").encode(),
        ),
        (
            "cluster",
            "gpu",
            lambda text: text.replace("max_workers: 6", "max_workers: [6]").encode(),
        ),
    ],
)
def test_the_command_line_exits_2_in_a_few_lines(command, original, edit, tmp_path):
    folder = {"study": "studies", "cluster": "cluster"}[command]
    path = tmp_path / f"{original}.yaml"
    path.write_bytes(edit((ROOT / folder / path.name).read_text()))
    done = subprocess.run(
        [sys.executable, "-m", "mmlearn", command, "check", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert 1 <= len(lines) <= MAX_LINES and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"mmlearn: error: {path}: ")
