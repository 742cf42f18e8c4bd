"""Registry-wide contract of every method (style.md rule 8), at a tiny size.

Every registered method x {vector, variable-length sequence} inputs x every non-empty pattern
of 3 modalities, plus a 2-modality and a regression data set: shapes, finite values, gradients
for every parameter the current stage trains, invariance to the content of absent modalities,
deterministic evaluation, and ``build``'s errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator

import pytest
import torch

from mmlearn.data.batch import Batch
from mmlearn.data.missing import MODES
from mmlearn.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from mmlearn.errors import ConfigError
from mmlearn.models import MissingModalityModel, registry
from mmlearn.models.hparams import HParams
from mmlearn.models.redcore import RedCore, RedCoreHParams
from tests.tiny_models import tiny_model

NAMES = ("speech", "face", "words")  # deliberately not audio/video/text
T = 7
METHODS = registry.names()
PATTERNS = [p for p in itertools.product([False, True], repeat=3) if any(p)]


def make_spec(kind: str, n: int = 3, target: str = "classification") -> DatasetSpec:
    """A tiny spec: ``kind`` is "vector" or "sequence" (the last modality stays a vector)."""
    dims = (6, 5, 4)[:n]
    modalities = tuple(
        ModalitySpec(name, dim, T if kind == "sequence" and i < n - 1 else None, kind == "sequence")
        for i, (name, dim) in enumerate(zip(NAMES, dims, strict=False))
    )
    classes = ("neg", "neu", "pos") if target == "classification" else ()
    return DatasetSpec(modalities, TargetSpec("label", target, classes))  # type: ignore[arg-type]


def make_batch(spec: DatasetSpec, present: torch.Tensor, seed: int = 0) -> Batch:
    """Random features (sequences zero-padded after their length), lengths, labels."""
    g = torch.Generator().manual_seed(seed)
    b = present.shape[0]
    features, lengths = {}, {}
    for m in spec.modalities:
        x = torch.randn(b, *m.shape, generator=g)
        if m.is_sequence:
            steps = torch.randint(1, T + 1, (b,), generator=g)
            x = x * (torch.arange(T)[None, :, None] < steps[:, None, None])
            lengths[m.name] = steps
        features[m.name] = x
    if spec.target.kind == "classification":
        labels = torch.randint(0, spec.target.num_classes, (b,), generator=g)
    else:
        labels = torch.randn(b, generator=g)
    bits = (present.long() * 2 ** torch.arange(present.shape[1])).sum(1)
    return Batch(spec.names, features, lengths, present, labels, bits, torch.arange(b))


def with_noise_in_absent(batch: Batch, seed: int = 1) -> Batch:
    """The same batch with random features and lengths wherever a modality is absent."""
    g = torch.Generator().manual_seed(seed)
    features, lengths = {}, dict(batch.lengths)
    for m, name in enumerate(batch.modalities):
        absent = ~batch.present[:, m]
        x = batch.features[name]
        noise = 100 * torch.randn(x.shape, generator=g)
        features[name] = torch.where(absent.view(-1, *[1] * (x.dim() - 1)), noise, x)
        if name in lengths:
            random_steps = torch.randint(1, T + 1, absent.shape, generator=g)
            lengths[name] = torch.where(absent, random_steps, lengths[name])
    return dataclasses.replace(batch, features=features, lengths=lengths)


def all_patterns(spec: DatasetSpec, copies: int = 2) -> torch.Tensor:
    """(copies * (2^M - 1), M) every non-empty pattern, ``copies`` times."""
    rows = [p for p in itertools.product([False, True], repeat=len(spec.names)) if any(p)]
    return torch.tensor(rows * copies)


def stages_of(model: MissingModalityModel) -> Iterator[str]:
    """Put ``model`` through each of its stages in order, yielding the stage names."""
    for stage in model.stages():
        model.set_stage(stage.name)
        yield stage.name


def run(model: MissingModalityModel, batch: Batch, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Prediction and loss under a fixed seed (so training-mode sampling repeats)."""
    torch.manual_seed(seed)
    out = model(batch)
    return out.prediction, model.loss(out, batch).total.item()


def expected_shape(spec: DatasetSpec, b: int) -> tuple[int, ...]:
    return (b, spec.target.num_classes) if spec.target.kind == "classification" else (b,)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: "".join("x" if v else "_" for v in p))
@pytest.mark.parametrize("kind", ["vector", "sequence"])
@pytest.mark.parametrize("name", METHODS)
def test_outputs_per_pattern(name: str, kind: str, pattern: tuple[bool, ...]) -> None:
    spec = make_spec(kind)
    model = tiny_model(name, spec)
    batch = make_batch(spec, torch.tensor([pattern] * 4))
    noisy = with_noise_in_absent(batch)
    for _ in stages_of(model):
        model.train()
        pred, loss = run(model, batch)
        assert pred.shape == expected_shape(spec, 4)
        assert torch.isfinite(pred).all() and math.isfinite(loss)
        noisy_pred, noisy_loss = run(model, noisy)
        torch.testing.assert_close(noisy_pred, pred, rtol=0, atol=1e-6)
        assert noisy_loss == pytest.approx(loss, rel=1e-6, abs=1e-6)

        model.eval()
        with torch.no_grad():
            first = model(batch).prediction
            second = model(batch).prediction
            noisy_eval = model(noisy).prediction
        assert torch.isfinite(first).all()
        assert torch.equal(first, second), "two evaluations differ"
        torch.testing.assert_close(noisy_eval, first, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_padded_steps_change_nothing_with_the_padding_mask(name: str) -> None:
    """Variable-length sequences (avdigits' audio): what lies after a length is never read.

    The LSTM and TextCNN backbones always mask padded steps; the transformer does with
    ``key_padding_mask`` (off in the official code, so set here where a method has it).
    TextCNN's first window spans its widest kernel (5), so the noise starts no earlier.
    """
    spec = make_spec("sequence")
    fields = {f.name for f in dataclasses.fields(registry.hparams_class(name))}
    extra = {"key_padding_mask": True} if "key_padding_mask" in fields else {}
    model = tiny_model(name, spec, **extra)
    batch = make_batch(spec, all_patterns(spec))
    g = torch.Generator().manual_seed(2)
    features = dict(batch.features)
    for m, lengths in batch.lengths.items():
        padded = torch.arange(T)[None, :, None] >= lengths.clamp(min=5)[:, None, None]
        noise = 100 * torch.randn(features[m].shape, generator=g)
        features[m] = torch.where(padded, noise, features[m])
    garbage = dataclasses.replace(batch, features=features)
    for _ in stages_of(model):
        model.eval()
        with torch.no_grad():
            clean, noisy = model(batch).prediction, model(garbage).prediction
        torch.testing.assert_close(noisy, clean, rtol=0, atol=1e-5)


def check_gradients(model: MissingModalityModel, batch: Batch) -> None:
    """Every stage: finite loss, and a finite gradient for every parameter the stage trains."""
    for stage in stages_of(model):
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        out = model(batch)
        loss = model.loss(out, batch)
        assert torch.isfinite(loss.total) and all(math.isfinite(v) for v in loss.parts.values())
        loss.total.backward()
        model.on_step_end(out, batch)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert trainable, f"stage {stage} trains nothing"
        for n, p in trainable:
            assert p.grad is not None, f"stage {stage}: no gradient for {n}"
            assert torch.isfinite(p.grad).all(), f"stage {stage}: non-finite gradient for {n}"
        assert all(math.isfinite(v) for v in model.internals().values())

        groups = model.param_groups(1e-3)
        grouped = [id(p) for g in groups for p in g["params"]]
        assert sorted(grouped) == sorted(id(p) for _, p in trainable), "groups != trainable"
        assert all(isinstance(g["lr"], float) and g["lr"] > 0 for g in groups)


@pytest.mark.parametrize("kind", ["vector", "sequence"])
@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_every_trained_parameter(name: str, kind: str) -> None:
    spec = make_spec(kind)
    check_gradients(tiny_model(name, spec), make_batch(spec, all_patterns(spec)))


@pytest.mark.parametrize("name", METHODS)
def test_two_modalities(name: str) -> None:
    spec = make_spec("sequence", n=2)
    model = tiny_model(name, spec)
    batch = make_batch(spec, all_patterns(spec, copies=3))
    check_gradients(model, batch)
    model.eval()
    with torch.no_grad():
        assert model(batch).prediction.shape == expected_shape(spec, 9)


@pytest.mark.parametrize("name", METHODS)
def test_regression_target(name: str) -> None:
    spec = make_spec("vector", target="regression")
    model = tiny_model(name, spec)
    batch = make_batch(spec, all_patterns(spec))
    check_gradients(model, batch)
    model.eval()
    with torch.no_grad():
        assert model(batch).prediction.shape == (14,)


@pytest.mark.parametrize("name", METHODS)
def test_registry_metadata(name: str) -> None:
    cls = registry.hparams_class(name)
    assert issubclass(cls, HParams) and dataclasses.is_dataclass(cls)
    assert registry.train_protocol(name) in MODES
    space = registry.default_search_space(name)
    assert space and set(space) <= {f.name for f in dataclasses.fields(cls)}
    space.clear()
    assert registry.default_search_space(name), "the default space must be a copy"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().hidden = 3  # type: ignore[misc]


def test_build_rejects_unknown_method_with_suggestion() -> None:
    with pytest.raises(ConfigError, match="unknown method 'redcor'; did you mean 'redcore'"):
        registry.build("redcor", {}, make_spec("vector"))


def test_build_rejects_unknown_keys_naming_each() -> None:
    with pytest.raises(ConfigError, match=r"redcore\.kl_wieght: .*did you mean 'kl_weight'") as e:
        registry.build("redcore", {"kl_wieght": 1e-3, "bogus": 1}, make_spec("vector"))
    assert "redcore.bogus" in str(e.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"kl_weight": "big"}, "kl_weight"),
        ({"hidden": 8.5}, "hidden"),
        ({"kl_half": 1}, "kl_half"),
        ({"ae_layers": [8, "x"]}, "ae_layers"),
        ({"sequence_encoder": "gru"}, "sequence_encoder"),
        ({"ema_rho": 1.5}, "ema_rho"),
        ({"hidden": 10, "transformer_heads": 4}, "transformer_heads"),
    ],
)
def test_build_rejects_wrong_values_naming_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        registry.build("redcore", overrides, make_spec("vector"))


def test_build_coerces_yaml_shaped_values() -> None:
    hp = registry.make_hparams("redcore", {"kl_weight": 1, "ae_layers": [8, 4], "inner_lr": None})
    assert hp == RedCoreHParams(kl_weight=1.0, ae_layers=(8, 4))
    assert isinstance(hp.kl_weight, float)


def test_build_rejects_hparams_of_another_method() -> None:
    with pytest.raises(ConfigError, match="must be a DMRNetHParams, but got a RedCoreHParams"):
        registry.build("dmrnet", RedCoreHParams(), make_spec("vector"))


def test_build_rejects_overrides_for_unknown_modalities() -> None:
    with pytest.raises(ConfigError, match="encoder_overrides.lexical"):
        registry.build("mmin", {"encoder_overrides": {"lexical": "textcnn"}}, make_spec("sequence"))


def test_register_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("redcore", RedCoreHParams)(RedCore)


def test_unknown_name_errors_for_every_lookup() -> None:
    for lookup in (registry.hparams_class, registry.default_search_space, registry.train_protocol):
        with pytest.raises(ConfigError, match="did you mean 'dmrnet'"):
            lookup("dmrnt")
