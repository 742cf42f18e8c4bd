"""The one collective a method needs: means over the global batch under data parallelism.

Models stay free of process-group code: they call ``global_means`` with their per-rank
statistics and get the same numbers on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _world_size() -> int:
    """Ranks of the default process group, or 1 without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_means(values: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry, the mean over the global batch of a quantity each rank averaged locally.

    With ``values[k]`` the mean of quantity k over the ``counts[k]`` samples of this rank that
    have it, the result is ``sum_r counts_r[k] * values_r[k] / sum_r counts_r[k]`` over the
    ranks of the default process group (one ``all_reduce`` of a (2, K) tensor). Every rank must
    call it at the same point. Without a group, or with one rank, the means are this rank's
    values. Nothing is read back to the host, so a GPU step does not wait here.

    Args:
        values: (K,) local means; entries with a zero count are ignored (may be NaN).
        counts: (K,) local sample counts.

    Returns:
        (K,) float64 means, identical on every rank (0 where no rank has a sample), and (K,)
        bool: whether some rank has a sample.
    """
    values, counts = values.detach(), counts.detach()
    n = counts.to(torch.float64)  # (K,)
    weighted = torch.where(n > 0, values.to(torch.float64) * n, torch.zeros_like(n))  # (K,)
    if _world_size() > 1:
        totals = torch.stack([weighted, n])  # (2, K)
        dist.all_reduce(totals)
        weighted, n = totals[0], totals[1]
    return weighted / n.clamp(min=1.0), n > 0
