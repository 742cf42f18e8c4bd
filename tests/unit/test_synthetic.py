"""The MOSEI-shaped synthetic source: shapes, label mix, informativeness, determinism, options."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mmlearn.data.source import SPLITS, SourceData, get_source
from mmlearn.data.sources import synthetic
from mmlearn.data.sources.synthetic import SyntheticOptions, build_synthetic
from mmlearn.errors import ConfigError

SMALL_DIMS = {"text_dim": 12, "audio_dim": 6, "vision_dim": 5}
# MOSEI train neg / neu / pos and 7-class shares (data-formats.md §3.1).
REAL_TRAIN_7 = np.array([613, 1584, 2542, 3538, 5289, 2256, 505]) / 16327
REAL_TRAIN_3 = np.array([REAL_TRAIN_7[:3].sum(), REAL_TRAIN_7[3], REAL_TRAIN_7[4:].sum()])
# Acc-2 non-zero targets of a linear probe on time-averaged features (data-formats.md §3.3).
TARGET_ACC = {"text": 0.77, "audio": 0.65, "vision": 0.65, "fused": 0.82}


@pytest.fixture(scope="module")
def large() -> SourceData:
    """Vector layout with small dims at scale 0.6: 9796 / 1123 / 2795 samples."""
    return build_synthetic(
        SyntheticOptions(scale=0.6, layout="vector", text_dim=8, audio_dim=8, vision_dim=8)
    )


@pytest.fixture(scope="module")
def unaligned() -> SourceData:
    return build_synthetic(SyntheticOptions(**SMALL_DIMS))


def probe_acc2(data: SourceData, modalities: list[str]) -> float:
    """Least squares with a bias on train, Acc-2 non-zero (sign of the prediction) on test."""

    def design(split: str) -> np.ndarray:
        x = [data.splits[split].features[m].astype(np.float64) for m in modalities]
        x = np.concatenate(x, axis=1)  # (N, sum D)
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    y_train = data.splits["train"].targets["sentiment"].astype(np.float64)
    w = np.linalg.lstsq(design("train"), y_train, rcond=None)[0]
    pred = design("test") @ w  # (N,)
    y = data.splits["test"].targets["sentiment"]
    nonzero = y != 0
    return float(np.mean((pred[nonzero] > 0) == (y[nonzero] > 0)))


def assert_same(a: SourceData, b: SourceData) -> None:
    for split in SPLITS:
        sa, sb = a.splits[split], b.splits[split]
        for part in ("features", "lengths", "targets"):
            da, db = getattr(sa, part), getattr(sb, part)
            assert list(da) == list(db)
            for k in da:
                assert da[k].dtype == db[k].dtype
                assert np.array_equal(da[k], db[k]), (split, part, k)


# --- shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["unaligned", "aligned", "vector"])
def test_shapes_per_layout(layout: str) -> None:
    opts = SyntheticOptions(layout=layout, text_len=9, audio_len=40, vision_len=30, **SMALL_DIMS)
    data = build_synthetic(opts)
    assert list(data.splits) == list(SPLITS)
    assert data.task == "sentiment3"
    assert [t.name for t in data.targets] == ["sentiment", "sentiment3", "sentiment2"]
    for split, n in zip(SPLITS, (327, 37, 93), strict=True):  # round(n * 0.02)
        arrays = data.splits[split]
        assert len(arrays) == n
        assert list(arrays.features) == ["text", "audio", "vision"]
        shapes = {m: x.shape for m, x in arrays.features.items()}
        if layout == "unaligned":
            assert shapes == {"text": (n, 9, 12), "audio": (n, 40, 6), "vision": (n, 30, 5)}
            assert list(arrays.lengths) == ["audio", "vision"]
        elif layout == "aligned":
            assert shapes == {"text": (n, 9, 12), "audio": (n, 9, 6), "vision": (n, 9, 5)}
            assert arrays.lengths == {}
        else:
            assert shapes == {"text": (n, 12), "audio": (n, 6), "vision": (n, 5)}
            assert arrays.lengths == {}
        for x in arrays.features.values():
            assert x.dtype == np.float32 and x.flags.c_contiguous
            assert np.isfinite(x).all()
        for lens in arrays.lengths.values():
            assert lens.dtype == np.int32 and lens.shape == (n,)


def test_default_shapes_and_minimum_split_size() -> None:
    data = build_synthetic(SyntheticOptions())
    test = data.splits["test"].features
    assert test["text"].shape == (93, 50, 768)
    assert test["audio"].shape == (93, 500, 74)
    assert test["vision"].shape == (93, 500, 35)
    tiny = build_synthetic(SyntheticOptions(scale=1e-4, layout="vector", **SMALL_DIMS))
    assert [len(tiny.splits[s]) for s in SPLITS] == [8, 8, 8]  # max(8, round(n * scale))


def test_lengths_and_zero_padding(unaligned: SourceData) -> None:
    for arrays in unaligned.splits.values():
        for m, max_len in (("audio", 500), ("vision", 500)):
            x, lens = arrays.features[m], arrays.lengths[m]  # (N, T, D), (N,)
            assert lens.min() >= 1 and lens.max() <= max_len
            valid = np.arange(x.shape[1]) < lens[:, None]  # (N, T)
            assert not x[~valid].any(), f"{m}: padding must be exactly zero"
            assert np.abs(x[valid]).sum(axis=-1).min() > 0, f"{m}: a valid step is all zero"
    # Durations: lognormal median 6.4 s -> about 128 audio (20 Hz) and 96 vision (15 Hz) frames.
    train = unaligned.splits["train"].lengths
    assert 100 <= np.median(train["audio"]) <= 160
    assert 75 <= np.median(train["vision"]) <= 120


def test_lengths_clip_at_max_len() -> None:
    data = build_synthetic(SyntheticOptions(audio_len=60, vision_len=3, **SMALL_DIMS))
    lens = data.splits["train"].lengths
    assert lens["audio"].max() == 60 and lens["audio"].min() >= 1
    assert (lens["vision"] == 3).all()


def test_labels_and_lengths_do_not_depend_on_layout(unaligned: SourceData) -> None:
    other = build_synthetic(SyntheticOptions(layout="vector", text_dim=3, audio_dim=2))
    for split in SPLITS:
        for k, y in unaligned.splits[split].targets.items():
            assert np.array_equal(y, other.splits[split].targets[k])


# --- labels --------------------------------------------------------------------------------------


def test_label_mix_matches_mosei(large: SourceData) -> None:
    y = large.splits["train"].targets["sentiment"]
    assert len(y) == 9796
    three = np.bincount(large.splits["train"].targets["sentiment3"], minlength=3) / len(y)
    assert np.abs(three - REAL_TRAIN_3).max() < 0.02, three
    seven = np.where(y == 0, 0, np.sign(y) * np.ceil(np.abs(y))).astype(int) + 3
    assert np.abs(np.bincount(seven, minlength=7) / len(y) - REAL_TRAIN_7).max() < 0.02


def test_labels_on_third_grid_and_targets_consistent(large: SourceData) -> None:
    for arrays in large.splits.values():
        t = arrays.targets
        y = t["sentiment"]
        assert y.dtype == np.float32
        assert y.min() >= -3 and y.max() <= 3
        assert np.allclose(3 * y, np.round(3 * y), atol=1e-5)
        assert t["sentiment3"].dtype == np.int64 and t["sentiment2"].dtype == np.int64
        assert np.array_equal(t["sentiment3"], np.where(y < 0, 0, np.where(y == 0, 1, 2)))
        assert np.array_equal(t["sentiment2"], (y >= 0).astype(np.int64))
    specs = {s.name: s for s in large.targets}
    assert specs["sentiment"].kind == "regression"
    assert specs["sentiment3"].class_names == ("negative", "neutral", "positive")
    assert specs["sentiment2"].class_names == ("negative", "non-negative")


# --- informativeness -----------------------------------------------------------------------------


def test_linear_probe_informativeness(large: SourceData) -> None:
    acc = {m: probe_acc2(large, [m]) for m in ("text", "audio", "vision")}
    acc["fused"] = probe_acc2(large, ["text", "audio", "vision"])
    assert acc["text"] > acc["audio"] + 0.05, acc
    assert acc["text"] > acc["vision"] + 0.05, acc
    assert abs(acc["audio"] - acc["vision"]) < 0.05, acc
    assert acc["fused"] > acc["text"], acc
    for name, target in TARGET_ACC.items():
        assert abs(acc[name] - target) < 0.04, (name, acc)


def test_zero_share_is_pure_noise() -> None:
    opts = SyntheticOptions(scale=0.3, layout="vector", vision_share=0.0, **SMALL_DIMS)
    data = build_synthetic(opts)
    assert abs(probe_acc2(data, ["vision"]) - 0.629) < 0.04  # the majority baseline


# --- determinism ---------------------------------------------------------------------------------


def test_same_options_same_arrays(unaligned: SourceData) -> None:
    assert_same(unaligned, build_synthetic(SyntheticOptions(**SMALL_DIMS)))
    aligned = SyntheticOptions(layout="aligned", **SMALL_DIMS)
    assert_same(build_synthetic(aligned), build_synthetic(aligned))


def test_different_seed_different_arrays(unaligned: SourceData) -> None:
    other = build_synthetic(SyntheticOptions(seed=1, **SMALL_DIMS))
    for split in SPLITS:
        a, b = unaligned.splits[split], other.splits[split]
        assert not np.array_equal(a.targets["sentiment"], b.targets["sentiment"])
        assert not np.array_equal(a.lengths["audio"], b.lengths["audio"])
        for m in a.features:
            assert not np.array_equal(a.features[m], b.features[m]), (split, m)


def test_result_does_not_depend_on_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "CHUNK_ELEMENTS", 4096)  # many chunks
    n, t, d = 50, 20, 7
    signal = np.linspace(-1, 1, n, dtype=np.float32)
    u = synthetic.direction(0, 0, d)
    lens = np.arange(1, n + 1, dtype=np.int32) % t + 1
    outs = []
    for workers in (1, 3):
        x = np.zeros((n, t, d), dtype=np.float32)
        with ThreadPoolExecutor(workers) as pool:
            synthetic.fill(x, signal, u, 0.5, (0, 0, 10), pool, lens, inf_share=0.1)
        outs.append(x)
    assert np.array_equal(outs[0], outs[1])


# --- -inf in audio -------------------------------------------------------------------------------


def test_audio_neg_inf_only_in_valid_audio_steps(unaligned: SourceData) -> None:
    data = build_synthetic(SyntheticOptions(audio_neg_inf=0.01, **SMALL_DIMS))
    total, valid_entries = 0, 0
    for split in SPLITS:
        arrays = data.splits[split]
        x, lens = arrays.features["audio"], arrays.lengths["audio"]  # (N, T, D), (N,)
        neg_inf = np.isneginf(x)
        valid = np.arange(x.shape[1]) < lens[:, None]  # (N, T)
        assert not neg_inf[~valid].any() and not x[~valid].any()
        assert not np.isnan(x).any() and not np.isposinf(x).any()
        for m in ("text", "vision"):
            assert np.isfinite(arrays.features[m]).all()
        # Everything else is as without -inf: the -inf draws have their own streams.
        base = unaligned.splits[split].features["audio"]
        assert np.array_equal(x[~neg_inf], base[~neg_inf])
        total += int(neg_inf.sum())
        valid_entries += int(valid.sum()) * x.shape[2]
    assert data.notes["audio_neg_inf"] == total
    assert 0.008 < total / valid_entries < 0.012
    assert unaligned.notes["audio_neg_inf"] == 0


@pytest.mark.parametrize("layout", ["aligned", "vector"])
def test_audio_neg_inf_fixed_length_layouts(layout: str) -> None:
    data = build_synthetic(SyntheticOptions(layout=layout, audio_neg_inf=0.05, **SMALL_DIMS))
    count = sum(int(np.isneginf(a.features["audio"]).sum()) for a in data.splits.values())
    assert count == data.notes["audio_neg_inf"] > 0


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.5}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"seed": -1}, "seed"),
        ({"layout": "interleaved"}, "layout"),
        ({"text_dim": 0}, "text_dim"),
        ({"audio_dim": -3}, "audio_dim"),
        ({"vision_dim": 0}, "vision_dim"),
        ({"text_len": 0}, "text_len"),
        ({"audio_len": -1}, "audio_len"),
        ({"vision_len": 0}, "vision_len"),
        ({"text_share": -0.1}, "text_share"),
        ({"audio_share": 1.5}, "audio_share"),
        ({"text_share": 0.8, "vision_share": 0.3}, "text_share"),
        ({"step_noise": -1.0}, "step_noise"),
        ({"step_noise": float("inf")}, "step_noise"),
        ({"audio_neg_inf": -0.1}, "audio_neg_inf"),
        ({"audio_neg_inf": 1.0}, "audio_neg_inf"),
        ({"text_dim": 2.5}, "text_dim"),
        ({"layout": 3}, "layout"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        build_synthetic(SyntheticOptions(**kwargs))  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "but got" in message


def test_registered_with_cli_friendly_options() -> None:
    source = get_source("synthetic")
    assert source.build is build_synthetic and source.options is SyntheticOptions
    allowed = {"int", "float", "str", "bool", "tuple[str, ...]"}
    for f in dataclasses.fields(SyntheticOptions):
        assert str(f.type) in allowed, f.name
        assert f.metadata.get("help"), f.name
    opts = source.parse_options({"scale": 0.5, "layout": "aligned"})
    assert opts == SyntheticOptions(scale=0.5, layout="aligned")
    with pytest.raises(ConfigError, match="scale"):
        source.parse_options({"scale": 2.0})
