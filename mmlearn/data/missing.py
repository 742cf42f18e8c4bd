"""Missing-modality protocols: which modalities each training sample sees, and the evaluation grid.

A mask is an (N, M) bool array over the samples of a split, True where a modality is present,
columns in the store's modality order. Every mask is a pure function of (protocol, seed, epoch).

Training modes (methods.md §1.3 and §7):
    per_epoch: RedCore's official sampler. For each modality m independently, exactly
        floor(N * r_m) samples are masked, re-drawn every epoch. All-missing samples are allowed
        unless ``allow_empty=False``, in which case they are repaired by swaps that keep every
        modality's count exact.
    per_sample_fixed: the same draw, made once and tied to the sample id: a truly incomplete set.
    uniform_incomplete: MMIN. Each sample, each epoch, takes one of the 2^M - 2 patterns with at
        least one modality present and at least one missing, uniformly.
    uniform_nonempty: DMRNet. Uniform over all 2^M - 1 non-empty patterns.
    independent_drop: UME-MMA. Modality m is dropped with probability r_m independently; a sample
        that would lose every modality is drawn again, so at least one is kept.
    complete: every modality present (fusion baselines trained on complete data).

Evaluation always pairs every sample with every non-empty pattern (7 for three modalities).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mmlearn.errors import ConfigError

Mode = Literal[
    "per_epoch",
    "per_sample_fixed",
    "uniform_incomplete",
    "uniform_nonempty",
    "independent_drop",
    "complete",
]
MODES: tuple[str, ...] = Mode.__args__  # type: ignore[attr-defined]
_RATE_MODES = ("per_epoch", "per_sample_fixed", "independent_drop")
_FIXED_EPOCH = -1  # the epoch a per_sample_fixed mask is drawn for, whatever the real epoch


@dataclass(frozen=True)
class Pattern:
    """A set of present modalities, named by them: ``fac+mor``; ``none`` if empty."""

    bits: int
    name: str
    present: tuple[bool, ...]


def pattern_bits(present: np.ndarray) -> np.ndarray:
    """(N,) int64 bitmask of an (N, M) bool mask: bit m set when modality m is present."""
    weights = 1 << np.arange(present.shape[1], dtype=np.int64)
    return present.astype(np.int64) @ weights


def make_pattern(bits: int, modalities: Sequence[str]) -> Pattern:
    """The pattern with bitmask ``bits`` over ``modalities``."""
    present = tuple(bool(bits >> m & 1) for m in range(len(modalities)))
    names = [name for name, p in zip(modalities, present, strict=True) if p]
    return Pattern(bits, "+".join(names) if names else "none", present)


def evaluation_patterns(modalities: Sequence[str]) -> tuple[Pattern, ...]:
    """Every non-empty pattern: single modalities first, the full set last."""
    m = len(modalities)
    out = []
    for k in range(1, m + 1):
        for chosen in itertools.combinations(range(m), k):
            out.append(make_pattern(sum(1 << i for i in chosen), modalities))
    return tuple(out)


@dataclass(frozen=True)
class MissingProtocol:
    """How modalities go missing during training, for a named modality set.

    Args:
        modalities: modality names, in store order.
        mode: one of ``MODES``.
        rates: per-modality missing rates in [0, 1) for the rate modes; modalities not named
            get 0. The uniform and complete modes take no rates.
        allow_empty: per_epoch and per_sample_fixed only: keep samples with every modality
            masked (RedCore's official behaviour) or repair them.
        seed: masks are a pure function of (seed, epoch).

    Raises:
        ConfigError: a rate outside [0, 1), an unknown modality, rates given to a mode that
            takes none, or a protocol that can produce no valid sample.
    """

    modalities: tuple[str, ...]
    mode: Mode = "per_epoch"
    rates: Mapping[str, float] = field(default_factory=dict)
    allow_empty: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "rates", dict(self.rates))
        if len(self.modalities) < 2:
            raise ConfigError(f"missing protocols need >= 2 modalities, got {self.modalities}.")
        if self.mode not in MODES:
            raise ConfigError(f"unknown missing mode {self.mode!r}; choose one of {MODES}.")
        unknown = sorted(set(self.rates) - set(self.modalities))
        if unknown:
            raise ConfigError(
                f"missing rates name unknown modalities {unknown}; "
                f"this data set has {list(self.modalities)}."
            )
        for name, r in self.rates.items():
            if not (isinstance(r, int | float) and math.isfinite(r) and 0 <= r < 1):
                raise ConfigError(
                    f"missing rate of {name!r} must be in [0, 1), but got {r!r}; "
                    "a rate of 1 would mean the modality is never seen."
                )
        if self.mode not in _RATE_MODES and any(self.rates.values()):
            raise ConfigError(
                f"missing mode {self.mode!r} takes no rates, but got {self.rates}; "
                f"rates apply to {_RATE_MODES}."
            )

    def rate_vector(self) -> np.ndarray:
        """(M,) missing rates in modality order."""
        return np.array([self.rates.get(m, 0.0) for m in self.modalities])

    def check_feasible(self, n: int) -> None:
        """Raise ConfigError if no mask over ``n`` samples can satisfy this protocol."""
        if self.mode in ("per_epoch", "per_sample_fixed") and not self.allow_empty:
            missing = int(np.floor(n * self.rate_vector()).sum())
            if missing > n * (len(self.modalities) - 1):
                raise ConfigError(
                    f"rates {self.rates} mask {missing} modality slots of {n} samples, more than "
                    f"the {n * (len(self.modalities) - 1)} that leave every sample one modality; "
                    "lower the rates or set allow_empty."
                )

    def train_mask(self, n: int, epoch: int) -> np.ndarray:
        """(n, M) bool mask for one epoch of a training split of ``n`` samples."""
        self.check_feasible(n)
        if self.mode == "per_sample_fixed":
            epoch = _FIXED_EPOCH
        rng = np.random.default_rng([self.seed, epoch + 1, 0x6D6D])
        m = len(self.modalities)
        if self.mode == "complete":
            return np.ones((n, m), dtype=bool)
        if self.mode in ("per_epoch", "per_sample_fixed"):
            return _exact_count_mask(n, self.rate_vector(), self.allow_empty, rng)
        if self.mode == "independent_drop":
            return _independent_drop_mask(n, self.rate_vector(), rng)
        lowest = 1
        highest = (1 << m) - 1 if self.mode == "uniform_nonempty" else (1 << m) - 2
        bits = rng.integers(lowest, highest + 1, size=n)
        return (bits[:, None] >> np.arange(m)) & 1 == 1


def _exact_count_mask(
    n: int, rates: np.ndarray, allow_empty: bool, rng: np.random.Generator
) -> np.ndarray:
    """Exactly floor(n * r_m) absent entries per column, chosen independently per column."""
    m = len(rates)
    present = np.ones((n, m), dtype=bool)
    for col, rate in enumerate(rates):
        k = int(np.floor(n * rate))
        present[rng.choice(n, size=k, replace=False), col] = False
    if not allow_empty:
        _repair_empty_rows(present, rng)
    return present


def _repair_empty_rows(present: np.ndarray, rng: np.random.Generator) -> None:
    """Give every all-absent row one modality back, taking it from a row that has two or more.

    Each swap moves one absent entry within a column, so per-column counts stay exact.
    Feasibility (at most n * (M - 1) absent entries) guarantees a donor exists.
    """
    for row in np.flatnonzero(~present.any(axis=1)):
        for col in rng.permutation(present.shape[1]):
            donors = np.flatnonzero(present[:, col] & (present.sum(axis=1) >= 2))
            if len(donors):
                donor = donors[rng.integers(len(donors))]
                present[row, col], present[donor, col] = True, False
                break


def _independent_drop_mask(n: int, rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli drops per modality; all-dropped rows are re-drawn until one modality stays."""
    present = rng.random((n, len(rates))) >= rates
    empty = np.flatnonzero(~present.any(axis=1))
    while len(empty):
        present[empty] = rng.random((len(empty), len(rates))) >= rates
        empty = empty[~present[empty].any(axis=1)]
    return present
