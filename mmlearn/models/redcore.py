"""RedCore (Sun et al., AAAI 2024): VIB encoders, cross-modal generators, relative advantage.

methods.md §1.4-1.6 and §1.9. Each modality is encoded by a backbone and a VIB head into z_m.
A generator per modality maps the concatenated z of all *other* modalities to a stand-in for
z_m; missing modalities are completed with it. A fused head and one head per modality read the
completed features. The reconstruction losses R_m are weighted by beta_m, which a
``RelativeAdvantageWeighter`` moves towards modalities that reconstruct worse than average.

Official bugs are fixed unconditionally: the weighter guards on n_m = 0 instead of R_m == 0
(0/0 = NaN in the official code) and keeps its EMA as plain floats (the official EMA holds the
autograd graph of every step). Behaviours that are design choices default to the fixed form,
and flags restore the official one: ``kl_half=False`` (KL without its ½),
``detach_target=False`` (reconstruction target not detached), ``stochastic_eval=True``
(sampling z at evaluation), ``official_init=True`` with ``vib_logvar_init=0`` (the official
kaiming initialisation, which makes the generator cascade explode at the start, and a VIB
posterior that starts at the prior's unit variance).

As in the official step, a training loss first updates the weighter with the step's R_m and
then weights R_m with the updated beta. Under data parallelism that update uses R_m over the
global batch (each rank's R_m weighted by its n_m, ``global_errors``), so every rank holds the
same weighter state.

One deviation is kept: the official step clips each sub-network's gradient norm at 1.0
separately (methods.md §1.5); here the engine clips the global norm of all gradients at
``train.grad_clip`` (1.0) through DeepSpeed, which owns the gradients between backward and
step (deepspeed 0.19). At ZeRO 0 ``param.grad`` is there to clip (fp32: ``clip_fp32_gradients``
in ``engine._take_model_step``; bf16: ``FP16_UnfusedOptimizer.step`` clips fp32 copies by one
global norm). At ZeRO 1-2 backward reduces the gradients into each rank's flat partition and
clears ``param.grad``; the partition is scaled by one global norm in ``optimizer.step``
(``stage_1_and_2.unscale_and_clip_grads``), and per-parameter access
(``deepspeed.utils.safe_get_full_grad``) costs a collective per parameter per step. The
official rule would thus hold at ZeRO 0 only, so results would depend on the ZeRO stage. The
global norm is never smaller than a sub-network's, so the global rule clips at least as often
and scales every network alike; Adam normalises either scale per parameter, so the two rules
differ through its moment estimates when clipping is active.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.models._collective import global_means
from mmlearn.models._inputs import build_encoders, columns, encode
from mmlearn.models._task import as_prediction, named_groups, output_dim, task_loss
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput
from mmlearn.models.hparams import (
    CodeBaseHParams,
    SearchSpace,
    all_positive,
    in_unit_interval,
    positive,
)
from mmlearn.models.layers import MLP, ResidualAE, SequenceKind, VIBHead, gaussian_kl, init_weights_
from mmlearn.models.registry import register


@dataclass(frozen=True)
class RedCoreHParams(CodeBaseHParams):
    """RedCore's hyperparameters; defaults are the official IEMOCAP values (methods.md §1.7).

    Attributes:
        sequence_encoder: the official encoder is the VIB Transformer.
        ae_layers: generator autoencoder sizes.
        n_blocks: generator cascade length.
        cls_layers: hidden sizes of the fused and unimodal heads.
        cls_dropout: head dropout.
        kl_weight: lambda on the VIB KL, averaged over the batch ("lambda1").
        kl_half: use the true Gaussian KL (with ½); False reproduces the official KL without it.
        vib_logvar_init: initial bias of the VIB log-variance outputs, applied after the weight
            initialisation. At -6 the posterior starts at std e^-3 ~ 0.05, so z starts as the
            encoding, and the KL decides how much noise to admit. At 0 (the official value:
            ``init_net`` zeroes every bias) it starts at the prior's std 1, which swamps mu
            (RMS ~0.3-1 at initialisation): heads read noise and R_m regresses onto it.
        recon_weight: w_mse on the beta-weighted reconstruction losses (official 0.15; the
            scripts' overridden 4.0 is a sweep point).
        detach_target: stop the reconstruction gradient at the target z_m; False reproduces
            the official gradient into the target encoder.
        stochastic_eval: sample z at evaluation as the official code does.
        ema_rho: weight of the new value in the EMA of R_m.
        eta: initial outer step size eta_0 of the beta update.
        eta_growth: factor applied to eta at every ``eta_growth_every``-th step (step 0 too).
        eta_growth_every: period of the eta growth in steps.
        beta_interval: beta is updated every this many steps (ii).
        beta_floor: lower clip of beta before the L2 normalisation.
        inner_lr: learning rate of the network parameters (the inner problem); None uses the
            engine's learning rate (official: Adam, 2e-4).
    """

    sequence_encoder: SequenceKind = "transformer"
    ae_layers: tuple[int, ...] = (256, 128, 64)
    n_blocks: int = 5
    cls_layers: tuple[int, ...] = (128, 128)
    cls_dropout: float = 0.5
    kl_weight: float = 0.0008
    kl_half: bool = True
    vib_logvar_init: float = -6.0
    recon_weight: float = 0.15
    detach_target: bool = True
    stochastic_eval: bool = False
    ema_rho: float = 0.7
    eta: float = 0.1
    eta_growth: float = 1.5
    eta_growth_every: int = 500
    beta_interval: int = 3
    beta_floor: float = 0.1
    inner_lr: float | None = None

    search_space: ClassVar[SearchSpace] = {
        "kl_weight": {"loguniform": [1e-4, 1e-2]},
        "recon_weight": {"loguniform": [0.05, 4.0]},
        "ema_rho": {"uniform": [0.5, 0.95]},
        "eta": {"loguniform": [1e-3, 0.5]},
        "eta_growth": {"uniform": [1.0, 2.0]},
        "inner_lr": {"loguniform": [5e-5, 1e-3]},
        "hidden": {"choice": [64, 96, 128]},
    }

    def _check(self) -> list[str]:
        errors = super()._check() + all_positive(self, "ae_layers", "cls_layers")
        errors += positive(self, "n_blocks", "eta_growth_every", "beta_interval", "eta")
        errors += positive(self, "ema_rho", "eta_growth", "beta_floor")
        errors += in_unit_interval(self, "cls_dropout", closed=False)
        errors += in_unit_interval(self, "ema_rho")
        if self.kl_weight < 0 or self.recon_weight < 0:
            errors.append("kl_weight, recon_weight: must be >= 0")
        if self.inner_lr is not None and self.inner_lr <= 0:
            errors.append(f"inner_lr: must be > 0 or null, but got {self.inner_lr!r}")
        return errors


class RelativeAdvantageWeighter(nn.Module):
    """The outer update of RedCore's bi-level optimisation (methods.md §1.6).

    Per training step, with R_m the reconstruction loss of modality m (None when no sample of
    the batch has m): ``Lbar_m <- (1 - rho) Lbar_m + rho R_m`` (unchanged when R_m is None),
    ``ra_m = (mean(Lbar) - Lbar_m) / mean(Lbar)``; at steps t with ``t % growth_every == 0``
    (t = 0 included) ``eta <- eta * growth``; at steps with ``t % interval == 0``
    ``beta <- normalise(max(floor, beta - eta * ra))``. beta starts at 1 (not normalised).
    Everything is held as floats and checkpointed through ``get_extra_state``.

    Args:
        modalities: modality names, in order.
        rho: EMA weight of the new value.
        eta: initial step size.
        growth: eta growth factor.
        growth_every: eta growth period in steps.
        interval: beta update period in steps.
        floor: lower clip of beta before normalisation.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        rho: float = 0.7,
        eta: float = 0.1,
        growth: float = 1.5,
        growth_every: int = 500,
        interval: int = 3,
        floor: float = 0.1,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.rho, self.growth, self.growth_every = rho, growth, growth_every
        self.interval, self.floor = interval, floor
        self.eta = eta
        self.step = 0
        self.ema = [0.0] * len(self.modalities)
        self.beta = [1.0] * len(self.modalities)
        self.advantage = [0.0] * len(self.modalities)

    def weights(self) -> dict[str, float]:
        """The current beta per modality."""
        return dict(zip(self.modalities, self.beta, strict=True))

    def update(self, losses: Mapping[str, float | None]) -> None:
        """One step of the EMA, relative advantage, eta growth and (every interval) beta.

        Args:
            losses: modality -> this step's reconstruction loss, None if m had no sample.
        """
        for i, name in enumerate(self.modalities):
            value = losses[name]
            new = self.ema[i] if value is None else float(value)
            self.ema[i] = (1.0 - self.rho) * self.ema[i] + self.rho * new
        mean = sum(self.ema) / len(self.ema)
        self.advantage = [(mean - e) / mean if mean > 0 else 0.0 for e in self.ema]
        if self.step % self.growth_every == 0:
            self.eta *= self.growth
        if self.step % self.interval == 0:
            clipped = [
                max(self.floor, b - self.eta * a)
                for b, a in zip(self.beta, self.advantage, strict=True)
            ]
            norm = math.sqrt(sum(b * b for b in clipped))
            self.beta = [b / norm for b in clipped]
        self.step += 1

    def get_extra_state(self) -> dict[str, Any]:
        """The mutable state: EMA, beta, advantage, eta and step."""
        return {
            "ema": list(self.ema),
            "beta": list(self.beta),
            "advantage": list(self.advantage),
            "eta": self.eta,
            "step": self.step,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned."""
        self.ema = [float(v) for v in state["ema"]]
        self.beta = [float(v) for v in state["beta"]]
        self.advantage = [float(v) for v in state["advantage"]]
        self.eta = float(state["eta"])
        self.step = int(state["step"])


def reconstruction_errors(
    generated: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    present: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor | None]:
    """R_m = (1 / n_m) sum over present samples of ||gen_m - z_m||² (None when n_m = 0).

    Args:
        generated: name -> (B, E) generator outputs.
        target: name -> (B, E) the sampled z_m (detach it before, if wanted).
        present: name -> (B,) bool.

    Returns:
        name -> scalar, or None where the modality has no sample in the batch.
    """
    out: dict[str, torch.Tensor | None] = {}
    for name, gen in generated.items():
        keep = present[name]
        n = int(keep.sum())
        out[name] = (gen[keep] - target[name][keep]).pow(2).sum() / n if n else None
    return out


def global_errors(
    errors: Mapping[str, torch.Tensor | None], present: Mapping[str, torch.Tensor]
) -> dict[str, float | None]:
    """Each R_m over the global batch, as floats: what the weighter is updated with.

    Under data parallelism every rank holds R_m of its own batch; the global R_m weights them
    by the ranks' present counts n_m, so every rank applies the same update. It is None where
    no rank has a sample of m (one rank alone: its own R_m).

    Args:
        errors: name -> scalar R_m of this rank, or None where n_m = 0 here.
        present: name -> (B,) bool.
    """
    names = list(errors)
    device = present[names[0]].device
    values = torch.stack(
        [
            torch.zeros((), device=device) if r is None else r.detach().float()
            for r in errors.values()
        ]
    )  # (M,)
    counts = torch.stack([present[m].sum() for m in names])  # (M,)
    return dict(zip(names, global_means(values, counts), strict=True))


def vib_kl(
    mu: torch.Tensor, logvar: torch.Tensor, present: torch.Tensor, half: bool
) -> torch.Tensor:
    """RedCore's KL_m without its weight: summed over present samples, divided by the batch B.

    Args:
        mu: (B, E).
        logvar: (B, E).
        present: (B,) bool.
        half: include the ½ of the true KL.
    """
    return gaussian_kl(mu, logvar, half)[present].sum() / len(present)


@register("redcore", RedCoreHParams)
class RedCore(MissingModalityModel):
    """RedCore for any number (>= 2) of named modalities."""

    train_protocol = "per_epoch"

    def __init__(self, spec: DatasetSpec, hp: RedCoreHParams) -> None:
        super().__init__(spec)
        self.hparams = hp
        names, e = spec.names, hp.hidden
        out = output_dim(spec)
        self.backbones = build_encoders(spec, hp)
        self.vib = nn.ModuleDict({m: VIBHead(e, e, hp.stochastic_eval) for m in names})
        self.generators = nn.ModuleDict(
            {m: ResidualAE((len(names) - 1) * e, hp.ae_layers, hp.n_blocks, e) for m in names}
        )
        self.fused_head = MLP(len(names) * e, hp.cls_layers, out, hp.cls_dropout)
        self.unimodal_heads = nn.ModuleDict(
            {m: MLP(e, hp.cls_layers, out, hp.cls_dropout) for m in names}
        )
        init_weights_(self, hp.official_init)
        for head in self.vib.values():
            head.init_logvar_(hp.vib_logvar_init)
        self.weighter = RelativeAdvantageWeighter(
            names,
            hp.ema_rho,
            hp.eta,
            hp.eta_growth,
            hp.eta_growth_every,
            hp.beta_interval,
            hp.beta_floor,
        )

    def forward(self, batch: Batch) -> ModelOutput:  # noqa: D102
        names = self.spec.names
        present = columns(batch, batch.present)
        h = encode(self.backbones, batch)  # name -> (B, E)
        z, mu, logvar = {}, {}, {}
        for m in names:
            z[m], mu[m], logvar[m] = self.vib[m](h[m])
        generated = {
            m: self.generators[m](torch.cat([z[o] for o in names if o != m], dim=-1)).output
            for m in names
        }  # name -> (B, E)
        completed = {m: torch.where(present[m][:, None], z[m], generated[m]) for m in names}
        fused = self.fused_head(torch.cat([completed[m] for m in names], dim=-1))  # (B, K)
        unimodal = {
            m: as_prediction(self.unimodal_heads[m](completed[m]), self.spec) for m in names
        }
        extras = {
            "z": z,
            "mu": mu,
            "logvar": logvar,
            "generated": generated,
            "present": present,
            "unimodal": unimodal,
        }
        return ModelOutput(as_prediction(fused, self.spec), extras)

    def _reconstruction(self, out: ModelOutput) -> dict[str, torch.Tensor | None]:
        z = out.extras["z"]
        target = {m: t.detach() for m, t in z.items()} if self.hparams.detach_target else z
        return reconstruction_errors(out.extras["generated"], target, out.extras["present"])

    def loss(self, out: ModelOutput, batch: Batch) -> LossOutput:
        """§1.5: task + unimodal task + KL + w_mse * sum_m beta_m R_m.

        In training, the weighter first takes this step's R_m (as detached floats, over the
        global batch under data parallelism), so beta is the one the official code uses in the
        same step (§1.6: update, then weight).
        """
        hp = self.hparams
        x = out.extras
        errors = self._reconstruction(out)
        if self.training:
            self.weighter.update(global_errors(errors, x["present"]))
        beta = self.weighter.weights()
        total = task_loss(out.prediction, batch.labels, self.spec)
        terms = {"task": total}
        for m, r in errors.items():
            task_m = task_loss(x["unimodal"][m], batch.labels, self.spec)
            kl_m = hp.kl_weight * vib_kl(x["mu"][m], x["logvar"][m], x["present"][m], hp.kl_half)
            total = total + task_m + kl_m
            terms |= {f"task/{m}": task_m, f"kl/{m}": kl_m}
            if r is not None:
                total = total + hp.recon_weight * beta[m] * r
                terms[f"recon/{m}"] = r
        values = torch.stack([t.detach().float() for t in terms.values()]).tolist()  # one sync
        return LossOutput(total, dict(zip(terms, values, strict=True)))

    def internals(self) -> dict[str, float]:
        """beta and relative advantage per modality, and the current eta."""
        w = self.weighter
        out = {f"beta/{m}": b for m, b in zip(w.modalities, w.beta, strict=True)}
        out |= {f"advantage/{m}": a for m, a in zip(w.modalities, w.advantage, strict=True)}
        return out | {"eta": w.eta}

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """One group per official sub-network, all at ``inner_lr`` (or ``lr`` when unset)."""
        rate = lr if self.hparams.inner_lr is None else self.hparams.inner_lr
        parts: dict[str, nn.Module | list[nn.Module]] = {}
        for m in self.spec.names:
            parts[f"encoder.{m}"] = [self.backbones[m], self.vib[m]]
            parts[f"generator.{m}"] = self.generators[m]
            parts[f"head.{m}"] = self.unimodal_heads[m]
        parts["head.fused"] = self.fused_head
        return named_groups(parts, rate)
