"""The initialisation of the MMIN/RedCore code base (``init_net`` with ``init_type=kaiming``)."""

from __future__ import annotations

from torch import nn


def kaiming_init_(module: nn.Module) -> None:
    """Re-initialise every Linear and Conv1d inside ``module`` in place.

    Weights get kaiming_normal (fan_in), biases 0; everything else (LSTM, LayerNorm, the packed
    attention input projection) keeps its own initialisation, as in the official code.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv1d):
            nn.init.kaiming_normal_(sub.weight, a=0.0, mode="fan_in")
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
