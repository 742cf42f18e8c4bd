"""Dropout masks drawn cheaply: the same Bernoulli law as ``nn.Dropout``, fewer random draws.

On CPU, ``torch.bernoulli_`` (behind ``F.dropout``) draws one 32-bit number per element, one
element at a time on one thread, and multiplying by a bool mask is not vectorised; on the
(B·heads, T, T) attention weights and (B, T, 4E) MLP activations of RedCore's transformers the
Bernoulli draws alone took about a fifth of a training step. ``keep_mask`` draws random bytes
instead, eight per 64-bit draw, and decides an element by its byte: a byte above
``floor(256 p)`` keeps it, one below drops it, and only a byte equal to ``floor(256 p)`` (1 in
256) looks at a further uniform number u. An element is thus dropped exactly when the uniform
``U = (byte + u) / 256`` falls below ``p``: the drop probability is ``p`` to 2^-32 (``rand``
and ``bernoulli_`` resolve it to 2^-24). The mask is written directly in the activations'
dtype, so applying it is a plain same-dtype multiply.

The tie fix-up finds the tied words with ``nonzero``, whose output size depends on the data: on
a GPU that makes the host wait for the device at every dropout layer. Off the CPU the mask is
therefore drawn with ``bernoulli_`` (one kernel, no wait), where per-element draws are cheap.
"""

from __future__ import annotations

import math

import torch


def keep_mask(
    shape: tuple[int, ...] | torch.Size,
    p: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A 0/1 mask of ``shape``, each element independently 0 with probability ``p``.

    Args:
        shape: the mask's shape.
        p: drop probability in [0, 1].
        device: where the mask lives.
        dtype: its dtype (that of the activations it multiplies).

    Returns:
        The mask: 1 = keep, 0 = drop.
    """
    if p <= 0.0:
        return torch.ones(shape, dtype=dtype, device=device)
    if p >= 1.0:
        return torch.zeros(shape, dtype=dtype, device=device)
    if torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1.0 - p)
    n = math.prod(shape)
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device)
    words.random_(-(2**63), None)  # every bit uniform
    data = words.view(torch.uint8)  # (8 ceil(n / 8),)
    level = p * 256.0
    edge = math.floor(level)
    # Comparisons write uint8: on CPU a bool output is not vectorised and is many times slower.
    keep = torch.gt(data, edge, out=torch.empty_like(data))
    tie = torch.eq(data, edge, out=torch.empty_like(data))
    hot = tie.view(torch.int64).nonzero().squeeze(1)  # words holding a tie: about 3 %
    if hot.numel():
        slots = (hot[:, None] * 8 + torch.arange(8, device=device)).flatten()
        slots = slots[tie[slots].bool()]
        u = torch.rand(slots.numel(), device=device)
        keep[slots] = (u >= level - edge).to(torch.uint8)  # drop when (edge + u) / 256 < p
    return keep[:n].view(shape).to(dtype)
