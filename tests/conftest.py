"""Shared fixtures: real stores prepared once per session in a temporary directory."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import FeatureStore, open_store

if TYPE_CHECKING:
    from tests.integration.tracking_study import TrackedStudy


@pytest.fixture(scope="session")
def mfeat_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """The real mfeat digits, default views fac/fou/mor, prepared once."""
    out = tmp_path_factory.mktemp("stores") / "mfeat"
    return open_store(prepare_store("mfeat", {}, out))


@pytest.fixture(scope="session")
def mfeat_path(mfeat_store: FeatureStore) -> Path:
    return mfeat_store.path


@pytest.fixture(scope="session")
def tracked_study(tmp_path_factory: pytest.TempPathFactory) -> TrackedStudy:
    """A tiny Tune experiment tracked in Aim, failed once, then restored (on a local Ray)."""
    from tests.integration.tracking_study import run_tracked_study  # imports Ray and Aim

    return run_tracked_study(tmp_path_factory.mktemp("tracking"))


@pytest.fixture
def small_filesystem() -> Iterator[Callable[[Path, int], Path]]:
    """Mount a tmpfs of a given size in MiB at a new folder, unmounted after the test; the test
    is skipped, with the reason, where this machine does not let it mount one (not root)."""
    mounted: list[Path] = []

    def mount(path: Path, mib: int) -> Path:
        path.mkdir(parents=True)
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                capture_output=True,
                text=True,
            )
            reason = done.stderr.strip()
        except FileNotFoundError:
            done, reason = None, "no mount command"
        if done is None or done.returncode != 0:
            pytest.skip(f"cannot mount a {mib} MiB tmpfs at {path} ({reason}); it needs root")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "--lazy", str(path)], check=False)
