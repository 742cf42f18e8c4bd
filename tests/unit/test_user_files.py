"""Files a user hands over (study and cluster files, store manifests), however broken, end in one
line that names the file, exit 2, no traceback, and nothing written."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlearn.cluster.check import check_cluster
from mmlearn.data.store import MANIFEST, open_store
from mmlearn.errors import ConfigError, DataError
from mmlearn.study import load_study
from mmlearn.train.distributed import process_group
from mmlearn.user_files import MAX_DEPTH, MAX_NODES

ROOT = Path(__file__).resolve().parents[2]

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in itertools.pairwise("abcdefghi")
)  # 9**9 = 387 million strings once expanded, in 9 lines
BROKEN: dict[str, tuple[bytes, str]] = {
    "latin1": (b"name: x\n# caf\xe9\n", "is UTF-8 text, but byte 13 (line 2) is 0xe9"),
    "binary": (bytes(range(256)), "is UTF-8 text, but byte 128 (line 2) is 0x80"),
    "empty": (b"", "is empty"),
    "blank": (b"# nothing but a comment\n\n", "is empty"),
    "list": (b"- a\n- b\n", "is a mapping"),
    "scalar": (b"42\n", "is a mapping"),
    "alias_bomb": (ALIAS_BOMB.encode(), f"expand to more than {MAX_NODES} nodes"),
    "self_alias": (b"a: &a [1, *a]\n", "alias *a refers to itself"),
    "deep": (b"[" * 100 + b"]" * 100, f"nested deeper than {MAX_DEPTH} levels"),
    "deeper_than_libyaml_allows": (b"[" * 5000 + b"]" * 5000, "exceeded maximum nesting depth"),
    "deep_blocks": (
        "".join(f"{' ' * i}k{i}:\n" for i in range(300)).encode(),
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    "deep_mapping": (b"a: {" * 200 + b"}" * 200, f"nested deeper than {MAX_DEPTH} levels"),
    "duplicate_key": (b"name: a\nname: b\n", "key 'name' is given twice"),
    "int_key": (b"name: a\n1: b\n", "key 1 is not text; keys are names (quote it: '1')"),
    "null_key": (b"name: a\n~: b\n", "key None is not text"),
    "list_key": (b"? [a, b]\n: c\n", "a key is a list; keys are names"),
    "tab": (b"name: a\n\tdata: b\n", "found a tab character that violates indentation"),
    "two_documents": (b"a: 1\n---\nb: 2\n", "expected a single document"),
    "python_tag": (
        b"!!python/object/apply:os.system ['touch PWNED']\n",
        "could not determine a constructor for the tag",
    ),
    "huge": (b"name: a\n" + b"# padding\n" * 120_000, "is at most 1 MiB, but this file is larger"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_study_and_cluster_files_are_one_line_errors(tmp_path, case):
    content, message = BROKEN[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(content)
    for read in (load_study, check_cluster):
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            read(path)
        assert time.monotonic() - started < 2, "a file must not take long to refuse"
        lines = str(caught.value).splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{path}: "), lines
        assert message in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing written


def test_a_folder_and_a_missing_path_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"is a folder, but a study file is expected there$"):
        load_study(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read the cluster file \(No such file"):
        check_cluster(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is at most 1 MiB"):
        load_study(Path("/dev/zero"))  # no size to stat: read up to the limit only


def test_an_unreadable_file_is_a_one_line_error(tmp_path):
    """Read as ``nobody`` (root reads any file), so the permission really is missing."""
    if os.geteuid() != 0:
        pytest.skip("taking the nobody user's permissions needs root")
    study = tmp_path / "secret.yaml"
    shutil.copy(ROOT / "studies" / "quickstart.yaml", study)
    study.chmod(0o000)
    os.seteuid(65534)
    try:
        with pytest.raises(ConfigError) as caught:
            load_study(study)
    finally:
        os.seteuid(0)
    assert str(caught.value) == f"{study}: cannot read the study file (Permission denied)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "manifest.json is malformed (Expecting property name"),
        ('{"format": 1, "format": 2}', "manifest.json is malformed (key 'format' is given twice)"),
        ("[1, 2]", "a store manifest is a JSON object, but got [1, 2]"),
        ("[" * 100_000 + "]" * 100_000, "manifest.json is malformed (nested too deeply)"),
        ('{"modalities": 1, "targets": [], "task": "y", "splits": {}}', "TypeError"),
        ('{"modalities": [], "targets": [], "task": "y", "splits": []}', "AttributeError"),
        ('{"modalities": [], "targets": [], "task": "y", "splits": {"a": {"rows": "x"}}}', "Value"),
    ],
)
def test_broken_manifests_are_one_line_errors(tmp_path, text, message):
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(DataError) as caught:
        open_store(tmp_path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "prepare the store again" in lines[0]


def test_a_manifest_that_is_a_folder_or_not_utf8(tmp_path):
    (tmp_path / MANIFEST).write_bytes('{"source": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match="a store manifest is UTF-8 text, but byte 15"):
        open_store(tmp_path)
    (tmp_path / MANIFEST).unlink()
    (tmp_path / MANIFEST).mkdir()
    with pytest.raises(DataError, match="holds no manifest.json, so it is not a feature store"):
        open_store(tmp_path)


def test_a_failure_before_deepspeed_started_is_not_hidden_by_the_teardown():
    """The group is torn down without DeepSpeed's cache (which a fit creates) and the fit's own
    error reaches the caller (it was an AttributeError of DeepSpeed's teardown)."""
    with pytest.raises(ConfigError, match="train.epochs"), process_group():
        raise ConfigError("train.epochs: must be >= the 2 stages")


def test_output_cut_by_a_closed_pipe_exits_quietly(mfeat_path):
    read, write = os.pipe()
    os.close(read)  # the reader left before the first line, as `| head -0` would
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mmlearn", "data", "info", str(mfeat_path)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a Unix tool ends
