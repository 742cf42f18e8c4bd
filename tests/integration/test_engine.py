"""The DeepSpeed training engine on the real mfeat digits: CPU, gloo, tiny sizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from mmlearn.data.missing import MissingProtocol, evaluation_patterns
from mmlearn.data.store import FeatureStore, open_store
from mmlearn.errors import ConfigError, MmlearnError
from mmlearn.models import ExperimentalWarning, LossOutput, ModelOutput, build, hparams_class
from mmlearn.models.dmrnet import HardCombinationMiner
from mmlearn.models.fusion import EarlyFusion
from mmlearn.train.checkpoint import PROGRESS, load_best_state, read_progress
from mmlearn.train.config import TrainConfig
from mmlearn.train.distributed import current_world, run_distributed
from mmlearn.train.engine import NonFiniteLossError, best_so_far, fit
from mmlearn.train.evaluation import evaluate

TINY = {"hidden": 16, "cls_layers": (16,)}
TINY_AE = {**TINY, "ae_layers": (32, 16), "n_blocks": 2}


def protocol(store: FeatureStore) -> MissingProtocol:
    names = store.spec().names
    return MissingProtocol(names, "per_epoch", {m: 0.3 for m in names}, seed=0)


def early_fusion(store: FeatureStore, cls: type[EarlyFusion] = EarlyFusion) -> EarlyFusion:
    torch.manual_seed(0)
    return cls(store.spec(), hparams_class("early_fusion")(**TINY))


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Equal structures; tensors and floats within 1e-6."""
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, abs_tol=1e-6), where
    else:
        assert a == b, where


class Recording(EarlyFusion):
    """early_fusion that records every (sample, pattern) pair it evaluates."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: list[tuple[int, int]] = []

    def forward(self, batch):  # noqa: D102
        if not self.training:
            self.seen.extend(zip(batch.index.tolist(), batch.pattern.tolist(), strict=True))
        return super().forward(batch)


class HeadOnlyRates(EarlyFusion):
    """early_fusion whose encoders sit in their own group at learning rate 0."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:  # noqa: D102
        return [
            {"name": "encoders", "params": list(self.net.encoders.parameters()), "lr": 0.0},
            {"name": "head", "params": list(self.net.head.parameters()), "lr": lr},
        ]


class NaNAtThirdStep(EarlyFusion):
    """early_fusion whose loss turns NaN at its third training step."""

    steps = 0

    def loss(self, out: ModelOutput, batch) -> LossOutput:  # noqa: D102
        result = super().loss(out, batch)
        self.steps += 1
        if self.steps == 3:
            return LossOutput(result.total * float("nan"), result.parts)
        return result


def test_fit_beats_chance_and_reports_every_pattern(mfeat_store):
    reports: list[dict[str, Any]] = []
    config = TrainConfig(epochs=2, batch_size=128, lr=1e-3)
    result = fit(
        build("early_fusion", {}, mfeat_store.spec()),
        mfeat_store,
        protocol(mfeat_store),
        config,
        on_epoch=reports.append,
    )
    assert [r["epoch"] for r in reports] == [1, 2]
    assert result.history == reports
    names = [p.name for p in evaluation_patterns(mfeat_store.spec().names)]
    assert len(names) == 7 and "fac+mor" in names
    for r in reports:
        assert r["stage"] == "train" and r["epochs"] == 2
        assert list(r["val"]["patterns"]) == names
        assert r["val"]["samples"] == {name: 200 for name in names}
        mean = r["val"]["mean"]
        assert set(mean) == {"accuracy", "uar", "macro_f1", "weighted_f1"}
        assert mean["macro_f1"] == pytest.approx(
            sum(r["val"]["patterns"][n]["macro_f1"] for n in names) / 7
        )
        assert r["score"] == mean["macro_f1"] and r["selection_metric"] == "macro_f1"
        assert r["lr"] == {"group0": 1e-3}
        assert math.isfinite(r["train"]["loss"]) and r["checkpoint"] is None
    assert reports[-1]["val"]["mean"]["accuracy"] > 0.3  # chance is 0.1
    assert result.best_score == max(r["score"] for r in reports)
    assert result.best_epoch == reports[-1]["best_epoch"]


@pytest.mark.parametrize(
    ("name", "hparams", "zero_stage"),
    [
        ("mmin", {**TINY_AE, "teacher_share": 0.5}, 0),
        ("redcore", TINY_AE, 2),
        ("dmrnet", {"hidden": 16}, 1),  # mines after epoch 1 of 2: the checkpoint holds it
    ],
    ids=["two-stage-zero0", "redcore-zero2", "dmrnet-zero1"],
)
def test_resuming_from_a_checkpoint_equals_uninterrupted_training(
    mfeat_store, tmp_path, name, hparams, zero_stage
):
    spec = mfeat_store.spec()
    config = TrainConfig(epochs=2, batch_size=128, lr=1e-3, zero_stage=zero_stage, seed=3)

    def model(seed: int) -> Any:
        torch.manual_seed(seed)
        return build(name, hparams, spec)

    uninterrupted = model(0)
    full = fit(uninterrupted, mfeat_store, protocol(mfeat_store), config)

    class Crash(Exception):
        pass

    def crash(report: dict[str, Any]) -> None:
        raise Crash(f"killed after epoch {report['epoch']}")

    with pytest.raises(Crash):
        fit(
            model(0),
            mfeat_store,
            protocol(mfeat_store),
            config,
            on_epoch=crash,
            checkpoint_dir=tmp_path,
        )
    checkpoint = tmp_path / "epoch-0001"
    assert read_progress(checkpoint).epochs_done == 1
    resumed = model(1)  # another initialisation: everything must come from the checkpoint
    rest = fit(resumed, mfeat_store, protocol(mfeat_store), config, resume_from=checkpoint)

    assert_close(resumed.state_dict(), uninterrupted.state_dict(), "state")
    assert_close(rest.best_state, full.best_state, "best_state")
    assert (rest.best_epoch, rest.selection_metric) == (full.best_epoch, full.selection_metric)
    for got, want in zip(rest.history, full.history, strict=True):
        assert_close(got["val"], want["val"], f"epoch {want['epoch']} val")
        assert_close(got["internals"], want["internals"], f"epoch {want['epoch']} internals")
        assert_close(got["lr"], want["lr"], f"epoch {want['epoch']} lr")


def test_checkpoints_hold_the_best_state_and_keep_only_the_latest(mfeat_store, tmp_path):
    seen: list[Path] = []
    config = TrainConfig(epochs=2, batch_size=128, lr=1e-3)
    model = early_fusion(mfeat_store)

    def on_epoch(report: dict[str, Any]) -> None:
        path = Path(report["checkpoint"])
        assert path.is_dir()
        seen.append(path)

    result = fit(
        model,
        mfeat_store,
        protocol(mfeat_store),
        config,
        on_epoch=on_epoch,
        checkpoint_dir=tmp_path,
    )
    assert seen == [tmp_path / "epoch-0001", tmp_path / "epoch-0002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002"]
    record = json.loads((seen[-1] / PROGRESS).read_text())
    assert record["epochs_done"] == 2 and record["best_epoch"] == result.best_epoch
    assert_close(load_best_state(seen[-1]), result.best_state)


def test_parameter_groups_are_real_optimizer_groups(mfeat_store):
    model = early_fusion(mfeat_store, HeadOnlyRates)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reports: list[dict[str, Any]] = []
    config = TrainConfig(epochs=1, batch_size=128, lr=1e-3, zero_stage=1)
    fit(model, mfeat_store, protocol(mfeat_store), config, on_epoch=reports.append)
    assert reports[0]["lr"] == {"encoders": 0.0, "head": 1e-3}
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("net.encoders."):
            assert torch.equal(after[key], value), key  # learning rate 0: untouched
        elif key.endswith("weight"):
            assert not torch.equal(after[key], value), key


def test_linear_schedule_over_two_stages_matches_hand_computed_rates(mfeat_store):
    # 4 epochs, 2 constant then decaying: factors 1, 1, 2/3, 1/3 (RedCore's rule). UME-MMA's
    # second stage rebuilds the optimizer with encoders at 0.1 x the rate of the heads.
    lr = 3e-3
    hparams = {"hidden": 16, "unimodal_share": 0.5, "encoder_lr_scale": 0.1}
    with pytest.warns(ExperimentalWarning):
        model = build("ume_mma", hparams, mfeat_store.spec())
    reports: list[dict[str, Any]] = []
    config = TrainConfig(
        epochs=4, batch_size=256, lr=lr, lr_schedule="linear", lr_constant_share=0.5
    )
    fit(model, mfeat_store, protocol(mfeat_store), config, on_epoch=reports.append)
    assert [r["stage"] for r in reports] == ["unimodal", "unimodal", "adapt", "adapt"]
    expected = [
        {"encoders": lr, "heads": lr},
        {"encoders": lr, "heads": lr},
        {"encoders": 0.1 * lr * 2 / 3, "heads": lr * 2 / 3},
        {"encoders": 0.1 * lr / 3, "heads": lr / 3},
    ]
    for report, want in zip(reports, expected, strict=True):
        assert report["lr"] == pytest.approx(want, rel=1e-12), report["epoch"]


def test_nan_loss_stops_training_with_a_one_line_error(mfeat_store):
    model = early_fusion(mfeat_store, NaNAtThirdStep)
    config = TrainConfig(epochs=2, batch_size=128, lr=1e-3)
    reports: list[dict[str, Any]] = []
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, mfeat_store, protocol(mfeat_store), config, on_epoch=reports.append)
    message = str(info.value)
    assert isinstance(info.value, MmlearnError)
    assert "\n" not in message
    assert "epoch 1, step 3" in message and "'train'" in message
    assert reports == [] and model.steps == 3


def _two_rank_fit(store_path: str) -> dict[str, Any]:
    """One rank of the world-size-2 test: fit one epoch, then evaluate once more."""
    store = open_store(store_path)
    model = early_fusion(store, Recording)
    config = TrainConfig(epochs=1, batch_size=128, lr=1e-3, zero_stage=2)
    result = fit(model, store, protocol(store), config)
    model.seen = []
    val = evaluate(model, store.split("val"), store.spec(), batch_size=64)
    return {
        "world": current_world(),
        "report": result.history[-1],
        "val": val,
        "seen": model.seen,
        "state": model.state_dict(),
    }


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="needs 2 GPUs under nccl"
)
def test_two_ranks_count_every_sample_and_pattern_exactly_once(mfeat_store):
    ranks = run_distributed(_two_rank_fit, 2, str(mfeat_store.path))
    assert [r["world"].rank for r in ranks] == [0, 1]
    assert all(r["world"].world_size == 2 for r in ranks)
    n = len(mfeat_store.split("val"))
    patterns = evaluation_patterns(mfeat_store.spec().names)
    seen = ranks[0]["seen"] + ranks[1]["seen"]
    assert len(seen) == n * 7 == len(set(seen))
    assert set(seen) == {(i, p.bits) for i in range(n) for p in patterns}
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    for r in ranks:
        assert r["val"]["samples"] == {p.name: n for p in patterns}
        assert sum(r["val"]["samples"].values()) == n * 7
        assert r["report"]["val"]["samples"] == r["val"]["samples"]
    assert ranks[0]["val"] == ranks[1]["val"]
    assert_close(ranks[0]["state"], ranks[1]["state"], "replicas")


def _mine_on_two_ranks() -> tuple[int, ...]:
    """One rank of the DMRNet mining test: rank 0 alone would pick bits 1, the pooled means 2."""
    miner = HardCombinationMiner(("a", "b", "c"), warmup_epochs=1, top_k=1)
    if current_world().rank == 0:  # bits 1: 3.0 (1 sample), bits 2: 2.0 (3 samples)
        miner.observe(torch.tensor([1, 2, 2, 2]), torch.tensor([3.0, 2.0, 2.0, 2.0]))
    else:  # bits 1: 0.0 (3 samples), bits 2: 2.0 (1 sample)
        miner.observe(torch.tensor([1, 1, 1, 2]), torch.tensor([0.0, 0.0, 0.0, 2.0]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # nccl: the rank's GPU
    miner.end_epoch(1, epochs=20, device=device)
    return miner.hard


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="needs 2 GPUs under nccl"
)
def test_dmrnet_ranks_mine_the_same_combination_from_pooled_means():
    # pooled means: bits 1 -> (3 + 0) / 4 = 0.75, bits 2 -> 8 / 4 = 2.0
    assert run_distributed(_mine_on_two_ranks, 2) == [(2,), (2,)]


def test_cpu_accelerator_is_chosen_before_deepspeed_loads():
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    code = (
        "import os, torch, mmlearn.train.engine\n"
        "from deepspeed.accelerator import get_accelerator\n"
        "print(os.environ.get('DS_ACCELERATOR'), get_accelerator().device_name(),"
        " torch.cuda.is_available())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    chosen, device, cuda = out.stdout.split()[-3:]
    if cuda == "False":
        assert (chosen, device) == ("cpu", "cpu")
    else:
        assert chosen == "None"


def test_bf16_trains_a_bf16_module_and_evaluates_it(mfeat_store):
    model = early_fusion(mfeat_store)
    config = TrainConfig(epochs=1, batch_size=128, lr=1e-2, precision="bf16", zero_stage=1)
    result = fit(model, mfeat_store, protocol(mfeat_store), config)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert math.isfinite(result.history[0]["train"]["loss"])
    assert result.history[0]["val"]["mean"]["accuracy"] > 0.3  # fp32 gets the same .58


def test_a_selection_metric_the_task_lacks_is_a_config_error(mfeat_store):
    config = TrainConfig(epochs=1, selection_metric="acc2_has0")
    with pytest.raises(ConfigError, match=r"train\.selection_metric: must be one of"):
        fit(early_fusion(mfeat_store), mfeat_store, protocol(mfeat_store), config)


# Selection over the final stage: a method is only itself after its last stage ----------------


def _fit_where_stage_one_wins(store: FeatureStore, name: str, hparams: dict[str, Any]) -> Any:
    """Fit ``name`` with settings under which an epoch of its first stage scores best."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        model = build(name, hparams, store.spec())
    config = TrainConfig(epochs=4, batch_size=128, lr=3e-3, seed=1)
    result = fit(model, store, protocol(store), config)
    stages = [r["stage"] for r in result.history]
    first = [r["score"] for r, s in zip(result.history, stages, strict=True) if s == stages[0]]
    final = [r["score"] for r, s in zip(result.history, stages, strict=True) if s == stages[-1]]
    assert max(first) > max(final), "precondition: a first-stage epoch must score best"
    return stages, result


@pytest.mark.parametrize(
    ("name", "hparams"),
    [
        # one imagination epoch whose loss is mostly the imagination MSE: the fresh student
        # classifier stays below the teacher
        ("mmin", {**TINY_AE, "teacher_share": 0.75, "mse_weight": 100.0}),
        # one adaptation epoch with the encoders at 10^4 x the heads' rate wrecks the ensemble
        ("ume_mma", {"hidden": 16, "unimodal_share": 0.75, "encoder_lr_scale": 1e4}),
    ],
    ids=["mmin", "ume_mma"],
)
def test_only_final_stage_epochs_are_selected(mfeat_store, name, hparams):
    stages, result = _fit_where_stage_one_wins(mfeat_store, name, hparams)
    final = [i + 1 for i, s in enumerate(stages) if s == stages[-1]]
    scores = {r["epoch"]: r["score"] for r in result.history}
    assert result.best_epoch in final
    assert result.best_score == max(scores[e] for e in final)
    for report in result.history:
        if report["stage"] != stages[-1]:  # no final-stage epoch yet
            assert report["best_epoch"] is None and report["best_score"] is None
            assert best_so_far(report) == "no final-stage epoch yet"
        else:
            assert best_so_far(report).endswith(f"@ epoch {report['best_epoch']}")
        assert report["score"] == report["val"]["mean"]["macro_f1"]  # for Tune every epoch
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        restored = build(name, hparams, mfeat_store.spec())
    restored.load_state_dict(result.best_state)
    if name == "mmin":
        assert restored.student_initialised
    restored.set_stage(stages[-1])
    val = evaluate(restored, mfeat_store.split("val"), mfeat_store.spec(), 128)
    assert val["mean"]["macro_f1"] == pytest.approx(result.best_score, abs=1e-6)


def test_dmrnet_regularises_an_incomplete_combination_after_six_epochs_of_20(mfeat_store):
    spec = mfeat_store.spec()
    torch.manual_seed(0)
    model = build("dmrnet", {"hidden": 16}, spec)  # default warm-up: 6 epochs
    own = MissingProtocol(spec.names, "uniform_nonempty", {}, seed=0)
    config = TrainConfig(epochs=20, batch_size=256, lr=1e-3, seed=0)
    result = fit(model, mfeat_store, own, config)
    hard = [sorted(k for k in r["internals"] if k.startswith("hard/")) for r in result.history]
    assert hard[:5] == [[]] * 5  # mined after the training steps of epoch 6
    (mined,) = hard[5]
    assert hard[5:] == [[mined]] * 15
    assert all(r["train"]["hcr"] == 0.0 for r in result.history[:6])
    assert mined.removeprefix("hard/") in {"fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor"}
    assert all(r["train"]["hcr"] > 0.0 for r in result.history[6:])
