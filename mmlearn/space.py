"""Search-space syntax of study files, and its translation to Optuna suggestions.

A hyperparameter is either a fixed value or one of::

    lr:      {loguniform: [1e-5, 1e-2]}
    dropout: {uniform: [0.0, 0.5]}
    layers:  {int: [1, 4]}
    hidden:  {choice: [64, 96, 128]}

This module is the only place that knows the syntax: method default spaces (checked when a
method registers) and study files both go through ``parse_dimension``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mmlearn.errors import did_you_mean

Kind = Literal["loguniform", "uniform", "int", "choice"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
_CHOICE_TYPES = (type(None), bool, int, float, str)  # what Optuna's categorical accepts


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a kind and its bounds (low, high) or choices."""

    kind: Kind
    values: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw the value of ``name`` from an ``optuna.Trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(name, low, high)
        return trial.suggest_float(name, low, high, log=self.kind == "loguniform")

    def probe_values(self) -> tuple[Any, ...]:
        """Values that stand for every draw when checking that the target field accepts them.

        Every choice, or both bounds; the bounds of ``uniform`` and ``loguniform`` as floats,
        since that is what ``suggest`` returns for them.
        """
        if self.kind in ("uniform", "loguniform"):
            return tuple(float(v) for v in self.values)
        return self.values


def parse_dimension(value: Any) -> Dimension | None:
    """The Dimension a study-file value describes, or None when the value is fixed.

    Raises:
        ValueError: a one-line reason when a ``{kind: [...]}`` mapping is malformed.
    """
    if not isinstance(value, dict):
        return None
    if len(value) != 1:
        raise ValueError(
            f"a search dimension is one of {{{', '.join(KINDS)}: [...]}}, but got {value!r}"
        )
    ((kind, args),) = value.items()
    if kind not in KINDS:
        hint = did_you_mean(str(kind), KINDS)
        raise ValueError(f"unknown search kind {kind!r}{hint} (use one of {', '.join(KINDS)})")
    if not isinstance(args, list | tuple) or not args:
        raise ValueError(f"{kind} needs a non-empty list, but got {args!r}")
    if kind == "choice":
        odd = [v for v in args if not isinstance(v, _CHOICE_TYPES)]
        if odd:
            raise ValueError(
                f"choice values must be null, bool, int, float or str, but got {odd[0]!r}; "
                "a list-valued hyperparameter can only be fixed"
            )
        return Dimension("choice", tuple(args))
    if len(args) != 2:
        raise ValueError(f"{kind} needs [low, high], but got {list(args)!r}")
    low, high = args
    numeric = int if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, numeric) for v in (low, high)):
        expected = "integers" if kind == "int" else "numbers"
        raise ValueError(f"{kind} bounds must be {expected}, but got {list(args)!r}")
    if not all(math.isfinite(v) for v in (low, high)):
        raise ValueError(f"{kind} bounds must be finite, but got {list(args)!r}")
    if low > high:
        raise ValueError(f"{kind} needs low <= high, but got low={low}, high={high}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform needs low > 0, but got low={low}")
    return Dimension(kind, (low, high))
