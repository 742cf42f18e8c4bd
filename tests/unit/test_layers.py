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
    SandwichBlock,
    SelfAttention,
    SequenceTransformer,
    TextCNN,
    VIBHead,
    init_weights_,
    kaiming_init_,
    keep_mask,
    variance_preserving_init_,
)
from mmlearn.models.layers import transformer as transformer_module
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


def attention_pair(dropout: float) -> tuple[SelfAttention, nn.MultiheadAttention]:
    """Our attention and nn.MultiheadAttention built from the same seed, with O(1) weights."""
    torch.manual_seed(0)
    ours = SelfAttention(16, 4, dropout)
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(16, 4, dropout=dropout, batch_first=True)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.3)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


PADDING = torch.arange(7)[None, :] >= torch.tensor([7, 3, 1, 5, 6])[:, None]  # (5, 7)


def test_self_attention_has_the_parameters_and_init_of_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = SelfAttention(16, 4, 0.2).state_dict()
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(16, 4, dropout=0.2, batch_first=True).state_dict()
    assert list(ours) == list(reference)
    for name, value in reference.items():
        assert torch.equal(ours[name], value), name


@pytest.mark.parametrize("padding", [None, PADDING], ids=["no-mask", "key-padding-mask"])
def test_self_attention_matches_multihead_attention_without_dropout(
    padding: torch.Tensor | None,
) -> None:
    ours, reference = attention_pair(0.2)
    ours.eval()
    reference.eval()
    x = torch.randn(5, 7, 16)
    with torch.no_grad():
        expected, _ = reference(x, x, x, key_padding_mask=padding, need_weights=False)
        torch.testing.assert_close(ours(x, padding), expected, atol=1e-5, rtol=1e-5)
    # The training path (own softmax, dropout) at p -> 0 computes the same function.
    ours.train()
    ours.dropout = 1e-9
    with torch.no_grad():
        torch.testing.assert_close(ours(x, padding), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding", [None, PADDING], ids=["no-mask", "key-padding-mask"])
def test_self_attention_training_path_has_the_gradients_of_multihead_attention(
    padding: torch.Tensor | None,
) -> None:
    ours, reference = attention_pair(0.0)
    ours.double().train()
    reference.double().train()
    ours.dropout = 1e-12  # the own softmax path; nothing is dropped in practice
    x = torch.randn(5, 7, 16, dtype=torch.float64)
    g = torch.randn(5, 7, 16, dtype=torch.float64)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(x_ours, padding) * g).sum().backward()
    out, _ = reference(x_ref, x_ref, x_ref, key_padding_mask=padding, need_weights=False)
    (out * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-8, rtol=1e-8)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(ours.get_parameter(name).grad, p.grad, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("padding", [None, PADDING], ids=["no-mask", "key-padding-mask"])
def test_self_attention_drops_attention_weights_and_rescales(
    padding: torch.Tensor | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = attention_pair(0.25)
    x = torch.randn(5, 7, 16)
    keep = (torch.rand(5 * 4, 7, 7, generator=torch.Generator().manual_seed(1)) >= 0.25).float()
    monkeypatch.setattr(transformer_module, "keep_mask", lambda shape, p, device, dtype: keep)
    with torch.no_grad():
        q, k, v = (
            y.view(5, 7, 4, 4).transpose(1, 2)
            for y in nn.functional.linear(x, ours.in_proj_weight, ours.in_proj_bias).chunk(3, -1)
        )  # (B, H, T, d)
        scores = q @ k.transpose(-2, -1) / 2.0  # sqrt(d) = 2
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        weights = scores.softmax(-1) * keep.view(5, 4, 7, 7) / 0.75
        expected = ours.out_proj((weights @ v).transpose(1, 2).reshape(5, 7, 16))
        torch.testing.assert_close(ours(x, padding), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9, 0.5 / 256])
def test_keep_mask_drops_with_probability_p(p: float) -> None:
    torch.manual_seed(0)
    keep = keep_mask((1000, 2001), p)
    assert keep.shape == (1000, 2001) and keep.dtype == torch.float32
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    n = keep.numel()
    dropped = 1.0 - keep.sum().item() / n
    # 5 sigma; at p = 0.5/256 every drop comes from the tie byte, so a wrong tie rule fails.
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert keep_mask((3, 4), 0.0).eq(1.0).all()
    assert keep_mask((3, 4), 1.0, dtype=torch.bfloat16).eq(0.0).all()
    assert keep_mask((3, 5), 0.5, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_sandwich_mlp_drops_and_rescales_like_nn_dropout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    block = SandwichBlock(8, 2, attn_dropout=0.2, mlp_dropout=0.25)
    x = torch.randn(3, 5, 8)
    keep = (torch.rand(3, 5, 32) >= 0.25).float()
    monkeypatch.setattr(transformer_module, "keep_mask", lambda shape, p, device, dtype: keep)
    first, relu, _, last = block.mlp
    with torch.no_grad():
        torch.testing.assert_close(block._mlp(x), last(relu(first(x)) * keep / 0.75))
        block.eval()
        torch.testing.assert_close(block._mlp(x), block.mlp(x))


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
