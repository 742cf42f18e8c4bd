"""Shared fixtures: real stores prepared once per session in a temporary directory."""

from __future__ import annotations

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
