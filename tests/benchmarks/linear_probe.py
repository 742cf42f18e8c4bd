"""A linear probe: multinomial logistic regression on fixed features, in torch.

What a probe tells: how much of the label a modality carries linearly (data-formats.md §1.2
probes mfeat the same way, with scikit-learn's StandardScaler + LogisticRegression). The
objective is scikit-learn's default: summed cross-entropy plus ||W||^2 / 2 (C = 1, bias not
penalised), on features standardised with the train statistics, minimised by L-BFGS.
"""

from __future__ import annotations

import numpy as np
import torch


def probe_accuracy(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> float:
    """Test accuracy of a logistic regression fitted on (N, D) ``train`` features."""
    x = torch.tensor(train, dtype=torch.float64)
    y = torch.tensor(train_labels, dtype=torch.int64)
    mean, std = x.mean(dim=0), x.std(dim=0, correction=0).clamp_min(1e-12)  # as StandardScaler
    x = (x - mean) / std
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=1000, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weight + bias, y, reduction="sum")
        value = value + 0.5 * (weight**2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        z = (torch.tensor(test, dtype=torch.float64) - mean) / std
        predicted = (z @ weight + bias).argmax(dim=1).numpy()
    return float((predicted == test_labels).mean())
