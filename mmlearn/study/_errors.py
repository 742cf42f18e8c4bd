"""Error plumbing of study files: every broken rule is a (key path, message) pair.

Section validators raise all of their problems at once as one pydantic ``ValidationError``;
pydantic prefixes the key paths with the section's own path and keeps the other sections'
errors, so ``load_study`` can print every problem of a file, one line each.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
ERROR_TYPE = "study"  # the pydantic error type of the problems raised here


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    """The message for a key a section does not have."""
    names = sorted(allowed)
    return f"unknown key{did_you_mean(key, names)} (allowed: {', '.join(names)})"


def key_path(loc: Loc) -> str:
    """``methods[1].space.lr`` for ``("methods", 1, "space", "lr")``.

    A key that is empty, has spaces at its ends or characters that do not print (a line break)
    is shown as its repr, so that a message stays one line and shows the key as it is.
    """
    return "".join(
        f"[{p}]" if isinstance(p, int) else f".{p if _plain(p) else repr(p)}" for p in loc
    ).lstrip(".")


def _plain(key: str) -> bool:
    return bool(key) and key.isprintable() and key.strip() == key


def raise_problems(title: str, problems: Sequence[Problem]) -> None:
    """Raise every problem at once, located relative to the section being validated.

    Raises:
        ValidationError: if ``problems`` is not empty.
    """
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(
                    type=PydanticCustomError(ERROR_TYPE, "{message}", {"message": message}),
                    loc=loc,
                    input=None,
                )
                for loc, message in problems
            ],
        )
