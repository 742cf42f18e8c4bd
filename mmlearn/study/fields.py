"""Field types of study-file sections: YAML values checked and frozen where they are read.

Each type fails with a message that names the rule and the value; pydantic adds the key path.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_AIM_URL = re.compile(r"aim://[^:/\s]+:\d+")


def as_tuple(value: Any) -> Any:
    """YAML lists as tuples, so that sections stay immutable; other values unchanged."""
    return tuple(value) if isinstance(value, list) else value


def expand_env(value: Any) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` replaced from the environment (path fields only)."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.groups()
        found = os.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            raise ValueError(
                f"environment variable {name} is not set; set it, or write "
                f"${{{name}:-default}} to fall back to a default"
            )
        return found

    return _ENV.sub(substitute, value)


def _path(value: Any) -> Path:
    expanded = expand_env(value)
    if not isinstance(expanded, str) or not expanded:
        raise ValueError(f"must be a non-empty path, but got {value!r}")
    return Path(expanded)


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits, '_', '-' and '.' "
            f"(it names folders and cells), but got {value!r}"
        )
    return value


def _rate(value: float) -> float:
    if not (math.isfinite(value) and 0 <= value < 1):
        hint = "; a rate of 1 would mean the modality is never seen" if value >= 1 else ""
        raise ValueError(f"a missing rate must be in [0, 1), but got {value!r}{hint}")
    return value


def _rate_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    _rate(low)
    _rate(high)
    if low > high:
        raise ValueError(f"a rate range needs low <= high, but got low={low}, high={high}")
    return value


def _non_empty(value: Any) -> Any:
    """Reject an empty list or mapping before its items are validated.

    (pydantic's own ``min_length`` counts the items that passed, so a list of bad items would
    be reported as empty.)
    """
    if isinstance(value, list | tuple | dict) and not value:
        raise ValueError("must not be empty")
    return value


def aim_repo(value: str) -> str:
    if value.startswith("aim://") and not _AIM_URL.fullmatch(value):
        raise ValueError(f"an Aim server is written aim://HOST:PORT, but got {value!r}")
    return value


PathField = Annotated[Path, BeforeValidator(_path)]
Slug = Annotated[str, AfterValidator(_slug)]
Names = Annotated[tuple[str, ...], BeforeValidator(as_tuple)]
NonEmpty = BeforeValidator(_non_empty)
Rate = Annotated[float, AfterValidator(_rate)]
RateRange = Annotated[tuple[float, float], BeforeValidator(as_tuple), AfterValidator(_rate_range)]


class Section(BaseModel):
    """A section of a study file: unknown keys are errors, values keep their YAML types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
