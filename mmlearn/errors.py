"""Errors that reach the user as one line: what is wrong, where, and what to do.

Also the helpers every checker of user input shares: a problem's key path (``Loc``), a problem
(``Problem``: key path and message), and the hints that name what was probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

Loc = tuple[str | int, ...]
"""Where a problem is in a nested file: keys and list indices from the top."""
Problem = tuple[Loc, str]
"""One broken rule: where, and the message."""


class MmlearnError(Exception):
    """A problem with the user's input or files; the CLI prints it as one line and exits 2."""


class DataError(MmlearnError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(MmlearnError):
    """An option or configuration value breaks a rule."""


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
