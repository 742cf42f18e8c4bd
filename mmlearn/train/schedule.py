"""The epoch budget of one fit: epochs per stage, and the learning rate of every epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mmlearn.errors import ConfigError
from mmlearn.models.base import Stage
from mmlearn.train.config import TrainConfig


@dataclass(frozen=True)
class StageSpan:
    """The epochs [first, first + epochs) of one stage, counted over the whole fit from 0."""

    name: str
    first: int
    epochs: int

    @property
    def stop(self) -> int:
        return self.first + self.epochs


def stage_spans(stages: Sequence[Stage], epochs: int) -> tuple[StageSpan, ...]:
    """Share ``epochs`` among ``stages`` by ``epoch_share``, at least one epoch each.

    Each stage gets the floor of its share of the epochs; the epochs left go to the largest
    remainders (earlier stages first on ties); a stage left with none takes one from the longest.

    Raises:
        ConfigError: fewer epochs than stages, or shares that are not positive.
    """
    if epochs < len(stages):
        raise ConfigError(
            f"train.epochs: must be >= the {len(stages)} stages of the model "
            f"({', '.join(s.name for s in stages)}), but got {epochs}."
        )
    shares = [s.epoch_share for s in stages]
    if not all(math.isfinite(s) and s > 0 for s in shares):
        raise ConfigError(f"stage epoch shares must be > 0, but got {shares}.")
    exact = [epochs * s / sum(shares) for s in shares]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(stages)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: epochs - sum(counts)]:
        counts[i] += 1
    for i, n in enumerate(counts):
        if n == 0:
            counts[i] = 1
            counts[counts.index(max(counts))] -= 1
    spans, first = [], 0
    for stage, n in zip(stages, counts, strict=True):
        spans.append(StageSpan(stage.name, first, n))
        first += n
    return tuple(spans)


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """The multiplier of every group's base rate during (0-based) ``epoch`` of the fit.

    ``linear`` is RedCore's rule with ``niter = floor(lr_constant_share * epochs)`` constant
    epochs and ``niter_decay = epochs - niter``: the factor is 1 for the first ``niter`` epochs,
    then ``1 - k / (niter_decay + 1)`` in the k-th decaying epoch, ending at
    ``1 / (niter_decay + 1)``.
    """
    if config.lr_schedule == "constant":
        return 1.0
    constant = math.floor(config.lr_constant_share * config.epochs)
    decay = config.epochs - constant
    return 1.0 - max(0, epoch + 1 - constant) / (decay + 1)


@dataclass(frozen=True)
class StepwiseLR:
    """``LambdaLR`` rule for an optimizer created at ``first_epoch`` and stepped every batch.

    DeepSpeed steps its scheduler after every optimizer step; the factor only changes when a
    whole epoch of ``steps_per_epoch`` steps has passed, so the rate is constant within an epoch.
    """

    config: TrainConfig
    first_epoch: int
    steps_per_epoch: int

    def __call__(self, step: int) -> float:
        return lr_factor(self.first_epoch + step // self.steps_per_epoch, self.config)
