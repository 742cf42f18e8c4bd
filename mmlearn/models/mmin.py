"""MMIN (Zhao et al., ACL 2021): missing modality imagination network. methods.md §4.2.

Stage ``teacher``: an ``early_fusion`` network (encoders, concatenation, classifier) is trained.
Stage ``imagination``: student encoders start from the teacher's; their concatenated
encodings z go through a residual autoencoder whose output is regressed onto the frozen
teacher's encodings, and whose concatenated latents feed the classifier. A second autoencoder
maps the reconstruction back to z (cycle loss):

    L = task + mse_weight * MSE(T, recon) + cycle_weight * MSE(z.detach(), cycle(recon))

MMIN simulates missingness on complete data, and the target of a hidden modality is the
teacher's encoding of its real features. The model therefore draws its own training masks
(uniform over the incomplete sub-patterns of each sample's present modalities) and trains on
complete data by default; a modality absent from the data has no target and is left out of
the reconstruction loss. For modalities the student sees, the official target is the teacher's
encoding of an all-zero input (``present_target="zero_input"``); ``"features"`` uses the
teacher's encoding of the real features instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.models._inputs import build_encoders, columns, drop_to_incomplete, encode
from mmlearn.models._task import as_prediction, output_dim, task_loss
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput, Stage
from mmlearn.models.fusion import ConcatClassifier
from mmlearn.models.hparams import (
    CodeBaseHParams,
    SearchSpace,
    all_positive,
    in_unit_interval,
    positive,
)
from mmlearn.models.layers import MLP, ResidualAE, init_weights_
from mmlearn.models.registry import register


@dataclass(frozen=True)
class MMINHParams(CodeBaseHParams):
    """MMIN's hyperparameters; defaults are the official IEMOCAP values.

    The official encoders are LSTMs for acoustic and visual and a TextCNN for lexical
    features: set ``encoder_overrides`` to ``{<lexical modality>: textcnn}`` to match.

    Attributes:
        ae_layers: autoencoder sizes.
        n_blocks: autoencoder cascade length.
        cls_layers: hidden sizes of the teacher's and the student's classifiers.
        cls_dropout: student classifier dropout.
        teacher_cls_dropout: teacher classifier dropout (``utt_fusion``).
        mse_weight: weight of the imagination loss.
        cycle_weight: weight of the cycle loss.
        teacher_share: share of the epoch budget given to the teacher (official 20 of 80).
        simulate_missing: draw training masks inside the model (official); False trains the
            imagination on the data's own masks only.
        present_target: target of the modalities the student sees.
    """

    ae_layers: tuple[int, ...] = (256, 128, 64)
    n_blocks: int = 5
    cls_layers: tuple[int, ...] = (128, 128)
    cls_dropout: float = 0.5
    teacher_cls_dropout: float = 0.3
    mse_weight: float = 4.0
    cycle_weight: float = 2.0
    teacher_share: float = 0.25
    simulate_missing: bool = True
    present_target: Literal["zero_input", "features"] = "zero_input"

    search_space: ClassVar[SearchSpace] = {
        "mse_weight": {"loguniform": [0.5, 8.0]},
        "cycle_weight": {"loguniform": [0.25, 4.0]},
        "cls_dropout": {"uniform": [0.2, 0.6]},
        "hidden": {"choice": [64, 96, 128]},
    }

    def _check(self) -> list[str]:
        errors = super()._check() + all_positive(self, "ae_layers", "cls_layers")
        errors += positive(self, "n_blocks")
        errors += in_unit_interval(self, "cls_dropout", "teacher_cls_dropout", closed=False)
        errors += in_unit_interval(self, "teacher_share")
        if min(self.mse_weight, self.cycle_weight) < 0:
            errors.append("mse_weight, cycle_weight: must be >= 0")
        return errors


@register("mmin", MMINHParams)
class MMIN(MissingModalityModel):
    """MMIN for any number (>= 2) of named modalities."""

    train_protocol = "complete"

    def __init__(self, spec: DatasetSpec, hp: MMINHParams) -> None:
        self.hparams = hp  # before the base initialiser, which calls stages()
        super().__init__(spec)
        width = len(spec.names) * hp.hidden
        self.teacher = ConcatClassifier(spec, hp, hp.cls_layers, hp.teacher_cls_dropout)
        self.encoders = build_encoders(spec, hp)
        self.imagination = ResidualAE(width, hp.ae_layers, hp.n_blocks)
        self.cycle = ResidualAE(width, hp.ae_layers, hp.n_blocks)
        self.classifier = MLP(
            self.imagination.latent_dim, hp.cls_layers, output_dim(spec), hp.cls_dropout
        )
        init_weights_(self, hp.official_init)
        self.student_initialised = False
        self.set_stage(self.stage)

    def stages(self) -> tuple[Stage, ...]:  # noqa: D102
        share = self.hparams.teacher_share
        return (Stage("teacher", share), Stage("imagination", 1.0 - share))

    def set_stage(self, name: str) -> None:
        """Train the teacher, or freeze it and train the student (initialised from it once)."""
        super().set_stage(name)
        teaching = name == "teacher"
        if not teaching and not self.student_initialised:
            self.encoders.load_state_dict(self.teacher.encoders.state_dict())
            self.student_initialised = True
        self.teacher.requires_grad_(teaching)
        for part in (self.encoders, self.imagination, self.cycle, self.classifier):
            part.requires_grad_(not teaching)
        self.train(self.training)

    def train(self, mode: bool = True) -> MMIN:
        """Set the mode; the frozen teacher stays in eval mode during imagination."""
        super().train(mode)
        if self.stage != "teacher":
            self.teacher.eval()
        return self

    def get_extra_state(self) -> dict[str, Any]:
        """Whether the student encoders were already copied from the teacher."""
        return {"student_initialised": self.student_initialised}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned."""
        self.student_initialised = bool(state["student_initialised"])

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        if self.stage == "teacher":
            return ModelOutput(as_prediction(self.teacher(batch), self.spec))
        seen = batch.present
        if self.training and self.hparams.simulate_missing:
            seen = drop_to_incomplete(batch.present)  # (B, M)
        z = torch.cat(list(encode(self.encoders, batch, seen).values()), dim=-1)  # (B, M*E)
        recon, latents = self.imagination(z)
        extras = {"seen": seen, "z": z, "recon": recon, "cycle": self.cycle(recon).output}
        return ModelOutput(as_prediction(self.classifier(latents), self.spec), extras)

    def target(self, batch: Batch, seen: torch.Tensor) -> torch.Tensor:
        """(B, M*E) the frozen teacher's encodings the reconstruction is regressed onto.

        Hidden (present but unseen) modalities get the encoding of their real features; seen
        ones that of an all-zero input, or of their features with ``present_target="features"``.
        """
        visible = batch.present if self.hparams.present_target == "features" else ~seen
        with torch.no_grad():
            encodings = encode(self.teacher.encoders, batch, visible)
        return torch.cat(list(encodings.values()), dim=-1)

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:
        """Teacher: task loss. Imagination: task + imagination MSE + cycle MSE."""
        task = task_loss(out.prediction, batch.labels, self.spec)
        if self.stage == "teacher":
            return LossOutput(task, {"task": task.detach()})
        x, hp = out.extras, self.hparams
        present = columns(batch, batch.present)
        has_target = torch.cat(
            [present[m][:, None].expand(-1, hp.hidden) for m in self.spec.names], dim=-1
        )  # (B, M*E): a modality absent from the data has no target
        squared = (self.target(batch, x["seen"]) - x["recon"]).pow(2) * has_target
        imagination = squared.sum() / has_target.sum().clamp(min=1)
        cycle = (x["z"].detach() - x["cycle"]).pow(2).mean()
        total = task + hp.mse_weight * imagination + hp.cycle_weight * cycle
        parts = {"task": task, "imagination": imagination, "cycle": cycle}
        return LossOutput(total, {k: v.detach() for k, v in parts.items()})
