"""Backbone behaviour that is easy to get wrong: padding, key-padding masks, VIB sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmlearn.models.layers import (
    MLP,
    LSTMEncoder,
    ResidualAE,
    SequenceTransformer,
    TextCNN,
    VIBHead,
    init_weights_,
    kaiming_init_,
    variance_preserving_init_,
)
from mmlearn.models.layers._steps import valid_steps


def padded(length: int, steps: int, dim: int, fill: float, seed: int = 0) -> torch.Tensor:
    """(1, steps, dim): ``length`` seeded random steps, then ``fill`` in the padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, steps, dim), fill)
    x[:, :length] = torch.randn(1, length, dim, generator=g)
    return x


def test_valid_steps_treats_empty_sequences_as_one_step() -> None:
    mask = valid_steps(torch.tensor([0, 2, 4]), 4)
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, True],
    ]


def test_lstm_max_pool_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = LSTMEncoder(3, 5)
    length = torch.tensor([4])
    short = enc(padded(4, 4, 3, 0.0), length)
    for fill in (0.0, 9.0, -9.0):
        torch.testing.assert_close(enc(padded(4, 8, 3, fill), length), short)


def test_textcnn_ignores_padding_beyond_complete_windows() -> None:
    torch.manual_seed(0)
    enc = TextCNN(3, 6, channels=4).eval()
    length = torch.tensor([6])
    reference = enc(padded(6, 6, 3, 0.0), length)
    for fill in (0.0, 9.0):
        torch.testing.assert_close(enc(padded(6, 10, 3, fill), length), reference)
    assert enc(padded(2, 2, 3, 0.0), torch.tensor([2])).shape == (1, 6)  # shorter than kernels


def twin_transformers() -> tuple[SequenceTransformer, SequenceTransformer]:
    torch.manual_seed(0)
    off = SequenceTransformer(3, 8, layers=2, heads=2, key_padding_mask=False).eval()
    on = SequenceTransformer(3, 8, layers=2, heads=2, key_padding_mask=True).eval()
    on.load_state_dict(off.state_dict())
    return off, on


def test_transformer_key_padding_mask_changes_output_only_when_on() -> None:
    off, on = twin_transformers()
    length = torch.tensor([3])
    zero_pad, noisy_pad = padded(3, 6, 3, 0.0), padded(3, 6, 3, 5.0)
    with torch.no_grad():
        torch.testing.assert_close(on(zero_pad, length), on(noisy_pad, length))
        assert not torch.allclose(off(zero_pad, length), off(noisy_pad, length))
        assert not torch.allclose(off(zero_pad, length), on(zero_pad, length))
        full = torch.tensor([6])
        torch.testing.assert_close(off(noisy_pad, full), on(noisy_pad, full))


def test_transformer_official_mode_mean_pools_padding() -> None:
    off, _ = twin_transformers()
    x = padded(3, 6, 3, 0.0)
    with torch.no_grad():
        out = off(x, torch.tensor([3]))
        h = off.proj(x)
        for block in off.blocks:
            h = block(h, None)
        torch.testing.assert_close(out, torch.sigmoid(h.mean(dim=1)))


def test_vib_samples_in_training_and_returns_mu_in_eval() -> None:
    torch.manual_seed(0)
    head = VIBHead(4, 3)
    h = torch.randn(5, 4)
    z, mu, logvar = head(h)
    assert z.shape == mu.shape == logvar.shape == (5, 3)
    assert not torch.equal(z, mu)
    head.eval()
    z, mu, _ = head(h)
    assert torch.equal(z, mu)
    head.stochastic_eval = True
    z, mu, _ = head(h)
    assert not torch.equal(z, mu)


def test_residual_ae_cascade_with_silent_decoders_is_the_transition() -> None:
    torch.manual_seed(0)
    ae = ResidualAE(6, (5, 4), n_blocks=3, out_dim=2)
    for decoder in ae.decoders:
        for layer in decoder:
            if isinstance(layer, nn.Linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
    x = torch.randn(7, 6)
    out = ae(x)
    assert out.latents.shape == (7, 3 * 4) and ae.latent_dim == 12
    torch.testing.assert_close(out.output, ae.transition(x))


def test_vib_init_logvar_sets_only_the_logvar_bias() -> None:
    head = VIBHead(4, 3)
    mu_bias = head.muvar.bias[:3].clone()
    head.init_logvar_(-6.0)
    assert head.muvar.bias[3:].tolist() == [-6.0] * 3
    torch.testing.assert_close(head.muvar.bias[:3], mu_bias)
    _, _, logvar = head(torch.zeros(2, 4))
    assert logvar.eq(-6.0).all()


def test_variance_preserving_gain_follows_the_activation_feeding_each_layer() -> None:
    torch.manual_seed(0)
    mlp = MLP(400, (400, 400), 400, dropout=0.5)  # Linear, ReLU, Dropout, Linear, ...
    ae = ResidualAE(400, (400,), n_blocks=1)  # encoder: Linear; decoder: Linear
    stack = nn.Sequential(nn.Linear(400, 400), nn.LeakyReLU(0.2), nn.Linear(400, 400))
    for module in (mlp, ae, stack):
        variance_preserving_init_(module)
    linears = [m for m in mlp.net if isinstance(m, nn.Linear)]
    expected = [1.0, math.sqrt(2.0), math.sqrt(2.0)]  # the first reads the input
    for layer, gain in zip(linears, expected, strict=True):
        assert layer.weight.std().item() == pytest.approx(gain / 20, rel=0.02)
        assert layer.bias.abs().max().item() == 0.0
    assert stack[2].weight.std().item() == pytest.approx(math.sqrt(2 / 1.04) / 20, rel=0.02)
    assert ae.transition[2].weight.std().item() == pytest.approx(math.sqrt(2.0) / 20, rel=0.02)
    assert ae.decoders[0][-1].weight.abs().max().item() == 0.0  # residual branch starts at 0


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def test_variance_preserving_cascade_starts_as_its_transition_and_keeps_the_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 256)
    # RedCore's generator at the official sizes: 5 blocks of 256-128-64.
    official = ResidualAE(256, (256, 128, 64), n_blocks=5, out_dim=128)
    kaiming_init_(official)
    preserving = ResidualAE(256, (256, 128, 64), n_blocks=5, out_dim=128)
    init_weights_(preserving, official=False)
    with torch.no_grad():
        torch.testing.assert_close(preserving(x).output, preserving.transition(x))
        assert 0.5 < rms(preserving(x).output) < 2.0
        assert rms(official(x).output) > 20.0  # each block roughly doubles x_in + x_out
