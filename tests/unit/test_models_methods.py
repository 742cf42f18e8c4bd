"""DMRNet, UME-MMA and MMIN behaviour beyond the contract suite."""

from __future__ import annotations

import sys
import warnings
from collections import Counter

import pytest
import torch

from mmlearn.errors import ConfigError
from mmlearn.models import ExperimentalWarning, registry
from mmlearn.models._inputs import drop_independent, drop_to_incomplete, encode, pattern_bits
from mmlearn.models.dmrnet import DMRNet, HardCombinationMiner, hcr_warmup, parse_combination
from mmlearn.models.hparams import CodeBaseHParams
from mmlearn.models.mmin import MMIN
from mmlearn.models.ume_mma import UMEMMA
from tests.tiny_models import TINY
from tests.unit.test_models_contract import all_patterns, make_batch, make_spec

SPEC = make_spec("vector")
NAMES = SPEC.names


def build(name: str, **kw: object) -> torch.nn.Module:
    fields = registry.hparams_class(name).__dataclass_fields__
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return registry.build(name, {k: v for k, v in TINY.items() if k in fields} | kw, SPEC)


# DMRNet ---------------------------------------------------------------------------------------


CPU = torch.device("cpu")


def test_miner_picks_the_incomplete_combination_of_highest_mean_variance_after_warmup() -> None:
    miner = HardCombinationMiner(NAMES, warmup_epochs=2, top_k=1)
    miner.observe(torch.tensor([1, 2, 7]), torch.tensor([1.0, 3.0, 9.0]))
    miner.end_epoch(1, epochs=20, device=CPU)
    assert miner.hard == () and not miner.mined
    miner.observe(torch.tensor([1, 2, 2, 7]), torch.tensor([5.0, 1.0, 2.0, 8.0]))
    miner.end_epoch(2, epochs=20, device=CPU)
    # means: bits 1 -> 3.0, bits 2 -> 2.0; the full combination 7 (8.5) is never hard
    assert miner.hard == (1,) and miner.mined
    assert miner.is_hard(torch.tensor([1, 2, 3, 7])).tolist() == [True, False, False, False]
    miner.observe(torch.tensor([2]), torch.tensor([100.0]))  # mined once, never again
    miner.end_epoch(3, epochs=20, device=CPU)
    assert miner.hard == (1,)


def test_only_the_full_combination_seen_mines_nothing() -> None:
    miner = HardCombinationMiner(NAMES, warmup_epochs=1, top_k=2)
    miner.observe(torch.tensor([7, 7]), torch.tensor([1.0, 2.0]))
    miner.end_epoch(1, epochs=20, device=CPU)
    assert miner.mined and miner.hard == ()


@pytest.mark.parametrize(
    ("epochs", "warmup"), [(100, 6), (18, 6), (17, 5), (20, 6), (9, 3), (5, 1), (2, 1), (1, 1)]
)
def test_hcr_warmup_is_six_epochs_or_a_third_of_a_short_budget(epochs: int, warmup: int) -> None:
    assert hcr_warmup(6, epochs) == warmup


def test_miner_state_round_trip_and_fixed_mode() -> None:
    miner = HardCombinationMiner(NAMES, warmup_epochs=5, top_k=2)
    miner.observe(torch.tensor([1, 6]), torch.tensor([1.0, 2.0]))
    fresh = HardCombinationMiner(NAMES, warmup_epochs=5, top_k=2)
    fresh.set_extra_state(miner.get_extra_state())
    assert fresh.get_extra_state() == miner.get_extra_state()
    miner.end_epoch(5, epochs=20, device=CPU)
    fresh.set_extra_state(miner.get_extra_state())
    assert fresh.mined and fresh.hard == (6, 1)
    fixed = HardCombinationMiner(NAMES, warmup_epochs=1, top_k=1, fixed=[5])
    fixed.observe(torch.tensor([1]), torch.tensor([9.0]))
    fixed.end_epoch(1, epochs=20, device=CPU)
    assert fixed.hard == (5,)


def test_parse_combination() -> None:
    assert parse_combination("words+speech", NAMES) == 0b101
    with pytest.raises(ConfigError, match="hard_combinations: 'speech\\+text'"):
        parse_combination("speech+text", NAMES)


def test_hcr_is_the_task_loss_of_hard_samples_over_the_batch() -> None:
    model = build("dmrnet", hard_combinations=("speech",), hcr_weight=0.5, kl_weight=0.0)
    assert isinstance(model, DMRNet)
    batch = make_batch(SPEC, all_patterns(SPEC))
    model.eval()
    out = model(batch)
    per_sample = torch.nn.functional.cross_entropy(out.prediction, batch.labels, reduction="none")
    speech_only = pattern_bits(batch.present) == 1
    loss = model.loss(out, batch)
    assert loss.parts["hcr"] == pytest.approx((per_sample * speech_only).sum().item() / 14)
    assert loss.total.item() == pytest.approx(loss.parts["task"] + 0.5 * loss.parts["hcr"])
    assert model.internals()["hard/speech"] == 1.0


def test_dmrnet_observes_training_steps_only_and_mines_at_the_end_of_its_warmup() -> None:
    model = build("dmrnet", hcr_warmup_epochs=2)
    batch = make_batch(SPEC, all_patterns(SPEC))
    model.eval()
    model.on_step_end(model(batch), batch)
    assert model.miner.count == {}
    model.train()
    for epoch in (1, 2):
        model.on_step_end(model(batch), batch)
        assert model.miner.hard == ()
        model.on_epoch_end(epoch, epochs=20)
    assert len(model.miner.hard) == 1 and 0 < model.miner.hard[0] < 0b111
    assert sum(k.startswith("hard/") for k in model.internals()) == 1


# UME-MMA --------------------------------------------------------------------------------------


def test_drop_independent_keeps_a_present_modality() -> None:
    torch.manual_seed(0)
    present = all_patterns(SPEC, copies=200)
    seen = drop_independent(present, 0.6)
    assert not (seen & ~present).any()
    assert seen.any(dim=1).all()
    full = present.all(dim=1)
    dropped = (~seen[full]).float().mean().item()
    assert 0.3 < dropped < 0.6  # p = 0.6, lowered by the redraw of empty rows


def test_drop_independent_draws_the_law_of_redrawing_empty_rows() -> None:
    # Two present modalities, p = 0.5: {a, b}, {a}, {b} each 0.25 before the redraw, and the
    # redraw of the empty 0.25 spreads it evenly, so each kept subset has probability 1/3.
    torch.manual_seed(0)
    present = torch.tensor([[True, True, False]] * 6000 + [[False] * 3] * 3)
    seen = drop_independent(present, 0.5)
    counts = Counter(pattern_bits(seen[:6000]).tolist())
    assert set(counts) == {1, 2, 3}
    assert all(abs(c / 6000 - 1 / 3) < 0.02 for c in counts.values())
    assert not seen[6000:].any()  # nothing present stays empty


def test_ume_mma_stages_drop_and_learning_rates() -> None:
    model = build("ume_mma", p_drop=0.5, encoder_lr_scale=0.1)
    assert isinstance(model, UMEMMA)
    assert [s.name for s in model.stages()] == ["unimodal", "adapt"]
    assert {g["lr"] for g in model.param_groups(1e-3)} == {1e-3}
    batch = make_batch(SPEC, all_patterns(SPEC))
    model.train()
    torch.manual_seed(0)
    assert torch.equal(model(batch).extras["seen"]["speech"], batch.present[:, 0])
    model.set_stage("adapt")
    lrs = {g["name"]: g["lr"] for g in model.param_groups(1e-3)}
    assert lrs == {"encoders": pytest.approx(1e-4), "heads": 1e-3}
    torch.manual_seed(0)
    out = model(batch)
    seen = out.extras["seen"]
    assert sum((seen[m] != batch.present[:, i]).sum() for i, m in enumerate(NAMES)) > 0
    expected = sum(out.extras["logits"][m] * seen[m][:, None] for m in NAMES)
    count = sum(seen[m].float() for m in NAMES)[:, None]
    torch.testing.assert_close(out.prediction, expected / count)
    assert "task" in model.loss(out, batch).parts


def test_ume_is_experimental() -> None:
    with pytest.warns(ExperimentalWarning, match="no official code"):
        registry.build("ume", {"hidden": 8}, SPEC)


# MMIN -----------------------------------------------------------------------------------------


def test_drop_to_incomplete_draws_every_proper_subpattern() -> None:
    torch.manual_seed(0)
    present = torch.tensor([[True, True, True]] * 600 + [[True, False, False]] * 5)
    seen = drop_to_incomplete(present)
    counts = Counter(pattern_bits(seen[:600]).tolist())
    assert set(counts) == {1, 2, 3, 4, 5, 6}
    assert min(counts.values()) > 60
    assert torch.equal(seen[600:], present[600:])


def mmin_in_imagination(**kw: object) -> MMIN:
    model = build("mmin", **kw)
    assert isinstance(model, MMIN)
    assert all(p.requires_grad for p in model.teacher.parameters())
    model.set_stage("imagination")
    return model


def test_student_starts_from_the_teacher_once_and_teacher_is_frozen() -> None:
    model = mmin_in_imagination()
    for m in NAMES:
        for a, b in zip(
            model.encoders[m].parameters(), model.teacher.encoders[m].parameters(), strict=True
        ):
            assert torch.equal(a, b)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training and model.classifier.training
    with torch.no_grad():
        next(iter(model.encoders.parameters())).add_(1.0)
    state = model.state_dict()
    resumed = mmin_in_imagination()
    resumed.load_state_dict(state)
    resumed.set_stage("imagination")  # must not copy the teacher again
    torch.testing.assert_close(resumed.state_dict(), state)


@pytest.mark.parametrize("mode", ["zero_input", "features"])
def test_imagination_target(mode: str) -> None:
    model = mmin_in_imagination(present_target=mode)
    batch = make_batch(SPEC, torch.tensor([[True, True, False]] * 3))
    seen = torch.tensor([[True, False, False]] * 3)  # speech seen, face hidden, words absent
    target = model.target(batch, seen).split(TINY["hidden"], dim=-1)
    real = encode(model.teacher.encoders, batch)
    zeros = encode(model.teacher.encoders, batch, torch.zeros_like(seen))
    torch.testing.assert_close(target[1], real["face"])
    torch.testing.assert_close(target[0], real["speech"] if mode == "features" else zeros["speech"])


def test_modalities_absent_from_the_data_have_no_imagination_target() -> None:
    model = mmin_in_imagination(simulate_missing=False)
    batch = make_batch(SPEC, torch.tensor([[True, True, False]] * 3))
    model.eval()
    out = model(batch)
    base = model.loss(out, batch).parts["imagination"]
    out.extras["recon"][:, 2 * TINY["hidden"] :] += 50.0  # the absent modality's block
    assert model.loss(out, batch).parts["imagination"] == pytest.approx(base)


# Initialisation -------------------------------------------------------------------------------

CODE_BASE = [n for n in registry.names() if issubclass(registry.hparams_class(n), CodeBaseHParams)]


def test_the_code_base_methods_are_those_with_the_official_init() -> None:
    assert set(CODE_BASE) == {"early_fusion", "late_fusion", "modality_dropout", "mmin", "redcore"}


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("name", CODE_BASE)
def test_official_init_flag_picks_the_initialisation(
    name: str, official: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[type, bool]] = []
    module = sys.modules[registry._entry(name).builder.__module__]
    monkeypatch.setattr(
        module, "init_weights_", lambda m, official: calls.append((type(m), official))
    )
    model = build(name, official_init=official)
    assert calls == [(type(model), official)]  # once, over the whole model, after building


@pytest.mark.parametrize("official", [False, True])
def test_mmin_cascade_blocks_start_at_zero_unless_official(official: bool) -> None:
    model = build("mmin", official_init=official)
    decoders = [d for ae in (model.imagination, model.cycle) for d in ae.decoders]
    zero = [d[-1].weight.abs().max().item() == 0.0 for d in decoders]
    assert zero == [not official] * len(decoders)
