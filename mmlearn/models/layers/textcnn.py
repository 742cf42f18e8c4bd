"""MMIN's lexical encoder: 1-D convolutions of widths 3/4/5, max-pooled over time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mmlearn.models.layers._steps import valid_steps


class TextCNN(nn.Module):
    """Parallel convolutions over time, ReLU, max over the valid windows, then Linear + ReLU.

    A window counts as valid when it starts inside the sequence and fits in it; a sequence
    shorter than a kernel keeps its first window. Inputs shorter than the widest kernel are
    zero-padded to it.

    Args:
        in_dim: feature size D.
        out_dim: output size E.
        channels: output channels of each convolution.
        kernels: kernel widths.
        dropout: dropout on the pooled features.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        channels: int = 128,
        kernels: Sequence[int] = (3, 4, 5),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.kernels = tuple(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, channels, k) for k in self.kernels)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Sequential(nn.Linear(channels * len(self.kernels), out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, D) sequences with (B,) valid lengths to (B, E)."""
        short = max(self.kernels) - x.shape[1]
        if short > 0:
            x = F.pad(x, (0, 0, 0, short))
        h = x.transpose(1, 2)  # (B, D, T)
        pooled = []
        for conv, width in zip(self.convs, self.kernels, strict=True):
            c = torch.relu(conv(h))  # (B, C, T - width + 1)
            if lengths is not None:
                valid = valid_steps(lengths - width + 1, c.shape[-1])  # (B, W)
                c = c.masked_fill(~valid[:, None, :], float("-inf"))
            pooled.append(c.max(dim=-1).values)  # (B, C)
        return self.proj(self.dropout(torch.cat(pooled, dim=-1)))  # (B, E)
