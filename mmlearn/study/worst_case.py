"""Worst-case mode: search the per-modality missing rates that hurt a method most.

A worst-case cell has its hyperparameters fixed; its Optuna study searches the rates instead.
With ``rates`` ranges, each modality's rate is drawn from its range (modalities not named stay
complete). With a ``budget``, every modality draws a share in [0, 1] and the rates are the
budget split in proportion to the shares, each capped at ``MAX_RATE`` (so the sum can fall short
of the budget when one share dominates). The searched keys are ``rate.<modality>`` (ranges) or
``share.<modality>`` (budget); ``rates_of`` turns a trial's values into rates.

When the rates also apply to the test data (``applies_to: train_and_test``), the score of an
epoch is not the plain mean over patterns but each non-empty pattern's score weighted by the
probability of that pattern when modality m is missing with probability r_m independently,
renormalised over the non-empty patterns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmlearn.space import Dimension
from mmlearn.study.sections import WorstCaseSpec

RATE = "rate."
SHARE = "share."
MAX_RATE = 0.95
"""The highest rate a budget split may give one modality (a rate of 1 would leave it unseen)."""


def rate_space(spec: WorstCaseSpec, modalities: Sequence[str]) -> dict[str, Dimension]:
    """The searched keys of a worst-case cell: one rate or share per modality."""
    if spec.rates is not None:
        return {f"{RATE}{m}": Dimension("uniform", tuple(r)) for m, r in spec.rates.items()}
    return {f"{SHARE}{m}": Dimension("uniform", (0.0, 1.0)) for m in modalities}


def rates_of(
    values: Mapping[str, Any], spec: WorstCaseSpec, modalities: Sequence[str]
) -> dict[str, float]:
    """Per-modality training rates of a trial that drew ``values`` (every modality named)."""
    if spec.rates is not None:
        return {m: float(values.get(f"{RATE}{m}", 0.0)) for m in modalities}
    assert spec.budget is not None
    shares = {m: float(values[f"{SHARE}{m}"]) for m in modalities}
    total = sum(shares.values())
    if total == 0.0:
        return {m: min(spec.budget / len(modalities), MAX_RATE) for m in modalities}
    return {m: min(spec.budget * s / total, MAX_RATE) for m, s in shares.items()}


def without_rates(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` less the searched rate and share keys: the method's own values."""
    return {k: v for k, v in values.items() if not k.startswith((RATE, SHARE))}


def pattern_weights(rates: Mapping[str, float], patterns: Sequence[str]) -> dict[str, float]:
    """Probability of each pattern (``a+b`` names) under independent missingness, renormalised.

    Args:
        rates: modality -> probability that it is missing.
        patterns: the non-empty patterns to weight, named by their present modalities.

    Returns:
        pattern -> weight; the weights sum to 1.
    """
    raw = {}
    for name in patterns:
        present = set(name.split("+"))
        raw[name] = math.prod((1.0 - r) if m in present else r for m, r in rates.items())
    total = sum(raw.values())
    if total == 0.0:  # every modality always missing: no non-empty pattern can occur
        return {p: 1.0 / len(patterns) for p in patterns}
    return {p: w / total for p, w in raw.items()}


def weighted_score(
    patterns: Mapping[str, Mapping[str, float]], metric: str, rates: Mapping[str, float]
) -> float:
    """``metric`` over ``patterns`` (pattern -> metrics), weighted by ``pattern_weights``."""
    weights = pattern_weights(rates, list(patterns))
    return sum(weights[p] * patterns[p][metric] for p in patterns)
