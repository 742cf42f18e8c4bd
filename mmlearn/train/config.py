"""The typed training configuration: optimiser, schedule, precision, ZeRO stage and budget."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mmlearn.errors import ConfigError
from mmlearn.metrics.patterns import METRIC_MODES

Precision = Literal["fp32", "bf16"]
Schedule = Literal["constant", "linear"]
_PRECISIONS = ("fp32", "bf16")
_SCHEDULES = ("constant", "linear")
_ZERO_STAGES = (0, 1, 2)


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained. Every field is a free choice; nothing is derived here.

    Attributes:
        epochs: total epochs of one fit, shared among the model's stages by ``epoch_share``.
        batch_size: samples per rank and step; the global batch is ``batch_size * world_size``.
        lr: base learning rate handed to ``model.param_groups(lr)``.
        weight_decay: AdamW's decoupled weight decay (RedCore uses none).
        betas: AdamW's (beta1, beta2).
        eps: AdamW's epsilon.
        grad_clip: global gradient-norm clip applied by DeepSpeed; 0 turns clipping off.
        lr_schedule: ``constant``, or ``linear``: RedCore's schedule, constant for
            ``lr_constant_share`` of the epochs, then a linear decay towards 0, changing once
            per epoch (methods.md §1.7).
        lr_constant_share: share of the epochs at the full rate under ``linear``, in [0, 1].
        precision: ``fp32``, or ``bf16`` (DeepSpeed keeps fp32 master weights).
        zero_stage: DeepSpeed ZeRO stage, 0 to 2.
        seed: seed of the batch order and of the torch RNG (dropout) on each rank.
        selection_metric: the metric whose mean over patterns selects the best epoch; None
            picks macro-F1 for classification and MAE for regression.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    lr_schedule: Schedule = "constant"
    lr_constant_share: float = 0.5
    precision: Precision = "fp32"
    zero_stage: int = 0
    seed: int = 0
    selection_metric: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        errors = _errors(self)
        if errors:
            raise ConfigError("\n".join(errors))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from plain data (a parsed YAML block), rejecting unknown keys.

        Raises:
            ConfigError: unknown keys or invalid values, one line each.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                "\n".join(
                    f"train.{k}: unknown key (allowed: {', '.join(sorted(known))})" for k in unknown
                )
            )
        return cls(**values)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _errors(cfg: TrainConfig) -> list[str]:
    """One ``train.<field>: must ..., but got ...`` line per broken rule."""
    rules: list[tuple[str, bool, str]] = [
        ("epochs", _is_int(cfg.epochs) and cfg.epochs >= 1, "an integer >= 1"),
        ("batch_size", _is_int(cfg.batch_size) and cfg.batch_size >= 1, "an integer >= 1"),
        ("lr", _is_real(cfg.lr) and cfg.lr > 0, "a finite number > 0"),
        ("weight_decay", _is_real(cfg.weight_decay) and cfg.weight_decay >= 0, "a number >= 0"),
        (
            "betas",
            isinstance(cfg.betas, tuple)
            and len(cfg.betas) == 2
            and all(_is_real(b) and 0 <= b < 1 for b in cfg.betas),
            "two numbers in [0, 1)",
        ),
        ("eps", _is_real(cfg.eps) and cfg.eps > 0, "a finite number > 0"),
        ("grad_clip", _is_real(cfg.grad_clip) and cfg.grad_clip >= 0, "a number >= 0 (0: off)"),
        ("lr_schedule", cfg.lr_schedule in _SCHEDULES, f"one of {_SCHEDULES}"),
        (
            "lr_constant_share",
            _is_real(cfg.lr_constant_share) and 0 <= cfg.lr_constant_share <= 1,
            "a number in [0, 1]",
        ),
        ("precision", cfg.precision in _PRECISIONS, f"one of {_PRECISIONS}"),
        ("zero_stage", _is_int(cfg.zero_stage) and cfg.zero_stage in _ZERO_STAGES, "0, 1 or 2"),
        ("seed", _is_int(cfg.seed) and cfg.seed >= 0, "an integer >= 0"),
        (
            "selection_metric",
            cfg.selection_metric is None or cfg.selection_metric in METRIC_MODES,
            f"None or one of {tuple(METRIC_MODES)}",
        ),
    ]
    return [
        f"train.{name}: must be {rule}, but got {getattr(cfg, name)!r}."
        for name, ok, rule in rules
        if not ok
    ]
