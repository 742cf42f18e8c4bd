"""The baseline of the RedCore anchor: the official training step, rebuilt for the machine at hand.

The issue's figure for the official code (171 samples/s with its EMA leak fixed) was taken on
one machine; a throughput measured on another CPU cannot be divided by it. This module rebuilds
the official step at MOSEI settings from its description in ``methods.md`` (§1.4 architecture,
§1.5 loss, §1.6 weighter, §6 pitfalls), with the stock PyTorch modules the official code is
made of, so that ``tests.benchmarks.methods`` measures the baseline and our model on the same
machine in the same run. It is written from that description, not taken from the official code.

What it keeps because it costs time in the official step:
- encoders: input projection, 3 sandwich blocks of ``nn.MultiheadAttention`` (dropout 0.2,
  ``need_weights=False``) and an E -> 4E -> E MLP with ``nn.Dropout(0.1)``, layer norms that cast
  to float32, a mean pool, a sigmoid and the VIB ``muvar`` layer with sampling; their unused
  attention-pooling parameters go to Adam too;
- the dead MMIN autoencoders ``netAE`` and ``netAE_cycle`` on [z_A, z_L, z_V], which run in the
  forward pass although no loss reads them, and ``netC``, which never runs;
- three cross-modal ``ResidualXE`` generators, four ``FcClassifier`` heads, completion by the mask;
- the loss of §1.5 (KL without its ½, target not detached, ``MSELoss(reduction='sum') / n_m``);
  the weighter's EMA held as floats (the leak fix: the official EMA keeps every step's graph);
- ``clip_grad_norm_(..., 1.0)`` once per sub-network, then one ``torch.optim.Adam`` step.

Inputs are random MOSEI-shaped tensors (text 768, audio 74, vision 35; 50 steps), zero-filled
by per-sample masks drawn at the benchmark's rates, as the official ``set_input`` does.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

WIDTH = 96  # E at MOSEI settings
AE_LAYERS = (160, 80, 32)
BLOCKS = 5
CLS_LAYERS = (96, 96)
KL_LAMBDA = 0.0008
MSE_WEIGHT = 0.15
EMA_WEIGHT = 0.7  # weight of the new value
ETA, ETA_GROWTH, BETA_INTERVAL = 0.1, 1.5, 3


class Float32LayerNorm(nn.LayerNorm):
    """The official layer norm: computed in float32, returned in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class Block(nn.Module):
    """``x + LN(Attn(LN(x)))``, then ``x + LN(MLP(LN(x)))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=0.2, batch_first=True)
        self.norms = nn.ModuleList(Float32LayerNorm(width) for _ in range(4))
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norms[0](x)
        x = x + self.norms[1](self.attn(h, h, h, need_weights=False)[0])
        return x + self.norms[3](self.mlp(self.norms[2](x)))


class VIBTransformer(nn.Module):
    """Projection, blocks, mean pool, sigmoid, then (z, mu, logvar) from a sampled Gaussian."""

    def __init__(self, in_dim: int, width: int = WIDTH, layers: int = 3, heads: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.muvar = nn.Linear(width, 2 * width)
        # built by the official encoder for attention pooling, never used, but handed to Adam
        self.pool_vector = nn.Parameter(torch.zeros(width, 1))
        self.pool_layer = nn.Sequential(nn.Linear(width, width), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.sigmoid(self.blocks(self.proj(x)).mean(dim=1))  # (B, E)
        mu, logvar = self.muvar(h).view(-1, 2, h.shape[1]).unbind(1)
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), mu, logvar


def mlp(sizes: list[int], hidden_act: type[nn.Module]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ``hidden_act`` between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(hidden_act())
    return nn.Sequential(*layers)


class ResidualCascade(nn.Module):
    """MMIN's residual autoencoder cascade: ``x_in += x_out`` before each block, then a
    transition ``Linear, ReLU, Linear`` of ``x_in + x_out``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            mlp([in_dim, *AE_LAYERS], nn.LeakyReLU) for _ in range(BLOCKS)
        )
        self.decoders = nn.ModuleList(
            mlp([*reversed(AE_LAYERS), in_dim], nn.ReLU) for _ in range(BLOCKS)
        )
        self.transition = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in, x_out = x, torch.zeros_like(x)
        latents = []
        for encoder, decoder in zip(self.encoders, self.decoders, strict=True):
            x_in = x_in + x_out
            latents.append(encoder(x_in))
            x_out = decoder(latents[-1])
        torch.cat(latents, dim=-1)  # the official cascade also returns its latents
        return self.transition(x_in + x_out)


def classifier(in_dim: int, classes: int) -> nn.Sequential:
    """``[Linear, ReLU, Dropout(0.5)] x 2 -> Linear``."""
    a, b = CLS_LAYERS
    return nn.Sequential(
        nn.Linear(in_dim, a), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(b, classes),
    )  # fmt: skip


class OfficialRedCore(nn.Module):
    """The official model's sub-networks, keyed as the official ``model_names``."""

    def __init__(self, dims: dict[str, int], classes: int) -> None:
        super().__init__()
        e = WIDTH
        self.nets = nn.ModuleDict(
            {
                "A": VIBTransformer(dims["audio"]),
                "V": VIBTransformer(dims["vision"]),
                "L": VIBTransformer(dims["text"]),
                "C": classifier(AE_LAYERS[-1] * BLOCKS, classes),
                "AE": ResidualCascade(3 * e, 3 * e),
                "AE_cycle": ResidualCascade(3 * e, 3 * e),
                "Cls": classifier(3 * e, classes),
                "xenc_al2v": ResidualCascade(2 * e, e),
                "xenc_av2l": ResidualCascade(2 * e, e),
                "xenc_vl2a": ResidualCascade(2 * e, e),
                "Cls_a": classifier(e, classes),
                "Cls_v": classifier(e, classes),
                "Cls_l": classifier(e, classes),
            }
        )


class OfficialStep:
    """One official training step: forward, loss, weighter, backward, clipping, Adam."""

    def __init__(self, model: OfficialRedCore) -> None:
        self.model = model
        groups = [{"params": net.parameters()} for net in model.nets.values()]
        self.optimizer = torch.optim.Adam(groups, lr=2e-4, betas=(0.9, 0.999))
        self.ema = [0.0, 0.0, 0.0]
        self.beta = [1.0, 1.0, 1.0]
        self.eta = ETA
        self.step = 0

    def __call__(self, x: dict[str, torch.Tensor], mask: torch.Tensor, y: torch.Tensor) -> None:
        """``x``: modality -> (B, T, D); ``mask``: (B, 3) float, 1 = present, columns A, V, L."""
        n = self.model.nets
        index = {m: mask[:, i : i + 1] for i, m in enumerate("AVL")}  # (B, 1) each
        feats = {"A": x["audio"], "V": x["vision"], "L": x["text"]}
        z, mu, logvar = {}, {}, {}
        for m in "AVL":
            z[m], mu[m], logvar[m] = n[m](feats[m] * index[m][:, :, None])
        fused = torch.cat([z["A"], z["L"], z["V"]], dim=-1)
        n["AE_cycle"](n["AE"](fused))  # dead: runs, read by no loss
        gen = {
            "A": n["xenc_vl2a"](torch.cat([z["V"], z["L"]], dim=-1)),
            "L": n["xenc_av2l"](torch.cat([z["A"], z["V"]], dim=-1)),
            "V": n["xenc_al2v"](torch.cat([z["A"], z["L"]], dim=-1)),
        }
        r = {m: index[m] * z[m] - (index[m] - 1) * gen[m] for m in "AVL"}
        loss = F.cross_entropy(n["Cls"](torch.cat([r["A"], r["L"], r["V"]], dim=-1)), y)
        batch = len(y)
        recon = []
        for m in "AVL":
            loss = loss + F.cross_entropy(n[f"Cls_{m.lower()}"](r[m]), y)
            kl = 1 + logvar[m] - mu[m].pow(2) - logvar[m].exp()
            loss = loss - KL_LAMBDA * torch.sum(kl * index[m]) / batch
            recon.append(
                F.mse_loss(gen[m] * index[m], z[m] * index[m], reduction="sum") / index[m].sum()
            )
        self._update_weights([float(v.detach()) for v in recon])
        loss = loss + MSE_WEIGHT * sum(b * v for b, v in zip(self.beta, recon, strict=True))
        self.optimizer.zero_grad()
        loss.backward()
        for net in n.values():
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        self.optimizer.step()

    def _update_weights(self, recon: list[float]) -> None:
        for i, value in enumerate(recon):
            if value != 0 and not math.isnan(value):  # n_m = 0 gives 0/0: keep the EMA
                self.ema[i] = (1 - EMA_WEIGHT) * self.ema[i] + EMA_WEIGHT * value
        mean = sum(self.ema) / 3
        advantage = [(mean - v) / mean for v in self.ema]
        if self.step % 500 == 0:
            self.eta *= ETA_GROWTH
        if self.step % BETA_INTERVAL == 0:
            beta = [max(0.1, b - self.eta * a) for b, a in zip(self.beta, advantage, strict=True)]
            norm = sum(b * b for b in beta) ** 0.5
            self.beta = [b / norm for b in beta]
        self.step += 1


def samples_per_second(
    dims: dict[str, int], classes: int, rates: dict[str, float], batch: int, steps: int,
    epochs: int, length: int = 50,
) -> float:  # fmt: skip
    """Train ``epochs`` epochs of ``steps`` random batches; samples/s of all but the first."""
    torch.manual_seed(0)
    model = OfficialRedCore(dims, classes).train()
    step = OfficialStep(model)
    keep = torch.tensor([1 - rates["audio"], 1 - rates["vision"], 1 - rates["text"]])
    data = [
        (
            {m: torch.randn(batch, length, d) for m, d in dims.items()},
            torch.bernoulli(keep.expand(batch, 3)),
            torch.randint(classes, (batch,)),
        )
        for _ in range(steps)
    ]
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for x, mask, y in data:
            step(x, mask, y)
        seconds.append(time.perf_counter() - started)
    return steps * batch * (epochs - 1) / sum(seconds[1:])
