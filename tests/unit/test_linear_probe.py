"""The benchmarks' torch linear probe equals scikit-learn's StandardScaler + LogisticRegression."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmarks.linear_probe import probe_accuracy


def test_probe_predicts_as_scikit_learn_does():
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6))
    labels = rng.integers(0, 4, 400)
    x = centres[labels] + 1.5 * rng.normal(size=(400, 6)) * rng.uniform(0.1, 10, size=6)
    train, test = slice(0, 300), slice(300, 400)
    scaler = preprocessing.StandardScaler().fit(x[train])
    reference = linear_model.LogisticRegression(C=1.0, max_iter=5000, tol=1e-10)
    reference.fit(scaler.transform(x[train]), labels[train])
    expected = float((reference.predict(scaler.transform(x[test])) == labels[test]).mean())
    assert 0.4 < expected < 1.0  # neither trivial nor hopeless
    assert probe_accuracy(x[train], labels[train], x[test], labels[test]) == expected


def test_probe_separates_separable_classes():
    x = np.array([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.1]])
    y = np.array([0, 0, 1, 1])
    assert probe_accuracy(x, y, x, y) == 1.0
