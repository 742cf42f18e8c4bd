"""Shared fixtures: real stores prepared once per session in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmlearn.data.prepare import prepare_store
from mmlearn.data.store import FeatureStore, open_store


@pytest.fixture(scope="session")
def mfeat_store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """The real mfeat digits, default views fac/fou/mor, prepared once."""
    out = tmp_path_factory.mktemp("stores") / "mfeat"
    return open_store(prepare_store("mfeat", {}, out))


@pytest.fixture(scope="session")
def mfeat_path(mfeat_store: FeatureStore) -> Path:
    return mfeat_store.path
