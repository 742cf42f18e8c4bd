"""RedCore (Sun et al., AAAI 2024): VIB encoders, cross-modal generators, relative advantage.

methods.md §1.4-1.6 and §1.9. Each modality is encoded by a backbone and a VIB head into z_m.
A generator per modality maps the concatenated z of all *other* modalities to a stand-in for
z_m; missing modalities are completed with it. A fused head and one head per modality read the
completed features. The reconstruction losses R_m are weighted by beta_m, which a
``RelativeAdvantageWeighter`` moves towards modalities that reconstruct worse than average.

Official bugs are fixed unconditionally: the weighter guards on n_m = 0 instead of R_m == 0
(0/0 = NaN in the official code) and keeps its EMA detached (the official EMA holds the
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

    Per training step, with R_m the reconstruction loss of modality m (absent when no sample of
    the batch has m): ``Lbar_m <- (1 - rho) Lbar_m + rho R_m`` (unchanged when R_m is absent),
    ``ra_m = (mean(Lbar) - Lbar_m) / mean(Lbar)``; at steps t with ``t % growth_every == 0``
    (t = 0 included) ``eta <- eta * growth``; at steps with ``t % interval == 0``
    ``beta <- normalise(max(floor, beta - eta * ra))``. beta starts at 1 (not normalised).

    EMA, advantage and beta are float64 tensors on the device of the losses, updated with
    tensor operations only: the update never waits for the device (on a GPU a float read per
    step would stall the host every step). eta and the step count are host numbers, because
    they depend on the step only. Everything is checkpointed through ``get_extra_state``.

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
        m = len(self.modalities)
        self.ema = torch.zeros(m, dtype=torch.float64)  # (M,)
        self.beta = torch.ones(m, dtype=torch.float64)  # (M,)
        self.advantage = torch.zeros(m, dtype=torch.float64)  # (M,)

    def weights(self) -> torch.Tensor:
        """The current beta, (M,) in the order of ``modalities``."""
        return self.beta

    def update(self, losses: torch.Tensor, has: torch.Tensor) -> None:
        """One step of the EMA, relative advantage, eta growth and (every interval) beta.

        Args:
            losses: (M,) this step's reconstruction loss per modality (ignored where not has).
            has: (M,) bool, whether the step had a sample of the modality.
        """
        if self.ema.device != losses.device:
            self.ema, self.beta, self.advantage = (
                t.to(losses.device) for t in (self.ema, self.beta, self.advantage)
            )
        new = torch.where(has, losses.detach().to(torch.float64), self.ema)  # (M,)
        self.ema = (1.0 - self.rho) * self.ema + self.rho * new
        mean = self.ema.mean()
        self.advantage = torch.where(
            mean > 0, (mean - self.ema) / mean.clamp(min=torch.finfo(torch.float64).tiny), 0.0
        )
        if self.step % self.growth_every == 0:
            self.eta *= self.growth
        if self.step % self.interval == 0:
            clipped = (self.beta - self.eta * self.advantage).clamp(min=self.floor)
            self.beta = clipped / clipped.norm()
        self.step += 1

    def get_extra_state(self) -> dict[str, Any]:
        """The mutable state: EMA, beta, advantage (as lists of floats), eta and step."""
        return {
            "ema": self.ema.tolist(),
            "beta": self.beta.tolist(),
            "advantage": self.advantage.tolist(),
            "eta": self.eta,
            "step": self.step,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned."""
        device = self.ema.device
        for name in ("ema", "beta", "advantage"):
            setattr(self, name, torch.tensor(state[name], dtype=torch.float64, device=device))
        self.eta = float(state["eta"])
        self.step = int(state["step"])


def reconstruction_errors(
    generated: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    present: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """R_m = (1 / n_m) sum over present samples of ||gen_m - z_m||² (0 when n_m = 0).

    Masked sums rather than boolean indexing: indexing by a mask has a data-dependent shape,
    which makes a GPU wait for the mask's count.

    Args:
        generated: name -> (B, E) generator outputs.
        target: name -> (B, E) the sampled z_m (detach it before, if wanted).
        present: name -> (B,) bool.

    Returns:
        name -> scalar; 0 where the modality has no sample in the batch.
    """
    out: dict[str, torch.Tensor] = {}
    for name, gen in generated.items():
        keep = present[name]  # (B,)
        squared = (gen - target[name]).pow(2).sum(dim=-1)  # (B,)
        total = torch.where(keep, squared, squared.new_zeros(())).sum()
        out[name] = total / keep.sum().clamp(min=1)
    return out


def global_errors(
    errors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each R_m over the global batch: what the weighter is updated with.

    Under data parallelism every rank holds R_m of its own batch; the global R_m weights them
    by the ranks' present counts n_m, so every rank applies the same update. A modality has a
    global R_m where some rank has a sample of it (one rank alone: its own R_m).

    Args:
        errors: name -> scalar R_m of this rank (ignored where n_m = 0 here).
        present: name -> (B,) bool.

    Returns:
        (M,) float global R_m, and (M,) bool whether any rank had a sample of m.
    """
    names = list(errors)
    values = torch.stack([errors[m].detach().float() for m in names])  # (M,)
    counts = torch.stack([present[m].sum() for m in names])  # (M,)
    return global_means(values, counts)


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
    kl = gaussian_kl(mu, logvar, half)  # (B,)
    return torch.where(present, kl, kl.new_zeros(())).sum() / len(present)


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

        In training, the weighter first takes this step's R_m (detached, over the
        global batch under data parallelism), so beta is the one the official code uses in the
        same step (§1.6: update, then weight).
        """
        hp = self.hparams
        x = out.extras
        errors = self._reconstruction(out)
        if self.training:
            self.weighter.update(*global_errors(errors, x["present"]))
        beta = self.weighter.weights()  # (M,)
        total = task_loss(out.prediction, batch.labels, self.spec)
        terms = {"task": total}
        for i, (m, r) in enumerate(errors.items()):
            task_m = task_loss(x["unimodal"][m], batch.labels, self.spec)
            kl_m = hp.kl_weight * vib_kl(x["mu"][m], x["logvar"][m], x["present"][m], hp.kl_half)
            recon_m = hp.recon_weight * beta[i].to(r.dtype) * r  # 0 where m has no sample
            total = total + task_m + kl_m + recon_m
            terms |= {f"task/{m}": task_m, f"kl/{m}": kl_m, f"recon/{m}": r}
        return LossOutput(total, {name: t.detach() for name, t in terms.items()})

    def internals(self) -> dict[str, float]:
        """beta and relative advantage per modality, and the current eta."""
        w = self.weighter
        beta, advantage = w.beta.tolist(), w.advantage.tolist()
        out = {f"beta/{m}": b for m, b in zip(w.modalities, beta, strict=True)}
        out |= {f"advantage/{m}": a for m, a in zip(w.modalities, advantage, strict=True)}
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
