"""`make aim` serves a study's runs: Aim's UI over the runs the tracking callback wrote.

`make aim` serves the repository of the tracked experiment (tests/integration/tracking_study.py:
three search trials and a final run) on a free port of 127.0.0.1; the runs are checked through
Aim's HTTP API and, when Debian's chromium is installed, in the rendered runs page, whose
screenshot is kept in tests/artifacts/aim_runs.png.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium")
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tracked_study, tmp_path_factory) -> Iterator[str]:
    """`make aim` on the repository; yields its address, stops it (and its children) after."""
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "aim-up.log"
    command = [
        "make",
        "--no-print-directory",
        "-o",  # never (re)build the environment from a test
        f"{os.environ.get('MMLEARN_VENV') or '.venv'}/.setup-done",
        "aim",
        f"AIM_REPO={tracked_study.repo}",
        f"AIM_PORT={port}",
        f"BIN={Path(sys.executable).parent}",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{address}/api/projects/") is not None, server, log)
        # aim up indexes new runs in the background; until then it does not show them
        hashes = [run.hash for run in tracked_study.after.values()]
        wait_for(lambda: all(indexed(address, h) for h in hashes), server, log)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def get(url: str) -> bytes | None:
    """The body of a GET, or None while the server does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except OSError:
        return None


def wait_for(ready, server: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert server.poll() is None, f"`make aim` exited: {log.read_text()}"
        assert time.monotonic() < deadline, (
            f"`make aim` not ready in {seconds} s: {log.read_text()}"
        )
        time.sleep(0.5)


def run_info(address: str, run_hash: str) -> dict[str, Any]:
    body = get(f"{address}/api/runs/{run_hash}/info/")
    assert body is not None, run_hash
    return json.loads(body)


def indexed(address: str, run_hash: str) -> bool:
    body = get(f"{address}/api/runs/{run_hash}/info/")
    return body is not None and "mmlearn" in json.loads(body)["params"]


def search(address: str, query: str) -> bytes:
    body = get(f"{address}/api/runs/search/run/?{urllib.parse.urlencode({'q': query})}")
    assert body is not None, query
    return body


def test_make_aim_serves_the_runs_of_the_study(tracked_study, dashboard):
    runs = tracked_study.after
    experiments = json.loads(get(f"{dashboard}/api/experiments/"))
    assert {e["name"]: e["run_count"] for e in experiments}["tiny"] == 4
    completed = run_info(dashboard, runs["early_fusion@c1 search 0"].hash)
    assert completed["props"]["name"] == runs["early_fusion@c1 search 0"].name
    assert completed["props"]["experiment"]["name"] == "tiny"
    assert {t["name"] for t in completed["props"]["tags"]} == {"tiny", "early_fusion@c1", "search"}
    assert completed["params"]["mmlearn"]["hparams"]["hidden"] == 64
    assert completed["params"]["outcome"]["status"] == "completed"
    traces = {
        (t["name"], tuple(sorted(t["context"].items()))) for t in completed["traces"]["metric"]
    }
    assert ("accuracy", (("pattern", "mor"), ("split", "val"))) in traces
    final = search(dashboard, 'run.experiment == "tiny" and run.mmlearn.phase == "final"')
    assert runs["redcore@c1 final None"].hash.encode() in final
    assert not any(run.hash.encode() in final for key, run in runs.items() if "search" in key)


def test_the_runs_page_shows_the_runs_in_chromium(tracked_study, dashboard, tmp_path):
    if CHROMIUM is None:
        warnings.warn(
            "chromium is not installed (apt-get install chromium): the dashboard was checked "
            "through Aim's HTTP API only",
            stacklevel=1,
        )
        return
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "aim_runs.png"
    screenshot.unlink(missing_ok=True)
    page = subprocess.run(
        [
            CHROMIUM,
            *HEADLESS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
            f"{dashboard}/runs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 10_000
    for run in tracked_study.after.values():
        assert run.name in page.stdout
