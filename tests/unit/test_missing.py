import math

import numpy as np
import pytest

from mmlearn.data.missing import (
    MissingProtocol,
    evaluation_patterns,
    make_pattern,
    pattern_bits,
)
from mmlearn.errors import ConfigError

MODS = ("audio", "vision", "text")


def protocol(**kw) -> MissingProtocol:
    return MissingProtocol(MODS, **kw)


def test_per_epoch_masks_exactly_floor_n_rate_per_modality():
    p = protocol(mode="per_epoch", rates={"audio": 0.2, "vision": 0.5, "text": 0.8}, seed=3)
    for n in (10, 37, 1000):
        for epoch in range(3):
            absent = (~p.train_mask(n, epoch)).sum(axis=0)
            assert absent.tolist() == [math.floor(n * r) for r in (0.2, 0.5, 0.8)]


def test_per_epoch_is_deterministic_and_redrawn_each_epoch():
    p = protocol(mode="per_epoch", rates={"text": 0.5}, seed=1)
    assert np.array_equal(p.train_mask(100, 4), p.train_mask(100, 4))
    assert not np.array_equal(p.train_mask(100, 4), p.train_mask(100, 5))
    other_seed = protocol(mode="per_epoch", rates={"text": 0.5}, seed=2)
    assert not np.array_equal(p.train_mask(100, 4), other_seed.train_mask(100, 4))


def test_per_epoch_masks_modalities_independently_and_allows_empty_rows():
    # With rates .9/.9/.9 and independent columns, some rows lose everything.
    p = protocol(mode="per_epoch", rates=dict.fromkeys(MODS, 0.9))
    assert (~p.train_mask(1000, 0).any(axis=1)).sum() > 0


def test_allow_empty_false_repairs_rows_and_keeps_counts_exact():
    rates = {"audio": 0.6, "vision": 0.6, "text": 0.6}
    p = protocol(mode="per_epoch", rates=rates, allow_empty=False)
    for epoch in range(5):
        mask = p.train_mask(100, epoch)
        assert mask.any(axis=1).all()
        assert (~mask).sum(axis=0).tolist() == [60, 60, 60]


def test_infeasible_protocol_is_rejected():
    p = protocol(mode="per_epoch", rates=dict.fromkeys(MODS, 0.9), allow_empty=False)
    with pytest.raises(ConfigError, match="more than the 200 that leave every sample one modality"):
        p.train_mask(100, 0)


def test_per_sample_fixed_is_the_same_every_epoch():
    p = protocol(mode="per_sample_fixed", rates={"audio": 0.3, "text": 0.7}, seed=5)
    first = p.train_mask(200, 0)
    for epoch in range(1, 4):
        assert np.array_equal(first, p.train_mask(200, epoch))
    assert (~first).sum(axis=0).tolist() == [60, 0, 140]


@pytest.mark.parametrize(
    ("mode", "patterns"),
    [("uniform_nonempty", range(1, 8)), ("uniform_incomplete", range(1, 7))],
)
def test_uniform_modes_draw_each_allowed_pattern_equally(mode, patterns):
    n = 70_000
    bits = pattern_bits(protocol(mode=mode).train_mask(n, 0))
    counts = np.bincount(bits, minlength=8)
    allowed = list(patterns)
    assert counts[[b for b in range(8) if b not in allowed]].sum() == 0
    expected = n / len(allowed)
    # 5 standard deviations of a binomial count.
    tolerance = 5 * math.sqrt(n * (1 / len(allowed)) * (1 - 1 / len(allowed)))
    assert np.abs(counts[allowed] - expected).max() < tolerance


def test_independent_drop_keeps_one_modality_with_conditional_rates():
    rates = np.array([0.5, 0.5, 0.8])
    p = protocol(mode="independent_drop", rates=dict(zip(MODS, rates, strict=True)), seed=9)
    mask = p.train_mask(100_000, 0)
    assert mask.any(axis=1).all()
    empty = rates.prod()
    expected = (rates - empty) / (1 - empty)  # P(m dropped | not all dropped)
    assert np.allclose((~mask).mean(axis=0), expected, atol=0.01)


def test_complete_mode_keeps_everything():
    assert protocol(mode="complete").train_mask(50, 0).all()


def test_evaluation_patterns_cover_every_nonempty_pattern_with_readable_names():
    patterns = evaluation_patterns(MODS)
    assert [p.name for p in patterns] == [
        "audio",
        "vision",
        "text",
        "audio+vision",
        "audio+text",
        "vision+text",
        "audio+vision+text",
    ]
    assert sorted(p.bits for p in patterns) == list(range(1, 8))
    assert len(evaluation_patterns(("a", "b"))) == 3
    assert len(evaluation_patterns(("a", "b", "c", "d", "e"))) == 31
    assert make_pattern(0, MODS).name == "none"
    assert make_pattern(5, MODS).present == (True, False, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rates": {"text": 1.0}}, r"missing rate of 'text' must be in \[0, 1\), but got 1.0"),
        ({"rates": {"text": -0.1}}, r"must be in \[0, 1\), but got -0.1"),
        ({"rates": {"text": float("nan")}}, r"must be in \[0, 1\), but got nan"),
        ({"rates": {"text": "half"}}, r"must be in \[0, 1\), but got 'half'"),
        ({"rates": {"txt": 0.2}}, r"unknown modalities \['txt'\]; this data set has"),
        ({"mode": "uniform_nonempty", "rates": {"text": 0.2}}, "takes no rates"),
        ({"mode": "random"}, "unknown missing mode 'random'"),
    ],
)
def test_bad_protocols_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        protocol(**kwargs)
    assert "\n" not in str(info.value)


def test_a_single_modality_is_not_multimodal():
    with pytest.raises(ConfigError, match=">= 2 modalities"):
        MissingProtocol(("text",))
