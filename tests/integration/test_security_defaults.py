"""Security defaults: what the project serves listens on 127.0.0.1 only, clusters authenticate
with a token, a pickle is opened only when trusted, and checking a file runs nothing in it.

The dashboard of a study's local Ray runs any job it is sent and Aim's UI has no login, so
neither may listen beyond this machine (README, "Errors" and "Browsing a study in Aim").
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import psutil
import ray

from mmlearn.cluster.check import check_cluster
from mmlearn.study.runner import _start_ray

ROOT = Path(__file__).resolve().parents[2]


def test_the_local_ray_dashboard_listens_on_127_0_0_1_only():
    started, reaper = _start_ray()
    try:
        url = ray._private.worker.global_worker.node.address_info["webui_url"]
        host, port = url.rsplit(":", 1)
        listening = {
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)
        }
    finally:
        if started:
            ray.shutdown()
        if reaper is not None:
            reaper.release()
    assert host == "127.0.0.1" and listening == {"127.0.0.1"}, (url, listening)


def test_make_aim_serves_aim_on_127_0_0_1():
    recipe = re.search(r"^aim:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    assert "aim up --host 127.0.0.1 " in recipe.group(1)


def test_shipped_clusters_use_tokens_and_keep_the_dashboard_local():
    for path in sorted((ROOT / "cluster").glob("*.yaml")):
        summary = check_cluster(path).summary(())
        assert "token auth, dashboard on the head's 127.0.0.1" in summary
        assert "export RAY_AUTH_MODE=token" in path.read_text()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what unpickling would run
        return (Path.touch, (self.marker,))


def test_a_pickle_is_not_opened_without_trust_pickle(tmp_path):
    marker = tmp_path / "ran"
    file = tmp_path / "aligned_50.pkl"
    file.write_bytes(pickle.dumps({"train": _Evil(marker)}))
    out = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "mmlearn", "data", "prepare", "mmsa", str(file), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "--trust-pickle" in done.stderr
    assert not marker.exists() and not out.exists()


def test_checking_files_never_constructs_objects(tmp_path):
    marker = tmp_path / "ran"
    for command in ("study", "cluster"):
        file = tmp_path / f"{command}.yaml"
        file.write_text(f"name: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
        done = subprocess.run(
            [sys.executable, "-m", "mmlearn", command, "check", str(file)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 2 and "could not determine a constructor" in done.stderr
        assert not marker.exists()
