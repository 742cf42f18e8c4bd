"""DMRNet (Wei et al., ECCV 2024): probabilistic fusion embedding and hard-combination regulariser.

methods.md §2. Encoder features of absent modalities are zeroed (inputs are zero-filled too),
concatenated, and mapped to a Gaussian embedding (mean and log-variance heads with batch
norm). The head reads a sample in training and the mean in evaluation. The loss is

    L = task + alpha * KL(N(mu, sigma²) || N(0, I)) + beta * (1/B) sum_b task_b * 1[b is hard]

where a sample is hard when its modality combination is one of the hard combinations: either
given (``hard_combinations``, as in the face anti-spoofing code) or mined once, at the end of a
warm-up of ``hcr_warmup_epochs`` epochs, as the ``hcr_top_k`` incomplete non-empty combinations
with the largest mean embedding variance over the warm-up. The audio-visual code compares the
two unimodal combinations (methods.md §2.2) and the face anti-spoofing code's fixed hard
combinations are incomplete too (§2.3); with more modalities every incomplete combination is a
candidate, the full one never. The warm-up counts epochs as the official code does (HCR from
epoch 6 of 100); budgets shorter than three warm-ups get a third of the budget
(``hcr_warmup``). As in the official code the regulariser shares the task head, so it
up-weights the hard samples' task loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.missing import make_pattern
from mmlearn.data.spec import DatasetSpec
from mmlearn.errors import ConfigError
from mmlearn.models._collective import global_means
from mmlearn.models._inputs import build_encoders, columns, encode, pattern_bits
from mmlearn.models._task import as_prediction, output_dim, task_loss
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput
from mmlearn.models.hparams import EncoderHParams, SearchSpace, positive
from mmlearn.models.layers import gaussian_kl, reparameterize
from mmlearn.models.registry import register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DMRNetHParams(EncoderHParams):
    """DMRNet's hyperparameters; defaults are the official CREMA-D values (methods.md §2.2).

    Attributes:
        kl_weight: alpha, the weight of the distribution regulariser.
        hcr_weight: beta, the weight of the hard-combination regulariser.
        hcr_warmup_epochs: epochs observed before the hard combinations are mined (official:
            6, methods.md §2.2); a third of the budget at most when the budget is shorter
            than three warm-ups (see ``hcr_warmup``).
        hcr_top_k: number of hard combinations to mine.
        hard_combinations: fixed hard combinations as pattern names (``"rgb+ir"``); when given,
            nothing is mined.
    """

    kl_weight: float = 1e-3
    hcr_weight: float = 0.2
    hcr_warmup_epochs: int = 6
    hcr_top_k: int = 1
    hard_combinations: tuple[str, ...] = ()

    search_space: ClassVar[SearchSpace] = {
        "kl_weight": {"loguniform": [1e-4, 1e-2]},
        "hcr_weight": {"uniform": [0.0, 0.5]},
        "hidden": {"choice": [64, 96, 128]},
    }

    def _check(self) -> list[str]:
        errors = super()._check() + positive(self, "hcr_top_k", "hcr_warmup_epochs")
        if min(self.kl_weight, self.hcr_weight) < 0:
            errors.append("kl_weight, hcr_weight: must be >= 0")
        return errors


def hcr_warmup(warmup_epochs: int, epochs: int) -> int:
    """The epochs of warm-up before mining in a fit of ``epochs`` epochs.

    The official audio-visual code observes epochs 0-5 of 100 and regularises from epoch 6 on
    (methods.md §2.2, §6 DMRNet 9). Kept fixed, a short budget would mine late or never (18
    epochs at the default leave 12 regularised ones): a budget shorter than three warm-ups gets a
    third of it instead, at least one epoch. The third is the library's rule, not the paper's.
    """
    return max(1, min(warmup_epochs, epochs // 3))


def parse_combination(name: str, modalities: Sequence[str]) -> int:
    """The bitmask of a pattern name such as ``"rgb+ir"`` (order-free).

    Raises:
        ConfigError: if a part is not a modality or the name is empty.
    """
    parts = name.split("+")
    unknown = [p for p in parts if p not in modalities]
    if unknown or not name:
        raise ConfigError(
            f"hard_combinations: {name!r} must be modality names joined by '+' "
            f"(modalities: {', '.join(modalities)})"
        )
    return sum(1 << modalities.index(p) for p in set(parts))


class HardCombinationMiner(nn.Module):
    """Tracks the mean embedding variance per modality combination and names the hard ones.

    Args:
        modalities: modality names, in order (bit m of a combination is modality m).
        warmup_epochs: epochs observed before mining (``hcr_warmup`` shortens it for short
            budgets); mining happens once.
        top_k: combinations to select.
        fixed: bitmasks of fixed hard combinations; when non-empty nothing is mined.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        warmup_epochs: int,
        top_k: int,
        fixed: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.warmup_epochs, self.top_k = warmup_epochs, top_k
        self.mined = bool(fixed)
        self.hard: tuple[int, ...] = tuple(fixed)
        self.variance_sum: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def mean_variance(self) -> dict[int, float]:
        """Mean variance per combination seen during the warm-up."""
        return {bits: self.variance_sum[bits] / n for bits, n in self.count.items()}

    def observe(self, bits: torch.Tensor, variance: torch.Tensor) -> None:
        """Account one training step of the warm-up (nothing once mined).

        Args:
            bits: (B,) combination bitmask per sample.
            variance: (B,) mean embedding variance per sample.
        """
        if self.mined:
            return
        for b, v in zip(bits.tolist(), variance.tolist(), strict=True):
            self.variance_sum[b] = self.variance_sum.get(b, 0.0) + v
            self.count[b] = self.count.get(b, 0) + 1

    def end_epoch(self, epoch: int, epochs: int, device: torch.device) -> None:
        """Mine at the end of the warm-up of a fit of ``epochs`` epochs (``epoch`` 1-based)."""
        if not self.mined and epoch >= hcr_warmup(self.warmup_epochs, epochs):
            self.mine(device)

    def mine(self, device: torch.device) -> None:
        """Select the ``top_k`` incomplete non-empty combinations of largest mean variance.

        The means are over every rank's warm-up samples (``global_means``; every rank must
        call this), so that all ranks mine the same combinations.
        """
        incomplete = range(1, (1 << len(self.modalities)) - 1)  # neither empty nor full
        local = self.mean_variance()
        means, present = global_means(
            torch.tensor(
                [local.get(b, 0.0) for b in incomplete], dtype=torch.float64, device=device
            ),
            torch.tensor([self.count.get(b, 0) for b in incomplete], device=device),
        )
        # Once per fit: reading the means back to the host here costs no step a wait.
        seen = [
            (b, m)
            for b, m, p in zip(incomplete, means.tolist(), present.tolist(), strict=True)
            if p
        ]
        ranked = sorted(seen, key=lambda kv: (-kv[1], kv[0]))
        self.hard = tuple(bits for bits, _ in ranked[: self.top_k])
        self.mined = True
        if not self.hard:
            log.warning(
                "DMRNet saw no incomplete modality combination during its warm-up; the "
                "hard-combination regulariser stays off (train with missing modalities)."
            )

    def is_hard(self, bits: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which samples belong to a hard combination."""
        hard = torch.tensor(self.hard, dtype=bits.dtype, device=bits.device)
        return torch.isin(bits, hard)

    def name(self, bits: int) -> str:
        """The pattern name of a bitmask (``"audio+text"``)."""
        return make_pattern(bits, self.modalities).name

    def get_extra_state(self) -> dict[str, Any]:
        """Warm-up statistics, whether mining is done, and the hard combinations."""
        return {
            "mined": self.mined,
            "hard": list(self.hard),
            "variance_sum": dict(self.variance_sum),
            "count": dict(self.count),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned."""
        self.mined = bool(state["mined"])
        self.hard = tuple(int(b) for b in state["hard"])
        self.variance_sum = {int(k): float(v) for k, v in state["variance_sum"].items()}
        self.count = {int(k): int(v) for k, v in state["count"].items()}


class ProbabilisticEmbedding(nn.Module):
    """Mean and log-variance heads ``BN(Linear(h))``; samples in training, mean in evaluation.

    Args:
        dim: input and embedding size.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))
        self.logvar = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Map (B, D) to ``(e, mu, logvar)``, each (B, D)."""
        mu, logvar = self.mu(h), self.logvar(h)
        return reparameterize(mu, logvar, sample=self.training), mu, logvar


@register("dmrnet", DMRNetHParams)
class DMRNet(MissingModalityModel):
    """DMRNet for any number (>= 2) of named modalities."""

    train_protocol = "uniform_nonempty"

    def __init__(self, spec: DatasetSpec, hp: DMRNetHParams) -> None:
        super().__init__(spec)
        self.hparams = hp
        fixed = [parse_combination(c, spec.names) for c in hp.hard_combinations]
        width = len(spec.names) * hp.hidden
        self.encoders = build_encoders(spec, hp)
        self.embedding = ProbabilisticEmbedding(width)
        self.head = nn.Linear(width, output_dim(spec))
        self.miner = HardCombinationMiner(spec.names, hp.hcr_warmup_epochs, hp.hcr_top_k, fixed)

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        z = encode(self.encoders, batch)
        present = columns(batch, batch.present)
        h = torch.cat([z[m] * present[m][:, None] for m in self.spec.names], dim=-1)  # (B, M*E)
        e, mu, logvar = self.embedding(h)
        extras = {"mu": mu, "logvar": logvar, "bits": pattern_bits(batch.present)}
        return ModelOutput(as_prediction(self.head(e), self.spec), extras)

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:
        """task + alpha * KL + beta * hard-combination task loss (normalised by B)."""
        hp, x = self.hparams, out.extras
        per_sample = task_loss(out.prediction, batch.labels, self.spec, reduction="none")  # (B,)
        task = per_sample.mean()
        kl = gaussian_kl(x["mu"], x["logvar"]).mean()
        hcr = (per_sample * self.miner.is_hard(x["bits"])).sum() / len(per_sample)
        total = task + hp.kl_weight * kl + hp.hcr_weight * hcr
        parts = {"task": task, "kl": kl, "hcr": hcr}
        return LossOutput(total, {k: v.detach() for k, v in parts.items()})

    def on_step_end(self, out: ModelOutput, batch: Batch) -> None:
        """Accumulate per-combination variance during the warm-up (training steps only)."""
        if self.training:
            variance = out.extras["logvar"].detach().exp().mean(dim=-1)  # (B,)
            self.miner.observe(out.extras["bits"], variance)

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        """Mine the hard combinations when the warm-up ends."""
        self.miner.end_epoch(epoch, epochs, self.head.weight.device)

    def internals(self) -> dict[str, float]:
        """``hard/<combination>`` = 1 for each hard combination; warm-up mean variances."""
        miner = self.miner
        out = {f"variance/{miner.name(b)}": v for b, v in miner.mean_variance().items()}
        return out | {f"hard/{miner.name(b)}": 1.0 for b in miner.hard}
