"""Fully connected stacks: task heads and the encoder of vector-valued modalities."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``[Linear, ReLU, Dropout] x len(hidden)``, then an optional output ``Linear``.

    With ``out_dim`` this is the FcClassifier of the RedCore/MMIN code (no batch norm).

    Args:
        in_dim: input size.
        hidden: sizes of the hidden layers.
        out_dim: size of a final linear layer without activation; None ends on the last block.
        dropout: dropout after every hidden activation.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim))
            width = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        """Apply the stack."""
        return self.net(x)


class MLPEncoder(nn.Module):
    """Encoder of a vector modality: two ReLU layers of width ``hidden``.

    Args:
        in_dim: feature size D.
        hidden: output size E.
        dropout: dropout after each layer.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, (hidden, hidden), dropout=dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, D) features to (B, E); ``lengths`` is accepted and ignored."""
        return self.mlp(x)
