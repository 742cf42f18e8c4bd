"""Rules of the package's layout that a reviewer would otherwise have to remember."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "mmlearn"
RAY_PRIVATE = PACKAGE / "study" / "ray_private.py"


def test_ray_private_api_is_used_in_one_module_only() -> None:
    private = re.compile(r"^\s*(from|import)\s+ray\.\S*_internal", re.MULTILINE)
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if private.search(path.read_text())
    )
    assert users == [str(RAY_PRIVATE.relative_to(PACKAGE))]
