"""Worst-case mode's rates and pattern weights, pinned by hand."""

from __future__ import annotations

import pytest

from mmlearn.study import worst_case
from mmlearn.study.sections import WorstCaseSpec


def test_pattern_weights_follow_independent_missingness():
    # P(a present) = .8, P(b present) = .5: a+b .4, a .4, b .1, none .1 (left out)
    weights = worst_case.pattern_weights({"a": 0.2, "b": 0.5}, ["a", "b", "a+b"])
    assert weights == pytest.approx({"a": 0.4 / 0.9, "b": 0.1 / 0.9, "a+b": 0.4 / 0.9})


def test_weighted_score():
    patterns = {"a": {"f1": 0.5}, "b": {"f1": 0.2}, "a+b": {"f1": 0.9}}
    score = worst_case.weighted_score(patterns, "f1", {"a": 0.2, "b": 0.5})
    assert score == pytest.approx((0.4 * 0.5 + 0.1 * 0.2 + 0.4 * 0.9) / 0.9)


def test_budget_splits_in_proportion_and_caps_each_rate():
    spec = WorstCaseSpec(budget=1.2)
    values = {"share.a": 0.2, "share.b": 0.6, "share.c": 0.2}
    assert worst_case.rates_of(values, spec, ("a", "b", "c")) == pytest.approx(
        {"a": 0.24, "b": 0.72, "c": 0.24}
    )
    one_sided = {"share.a": 1.0, "share.b": 0.0, "share.c": 0.0}
    assert worst_case.rates_of(one_sided, spec, ("a", "b", "c")) == {"a": 0.95, "b": 0.0, "c": 0.0}
    assert set(worst_case.rate_space(spec, ("a", "b", "c"))) == {"share.a", "share.b", "share.c"}


def test_ranges_draw_each_named_rate_and_leave_the_rest_complete():
    spec = WorstCaseSpec(rates={"a": (0.1, 0.9)})
    space = worst_case.rate_space(spec, ("a", "b"))
    assert list(space) == ["rate.a"] and space["rate.a"].values == (0.1, 0.9)
    assert worst_case.rates_of({"rate.a": 0.3, "lr": 1.0}, spec, ("a", "b")) == {"a": 0.3, "b": 0.0}
    assert worst_case.without_rates({"rate.a": 0.3, "share.b": 0.1, "lr": 1.0}) == {"lr": 1.0}
