"""Gaussian posteriors: the VIB head, reparameterised sampling and the KL to N(0, I)."""

from __future__ import annotations

import torch
from torch import nn


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    """``mu + exp(logvar / 2) * eps`` with eps ~ N(0, I) when ``sample``, else ``mu``."""
    if not sample:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, half: bool = True) -> torch.Tensor:
    """Per-sample KL(N(mu, exp(logvar)) || N(0, I)), summed over the last dimension.

    Args:
        mu: (B, E) means.
        logvar: (B, E) log-variances.
        half: include the ½ of the true KL. RedCore's official loss omits it (``half=False``).

    Returns:
        (B,) divergences.
    """
    terms = torch.exp(logvar) + mu.pow(2) - 1.0 - logvar  # (B, E)
    kl = terms.sum(dim=-1)  # (B,)
    return 0.5 * kl if half else kl


class VIBHead(nn.Module):
    """Variational information bottleneck head: ``Linear(in, 2E)`` split into mu and logvar.

    Samples ``z`` in training; in eval returns ``mu`` unless ``stochastic_eval`` (the official
    RedCore behaviour, which makes evaluation random).

    Args:
        in_dim: input size.
        latent_dim: size E of z.
        stochastic_eval: sample in eval mode too.
    """

    def __init__(self, in_dim: int, latent_dim: int, stochastic_eval: bool = False) -> None:
        super().__init__()
        self.muvar = nn.Linear(in_dim, 2 * latent_dim)
        self.stochastic_eval = stochastic_eval

    def init_logvar_(self, value: float) -> None:
        """Set the bias of the log-variance outputs: the posterior starts near std e^(value/2)."""
        with torch.no_grad():
            self.muvar.bias[self.muvar.out_features // 2 :].fill_(value)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Map (B, in_dim) to ``(z, mu, logvar)``, each (B, E)."""
        mu, logvar = self.muvar(h).chunk(2, dim=-1)
        z = reparameterize(mu, logvar, sample=self.training or self.stochastic_eval)
        return z, mu, logvar
