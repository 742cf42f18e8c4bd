"""Warning for methods implemented without reference code (style.md house-keeping)."""

from __future__ import annotations

import warnings


class ExperimentalWarning(UserWarning):
    """The method has no official code; its details are this library's own choices."""


def warn_experimental(name: str, reason: str) -> None:
    """Emit an ``ExperimentalWarning`` for method ``name``."""
    warnings.warn(f"{name} is experimental: {reason}", ExperimentalWarning, stacklevel=3)
