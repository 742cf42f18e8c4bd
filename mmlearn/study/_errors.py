"""Error plumbing of study files: every broken rule is a (key path, message) pair.

Section validators raise all of their problems at once as one pydantic ``ValidationError``;
pydantic prefixes the key paths with the section's own path and keeps the other sections'
errors, so ``load_study`` can print every problem of a file, one line each.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from mmlearn.errors import Problem

ERROR_TYPE = "study"  # the pydantic error type of the problems raised here


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
