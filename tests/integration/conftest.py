"""The study the integration tests share: run once per session (a few minutes on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.studies import FinishedStudy, run_shared_study


@pytest.fixture(scope="session")
def finished_study(mfeat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """RedCore and early fusion, 3 trials each with 2-worker Train trials and ASHA, 2 seeds."""
    return run_shared_study(tmp_path_factory.mktemp("shared-study"), mfeat_path)
