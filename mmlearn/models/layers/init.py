"""Weight initialisation of the methods ported from the MMIN/RedCore code base.

``kaiming_init_`` is the official ``init_net`` (``init_type=kaiming``): every Linear and Conv1d
gets kaiming-normal (fan_in) weights, gain sqrt(2), and zero biases. That gain preserves the
signal only for layers that read a ReLU; the first layer of every stack reads a linear signal
and doubles its variance. In a residual autoencoder block (methods.md §1.4) that makes the
branch output about twice its input, so ``x_in <- x_in + x_out`` grows about 2.2 times per
block: the 5-block cascade of RedCore's generators and MMIN's imagination amplifies its input
about 50 times at initialisation (RedCore on mfeat: generator outputs of RMS ~100, first-step
reconstruction loss ~3e5, logits of RMS ~300).

``variance_preserving_init_`` (the default) keeps the signal's scale instead: each layer's gain
matches the activation that feeds it, and every residual branch starts at zero, so each block
of a cascade starts as the identity.
"""

from __future__ import annotations

import math

from torch import nn

from mmlearn.models.layers.residual_ae import ResidualAE


def kaiming_init_(module: nn.Module) -> None:
    """Re-initialise every Linear and Conv1d inside ``module`` in place, as the official code.

    Weights get kaiming_normal (fan_in), biases 0; everything else (LSTM, LayerNorm, the packed
    attention input projection) keeps its own initialisation, as in the official code.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv1d):
            nn.init.kaiming_normal_(sub.weight, a=0.0, mode="fan_in")
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


def _gain(activation: nn.Module | None) -> float:
    """Gain that keeps the second moment through a layer reading ``activation``'s output."""
    if isinstance(activation, nn.ReLU):
        return math.sqrt(2.0)
    if isinstance(activation, nn.LeakyReLU):
        return math.sqrt(2.0 / (1.0 + activation.negative_slope**2))
    return 1.0


def variance_preserving_init_(module: nn.Module) -> None:
    """Re-initialise every Linear and Conv1d inside ``module`` so signals keep their scale.

    Weights are normal with std ``gain / sqrt(fan_in)`` and biases 0, where the gain is sqrt(2)
    for a layer that reads a ReLU inside its ``nn.Sequential`` (dropout in between is skipped),
    the matching value after a LeakyReLU, and 1 otherwise (a layer reading a linear signal or
    one from outside its stack). Then the last decoder layer of every ``ResidualAE`` block is
    zeroed, so each block adds nothing at first and the cascade starts as its transition
    (zero-initialised residual branches, as in Goyal et al. 2017 and Fixup). Modules other than
    Linear and Conv1d keep their own initialisation, as in ``kaiming_init_``.
    """
    feeds: dict[nn.Module, nn.Module] = {}
    for seq in module.modules():
        if isinstance(seq, nn.Sequential):
            previous = None
            for layer in seq:
                if isinstance(layer, nn.Dropout):
                    continue
                if previous is not None:
                    feeds[layer] = previous
                previous = layer
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv1d):
            std = _gain(feeds.get(sub)) / math.sqrt(sub.weight[0].numel())  # fan_in
            nn.init.normal_(sub.weight, 0.0, std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
    for sub in module.modules():
        if isinstance(sub, ResidualAE):
            for decoder in sub.decoders:
                nn.init.zeros_(decoder[-1].weight)


def init_weights_(module: nn.Module, official: bool) -> None:
    """``kaiming_init_`` when ``official``, else ``variance_preserving_init_``."""
    (kaiming_init_ if official else variance_preserving_init_)(module)
