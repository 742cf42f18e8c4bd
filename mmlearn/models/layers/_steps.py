"""Which time steps of a right-padded batch of sequences are real."""

from __future__ import annotations

import torch


def valid_steps(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool, True at the first ``lengths[b]`` steps of row b (at least one step).

    Args:
        lengths: (B,) number of valid steps per sequence.
        steps: padded length T.

    Returns:
        The mask; a length of 0 is treated as 1 so that pooling is always defined.
    """
    positions = torch.arange(steps, device=lengths.device)  # (T,)
    return positions[None, :] < lengths.clamp(min=1)[:, None]  # (B, T)
