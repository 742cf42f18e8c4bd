"""The residual autoencoder cascade of MMIN's imagination module and RedCore's generators.

methods.md §1.4 (ResidualXE) and §4.2. One block maps D -> l1 -> ... -> lk (LeakyReLU between
layers, none after the last) and back lk -> ... -> l1 -> D (ReLU between layers, none after the
last). Blocks are chained residually: before each block ``x_in <- x_in + x_out`` with ``x_out``
starting at zero. The output is ``transition(x_in + x_out)`` with transition
``Linear(D, D), ReLU, Linear(D, out_dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


def _stack(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``activation`` between them (not after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i > 0:
            layers.append(activation())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class ResidualAEOutput(NamedTuple):
    """What ``ResidualAE`` returns.

    Attributes:
        output: (B, out_dim) the transition of the final residual sum.
        latents: (B, n_blocks * layers[-1]) every block's bottleneck, concatenated.
    """

    output: torch.Tensor
    latents: torch.Tensor


class ResidualAE(nn.Module):
    """A cascade of fully connected autoencoders with residual inputs and an output transition.

    Args:
        in_dim: input size D.
        layers: encoder sizes l1, ..., lk (the decoder mirrors them).
        n_blocks: number of autoencoders in the cascade.
        out_dim: output size; None keeps D (MMIN); RedCore's generators map to E.
    """

    def __init__(
        self,
        in_dim: int,
        layers: Sequence[int],
        n_blocks: int,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        sizes = (in_dim, *layers)
        self.encoders = nn.ModuleList(_stack(sizes, nn.LeakyReLU) for _ in range(n_blocks))
        self.decoders = nn.ModuleList(_stack(sizes[::-1], nn.ReLU) for _ in range(n_blocks))
        self.transition = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim or in_dim)
        )
        self.latent_dim = n_blocks * layers[-1]

    def forward(self, x: torch.Tensor) -> ResidualAEOutput:
        """Run the cascade on (B, D) inputs."""
        x_in = x
        x_out = torch.zeros_like(x)
        latents = []
        for encoder, decoder in zip(self.encoders, self.decoders, strict=True):
            x_in = x_in + x_out
            latent = encoder(x_in)  # (B, lk)
            x_out = decoder(latent)  # (B, D)
            latents.append(latent)
        return ResidualAEOutput(self.transition(x_in + x_out), torch.cat(latents, dim=-1))
