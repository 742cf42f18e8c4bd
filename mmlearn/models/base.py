"""The contract between methods and the training engine.

The engine (``mmlearn.train``) is the only code that calls backward, steps optimizers, clips and
checkpoints. A method provides ``forward`` and ``loss`` (a total plus named parts for logging),
its parameter groups, and optional hooks. Multi-stage methods (UME-MMA, MMIN) declare their
stages; the engine runs them in order inside one fit, so callers never orchestrate stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec


@dataclass
class ModelOutput:
    """What ``forward`` returns.

    Attributes:
        prediction: (B, C) class logits, or (B,) regression values; computed from present
            modalities only.
        extras: method-specific tensors that ``loss`` needs (reconstructions, mu/logvar, ...).
    """

    prediction: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossOutput:
    """What ``loss`` returns: the scalar to minimise and its named parts for logs.

    The parts are detached scalar tensors on the model's device, not floats: converting a CUDA
    tensor to a float waits for the device, and the training loop reads them once per epoch.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage method: its name and the share of the epoch budget it gets."""

    name: str
    epoch_share: float


class MissingModalityModel(nn.Module):
    """Base of every registered method. Subclasses own their modules, loss and hooks."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stage = self.stages()[0].name

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        raise NotImplementedError

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:  # noqa: D102
        raise NotImplementedError

    def stages(self) -> tuple[Stage, ...]:
        """The stages of one fit, in order; single-stage methods have one."""
        return (Stage("train", 1.0),)

    def set_stage(self, name: str) -> None:
        """Called by the engine before each stage; freeze or unfreeze parts here."""
        self.stage = name

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; each may set its own ``lr``. Default: one group."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def on_step_end(self, out: ModelOutput, batch: Batch) -> None:
        """Called after every optimizer step (e.g. RedCore's relative-advantage update)."""

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        """Called after the training steps of every epoch, before it is validated.

        Args:
            epoch: the epoch just trained, 1-based over the whole fit (all stages).
            epochs: the fit's epoch budget (e.g. DMRNet's warm-up is a share of it).

        Every rank calls it at the same point, so it may use a collective. A resumed fit calls
        it for the epochs it trains only, so state it changes belongs in the model's extra
        state (``get_extra_state``), which checkpoints keep.
        """

    def internals(self) -> dict[str, float]:
        """Method internals to log over time (RedCore's β per modality, ...)."""
        return {}
