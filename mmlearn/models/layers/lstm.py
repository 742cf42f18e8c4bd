"""MMIN's utterance encoder: a uni-directional LSTM, max-pooled over the valid steps."""

from __future__ import annotations

import torch
from torch import nn

from mmlearn.models.layers._steps import valid_steps


class LSTMEncoder(nn.Module):
    """Uni-directional LSTM whose outputs are max-pooled over time.

    Padding is ignored: a uni-directional LSTM's output at a valid step never sees later
    (padded) steps, and padded steps are excluded from the max. (The official MMIN code pools
    over every step, padding included.)

    Args:
        in_dim: feature size D.
        hidden: LSTM width, the output size E.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, D) sequences with (B,) valid lengths to (B, E)."""
        out, _ = self.rnn(x)  # (B, T, E)
        if lengths is not None:
            valid = valid_steps(lengths, out.shape[1])  # (B, T)
            out = out.masked_fill(~valid[..., None], float("-inf"))
        return out.max(dim=1).values  # (B, E)
