"""RedCore maths beyond the contract suite: the weighter (methods.md §1.6), the loss (§1.5)."""

from __future__ import annotations

import copy
import dataclasses
import io
import math
from typing import Any

import pytest
import torch
import torch.distributed as dist

from mmlearn.models import registry
from mmlearn.models._collective import global_means
from mmlearn.models.redcore import (
    RedCore,
    RelativeAdvantageWeighter,
    reconstruction_errors,
    vib_kl,
)
from mmlearn.train.distributed import run_distributed
from tests.tiny_models import TINY
from tests.unit.test_models_contract import all_patterns, make_batch, make_spec

MODS = ("a", "b", "c")


def weighter(**kw: float) -> RelativeAdvantageWeighter:
    args = {"rho": 0.5, "eta": 0.1, "growth": 2.0, "growth_every": 500, "interval": 2}
    return RelativeAdvantageWeighter(MODS, **(args | kw))  # type: ignore[arg-type]


def losses(a: float | None, b: float | None, c: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighter's arguments: (M,) losses and (M,) whether each modality had a sample."""
    values = (a, b, c)
    return (
        torch.tensor([float("nan") if v is None else v for v in values]),
        torch.tensor([v is not None for v in values]),
    )


def tiny_redcore(**kw: object) -> RedCore:
    torch.manual_seed(0)
    model = registry.build("redcore", dict(TINY) | kw, make_spec("vector"))
    assert isinstance(model, RedCore)
    return model


def test_first_step_ema_advantage_eta_and_beta() -> None:
    w = weighter()
    w.update(*losses(1.0, 2.0, 3.0))
    # EMA from 0 with rho = 0.5: [0.5, 1.0, 1.5]; mean 1.0; ra = (1 - L) / 1.
    assert w.ema.tolist() == pytest.approx([0.5, 1.0, 1.5])
    assert w.advantage.tolist() == pytest.approx([0.5, 0.0, -0.5])
    # t = 0 grows eta before the update: 0.1 * 2 = 0.2; beta = 1 - 0.2 * ra, then L2-normalised.
    assert w.eta == pytest.approx(0.2)
    norm = math.sqrt(0.9**2 + 1.0**2 + 1.1**2)
    assert w.beta.tolist() == pytest.approx([0.9 / norm, 1.0 / norm, 1.1 / norm])
    assert w.step == 1


def unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def test_four_steps_by_hand_with_an_absent_modality_and_eta_growth() -> None:
    w = weighter(interval=1, growth_every=2)  # rho 0.5, eta 0.1 doubling at t = 0 and 2
    # t = 0: EMA (.5, 1, 1.5), mean 1, ra (.5, 0, -.5); eta 0.2; beta = unit(1 - 0.2 ra).
    w.update(*losses(1.0, 2.0, 3.0))
    b0 = unit([0.9, 1.0, 1.1])
    assert w.beta.tolist() == pytest.approx(b0)
    # t = 1: EMA (1.75, 1.5, 1.25), mean 1.5, ra (-1/6, 0, 1/6); eta stays 0.2.
    w.update(*losses(3.0, 2.0, 1.0))
    assert w.ema.tolist() == pytest.approx([1.75, 1.5, 1.25])
    assert w.advantage.tolist() == pytest.approx([-1 / 6, 0.0, 1 / 6])
    b1 = unit([b0[0] + 0.2 / 6, b0[1], b0[2] - 0.2 / 6])
    assert w.eta == pytest.approx(0.2) and w.beta.tolist() == pytest.approx(b1)
    # t = 2: the first modality is absent (its EMA stays 1.75); EMA (1.75, 2.75, 1.125),
    # mean 5.625 / 3 = 1.875, ra (1/15, -7/15, 6/15); eta doubles to 0.4.
    w.update(*losses(None, 4.0, 1.0))
    assert w.ema.tolist() == pytest.approx([1.75, 2.75, 1.125])
    assert w.advantage.tolist() == pytest.approx([1 / 15, -7 / 15, 6 / 15])
    b2 = unit([b1[0] - 0.4 / 15, b1[1] + 0.4 * 7 / 15, b1[2] - 0.4 * 6 / 15])
    assert w.eta == pytest.approx(0.4) and w.beta.tolist() == pytest.approx(b2)
    # t = 3: EMA (1.875, 2.75, 3.0625), mean 7.6875 / 3 = 2.5625; eta stays 0.4.
    w.update(*losses(2.0, None, 5.0))
    assert w.ema.tolist() == pytest.approx([1.875, 2.75, 3.0625])
    ra = [(2.5625 - e) / 2.5625 for e in (1.875, 2.75, 3.0625)]
    assert w.advantage.tolist() == pytest.approx(ra)
    assert w.beta.tolist() == pytest.approx(
        unit([b - 0.4 * a for b, a in zip(b2, ra, strict=True)])
    )
    assert w.step == 4


def test_beta_updates_every_interval_steps_only() -> None:
    w = weighter(interval=3)
    seen = []
    for t in range(7):
        w.update(*losses(1.0 + t, 2.0, 3.0 * (t + 1)))
        seen.append(list(w.beta.tolist()))
    changed = [t for t in range(1, 7) if seen[t] != seen[t - 1]]
    assert changed == [3, 6]


def test_eta_grows_at_step_zero_and_every_500_steps() -> None:
    w = weighter(eta=0.1, growth=1.5)
    for _ in range(500):
        w.update(*losses(1.0, 2.0, 3.0))
    assert w.eta == pytest.approx(0.1 * 1.5)  # t = 0 only
    w.update(*losses(1.0, 2.0, 3.0))
    assert w.eta == pytest.approx(0.1 * 1.5**2)  # t = 500


def test_beta_is_clipped_at_floor_before_normalising() -> None:
    w = weighter(eta=4.0, growth=1.0)
    w.update(*losses(1.0, 2.0, 3.0))  # ra = [0.5, 0, -0.5]; beta - 4 ra = [-1, 1, 3]
    norm = math.sqrt(0.1**2 + 1.0 + 3.0**2)
    assert w.beta.tolist() == pytest.approx([0.1 / norm, 1.0 / norm, 3.0 / norm])


def test_absent_modality_keeps_its_ema_and_nothing_becomes_nan() -> None:
    w = weighter()
    w.update(*losses(None, None, None))  # n_m = 0 everywhere: EMA stays 0, ra defined as 0
    assert w.ema.tolist() == [0.0, 0.0, 0.0] and w.advantage.tolist() == [0.0, 0.0, 0.0]
    assert w.beta.tolist() == pytest.approx([1 / math.sqrt(3)] * 3)
    w.update(*losses(1.0, 2.0, 3.0))
    w.update(*losses(None, 2.0, 3.0))
    assert w.ema.tolist()[0] == pytest.approx(0.5)  # (1 - rho) * 0.5 + rho * 0.5
    assert all(math.isfinite(v) for v in w.ema.tolist() + w.beta.tolist() + w.advantage.tolist())


def test_weighter_state_round_trips_through_the_model_state_dict() -> None:
    model = tiny_redcore()
    for values in ((1.0, 2.0, 3.0), (None, 1.0, 4.0)):
        model.weighter.update(*losses(*values))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = tiny_redcore()
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert fresh.weighter.get_extra_state() == model.weighter.get_extra_state()
    assert fresh.internals() == model.internals()


def test_training_loss_updates_the_weighter_on_its_device_evaluation_does_not() -> None:
    model = tiny_redcore()
    spec = make_spec("vector")
    batch = make_batch(spec, torch.tensor([[True, False, True]] * 3))
    model.eval()
    model.loss(model(batch), batch)
    assert model.weighter.step == 0
    model.train()
    model.loss(model(batch), batch)
    w = model.weighter
    assert w.step == 1 and w.ema.dtype == w.beta.dtype == torch.float64
    assert w.ema.tolist()[1] == 0.0  # the second modality had no sample: guarded, not NaN
    assert set(model.internals()) == {
        *(f"beta/{m}" for m in spec.names),
        *(f"advantage/{m}" for m in spec.names),
        "eta",
    }


def test_kl_with_and_without_half() -> None:
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    # Full KL sums: sample 0 -> 1, sample 1 -> 1 - ln 2 (without the ½).
    only_first = torch.tensor([True, False])
    assert vib_kl(mu, logvar, only_first, half=False).item() == pytest.approx(1.0 / 2)
    assert vib_kl(mu, logvar, only_first, half=True).item() == pytest.approx(0.5 / 2)
    both = torch.tensor([True, True])
    expected = (1.0 + 1.0 - math.log(2.0)) / 2
    assert vib_kl(mu, logvar, both, half=False).item() == pytest.approx(expected)


def test_reconstruction_is_summed_over_dims_and_averaged_over_present_samples() -> None:
    gen = {"a": torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]]), "b": torch.zeros(3, 2)}
    target = {"a": torch.tensor([[0.0, 0.0], [5.0, 5.0], [3.0, 1.0]]), "b": torch.ones(3, 2)}
    present = {"a": torch.tensor([True, False, True]), "b": torch.tensor([False] * 3)}
    errors = reconstruction_errors(gen, target, present)
    assert errors["a"].item() == pytest.approx((1 + 4 + 0 + 4) / 2)
    assert errors["b"].item() == 0.0  # no sample: 0, and its beta-weighted term adds nothing


def test_total_is_the_weighted_sum_of_its_parts() -> None:
    model = tiny_redcore(kl_weight=0.01, recon_weight=0.5)
    spec = make_spec("vector")
    batch = make_batch(spec, all_patterns(spec))
    model.train()
    loss = model.loss(model(batch), batch)
    beta = model.weighter.weights()  # step 0 updated beta before weighting
    assert model.weighter.step == 1
    p = {name: v.item() for name, v in loss.parts.items()}
    beta = dict(zip(spec.names, beta.tolist(), strict=True))
    expected = p["task"] + sum(
        p[f"task/{m}"] + p[f"kl/{m}"] + 0.5 * beta[m] * p[f"recon/{m}"] for m in spec.names
    )
    assert loss.total.item() == pytest.approx(expected, rel=1e-5)


def test_kl_half_flag_halves_the_kl_parts() -> None:
    spec = make_spec("vector")
    batch = make_batch(spec, all_patterns(spec))
    parts = {}
    for half in (True, False):
        model = tiny_redcore(kl_half=half)
        model.train()
        torch.manual_seed(1)
        parts[half] = model.loss(model(batch), batch).parts
    for m in spec.names:
        assert parts[False][f"kl/{m}"].item() == pytest.approx(2 * parts[True][f"kl/{m}"].item())


@pytest.mark.parametrize("detach", [True, False])
def test_detach_target_stops_the_gradient_into_the_target_encoder(detach: bool) -> None:
    model = tiny_redcore(detach_target=detach)
    spec = make_spec("vector")
    batch = make_batch(spec, all_patterns(spec))
    model.train()
    recon = model._reconstruction(model(batch))[spec.names[0]]
    own_vib = model.vib[spec.names[0]].muvar.weight
    (grad,) = torch.autograd.grad(recon, own_vib, allow_unused=True)
    assert (grad is None) == detach


@pytest.mark.parametrize("stochastic", [True, False])
def test_stochastic_eval_flag(stochastic: bool) -> None:
    model = tiny_redcore(stochastic_eval=stochastic)
    spec = make_spec("vector")
    batch = make_batch(spec, all_patterns(spec))
    model.eval()
    with torch.no_grad():
        same = torch.equal(model(batch).prediction, model(batch).prediction)
    assert same != stochastic


def test_inner_lr_sets_every_group() -> None:
    groups = tiny_redcore(inner_lr=5e-4).param_groups(1e-2)
    assert {g["lr"] for g in groups} == {5e-4}
    assert {g["name"] for g in groups} >= {"encoder.speech", "generator.words", "head.fused"}
    assert {g["lr"] for g in tiny_redcore().param_groups(1e-2)} == {1e-2}


@pytest.mark.parametrize("official", [False, True])
def test_vib_starts_narrow_and_generators_start_as_their_transitions(official: bool) -> None:
    model = tiny_redcore(official_init=official)
    e = TINY["hidden"]
    for head in model.vib.values():
        assert head.muvar.bias[e:].tolist() == [-6.0] * e  # after either weight init
        assert head.muvar.bias[:e].abs().max().item() == 0.0
    decoders = [d for g in model.generators.values() for d in g.decoders]
    zero = [d[-1].weight.abs().max().item() == 0.0 for d in decoders]
    assert zero == [not official] * len(decoders)
    assert tiny_redcore(vib_logvar_init=0.0).vib[model.spec.names[0]].muvar.bias.eq(0).all()


# Rank 0 has the first modality 3 times and nothing else; rank 1 has the first once and the
# second twice; nobody has the third. Batch sizes differ too.
RANK_PRESENT = (
    [[True, False, False]] * 3 + [[False, False, False]],
    [[True, True, False], [False, True, False]],
)


def _one_rank_training_loss() -> dict[str, Any]:
    """One rank of the world-size-2 test: one training loss on this rank's own batch."""
    rank = dist.get_rank()
    spec = make_spec("vector")
    model = tiny_redcore()  # seeded: the same weights on both ranks
    model.train()
    batch = make_batch(spec, torch.tensor(RANK_PRESENT[rank]), seed=rank)
    out = model(batch)
    errors = model._reconstruction(out)
    has = dict(zip(errors, torch.tensor(RANK_PRESENT[rank]).any(0).tolist(), strict=True))
    local = {m: r.item() if has[m] else None for m, r in errors.items()}
    model.loss(out, batch)
    values, present = global_means(
        torch.tensor([rank + 1.0, float("nan")]), torch.tensor([rank + 1, 0])
    )  # a NaN with count 0 is ignored
    means = [v if p else None for v, p in zip(values.tolist(), present.tolist(), strict=True)]
    return {"local": local, "state": model.weighter.get_extra_state(), "means": means}


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="needs 2 GPUs under nccl"
)
def test_weighter_update_uses_the_global_batch_on_every_rank() -> None:
    ranks = run_distributed(_one_rank_training_loss, 2)
    assert ranks[0]["means"] == ranks[1]["means"]
    assert (
        ranks[0]["means"][0] == pytest.approx((1 * 1 + 2 * 2) / 3) and ranks[0]["means"][1] is None
    )
    a, b = ranks[0]["local"], ranks[1]["local"]
    first, second, third = make_spec("vector").names
    assert a[second] is None and a[third] is None and b[third] is None
    assert a[first] != b[first]  # the local updates would differ
    # Global R_m weighted by the present counts: first 3 + 1, second 0 + 2, third none.
    r = [(3 * a[first] + 1 * b[first]) / 4, b[second], None]
    # Defaults rho = 0.7, eta = 0.1 * 1.5 (grown at t = 0), update at t = 0, floor 0.1.
    ema = [0.7 * r[0], 0.7 * r[1], 0.0]
    mean = sum(ema) / 3
    advantage = [(mean - e) / mean for e in ema]
    clipped = [max(0.1, 1.0 - 0.15 * ra) for ra in advantage]
    norm = math.sqrt(sum(c * c for c in clipped))
    for rank in ranks:
        state = rank["state"]
        assert state == ranks[0]["state"]  # identical on both ranks
        assert state["step"] == 1 and state["eta"] == pytest.approx(0.15)
        assert state["ema"] == pytest.approx(ema, rel=1e-6)
        assert state["advantage"] == pytest.approx(advantage, rel=1e-6)
        assert state["beta"] == pytest.approx([c / norm for c in clipped], rel=1e-6)


def test_bf16_loss_and_gradients_follow_fp32_with_transformer_encoders() -> None:
    """The MOSEI anchor trains RedCore in bf16 for speed; the loss and the gradients it learns
    from must stay those of fp32 (evaluation mode: no dropout or sampling to tell apart)."""
    spec = make_spec("sequence")
    torch.manual_seed(0)
    sizes = {"hidden": 32, "transformer_heads": 4, "transformer_layers": 2, "n_blocks": 3}
    model = registry.build("redcore", sizes | {"ae_layers": (32, 16, 8)}, spec).eval()
    batch = make_batch(spec, all_patterns(spec, copies=8))  # (56, 3), every pattern
    fp32 = model.loss(model(batch), batch).total
    fp32.backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()])
    half = copy.deepcopy(model).to(torch.bfloat16)
    half.zero_grad(set_to_none=True)
    half_batch = dataclasses.replace(
        batch, features={k: v.to(torch.bfloat16) for k, v in batch.features.items()}
    )
    bf16 = half.loss(half(half_batch), half_batch).total
    bf16.backward()
    got = torch.cat([p.grad.float().flatten() for p in half.parameters()])
    assert abs(bf16.item() - fp32.item()) < 0.01 * abs(fp32.item())
    assert torch.nn.functional.cosine_similarity(got, expected, dim=0) > 0.99
