"""RedCore's utterance Transformer (methods.md §1.4): sandwich-norm blocks, mean pool, sigmoid."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmlearn.models.layers._steps import valid_steps
from mmlearn.models.layers.dropout import keep_mask


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``nn.MultiheadAttention(batch_first=True)`` on (x, x, x).

    The same maths, parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``; state dicts
    are interchangeable) and initialisation, drawn in the same order, so a seed gives the same
    weights. Without dropout it runs PyTorch's fused attention (``scaled_dot_product_attention``).
    The fused CPU kernel has no dropout, so in training with dropout it computes
    ``softmax(q k^T / sqrt(d))`` itself and drops its weights with ``keep_mask``, skipping
    ``nn.MultiheadAttention``'s argument checks and per-element Bernoulli draws.

    Args:
        width: model width E.
        heads: attention heads (must divide E).
        dropout: dropout on the attention weights.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads must divide width, but got {width=} and {heads=}.")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], but got {dropout=}.")
        self.heads = heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over (B, T, E); ``padding`` is (B, T), True at keys to ignore."""
        b, t, e = x.shape
        h, d = self.heads, e // self.heads
        if not self.training or self.dropout == 0.0:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3E)
            q, k, v = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, d)
            attend = None if padding is None else ~padding[:, None, None, :]  # (B, 1, 1, T)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, H, T, d)
            out = out.transpose(1, 2).reshape(b, t, e)
            return self.out_proj(out)
        # The 1 / sqrt(d) of the scores goes on the query rows of the (3E, E) projection and
        # the dropout's 1 / (1 - p) on the (E, E) output projection: the same products, but
        # scaled on the small weights instead of on (B·H, T, T) and (B, T, E) activations.
        w, bias = self.in_proj_weight, self.in_proj_bias
        w = torch.cat([w[:e] * d**-0.5, w[e:]])
        bias = torch.cat([bias[:e] * d**-0.5, bias[e:]])
        qkv = F.linear(x, w, bias)  # (B, T, 3E), queries scaled
        qkv = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4).reshape(3, b * h, t, d)
        q, k, v = qkv.unbind(0)  # (B·H, T, d) each
        scores = torch.bmm(q, k.transpose(1, 2))  # (B·H, T, T)
        if padding is not None:
            ignored = padding[:, None, None, :]  # (B, 1, 1, T)
            scores = scores.view(b, h, t, t).masked_fill(ignored, float("-inf")).view(b * h, t, t)
        weights = torch.softmax(scores, dim=-1)
        weights = weights * keep_mask(weights.shape, self.dropout, x.device, weights.dtype)
        out = torch.bmm(weights, v).view(b, h, t, d).transpose(1, 2).reshape(b, t, e)
        rescale = 1.0 / (1.0 - self.dropout) if self.dropout < 1.0 else 0.0  # p = 1: all dropped
        return F.linear(out, self.out_proj.weight * rescale, self.out_proj.bias)


class SandwichBlock(nn.Module):
    """Residual attention block with a layer norm on both sides of each sub-layer.

    ``x <- x + LN_b(Attn(LN_a(x)))``, then ``x <- x + LN_d(MLP(LN_c(x)))``.

    Args:
        width: model width E.
        heads: attention heads (must divide E).
        attn_dropout: dropout inside attention.
        mlp_dropout: dropout after the MLP's activation (E -> 4E -> E).
    """

    def __init__(self, width: int, heads: int, attn_dropout: float, mlp_dropout: float) -> None:
        super().__init__()
        self.norm_attn_in = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, attn_dropout)
        self.norm_attn_out = nn.LayerNorm(width)
        self.norm_mlp_in = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width),
            nn.ReLU(),
            nn.Dropout(mlp_dropout),
            nn.Linear(4 * width, width),
        )
        self.norm_mlp_out = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """Apply the block to (B, T, E); ``padding`` is (B, T), True at keys to ignore."""
        h = self.norm_attn_in(x)
        x = x + self.norm_attn_out(self.attn(h, padding))
        return x + self.norm_mlp_out(self._mlp(self.norm_mlp_in(x)))  # (B, T, E)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """``self.mlp(x)``, with the dropout mask from ``keep_mask`` and its 1 / (1 - p)
        rescaling applied to the (E, 4E) weight of the last layer instead of the activations.
        """
        first, _, drop, last = self.mlp
        if not self.training or drop.p == 0.0:
            return last(F.relu(first(x)))
        h = first(x)  # (B, T, 4E)
        h = (h * keep_mask(h.shape, drop.p, h.device, h.dtype)).relu_()  # = relu(h) * keep
        rescale = 1.0 / (1.0 - drop.p) if drop.p < 1.0 else 0.0  # p = 1: all dropped
        return F.linear(h, last.weight * rescale, last.bias)


class SequenceTransformer(nn.Module):
    """Input projection, sandwich blocks, mean over time, then a sigmoid.

    As in the official code, by default attention sees every step and the mean includes the
    zero padding. With ``key_padding_mask=True`` padded steps are masked out of attention and
    of the mean.

    Args:
        in_dim: feature size D.
        width: model and output width E.
        layers: number of blocks.
        heads: attention heads.
        key_padding_mask: ignore padded steps (off in the official code).
        attn_dropout: dropout inside attention (official 0.2).
        mlp_dropout: dropout in the block MLPs (official 0.1).
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        layers: int = 3,
        heads: int = 8,
        key_padding_mask: bool = False,
        attn_dropout: float = 0.2,
        mlp_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.key_padding_mask = key_padding_mask
        self.proj = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            SandwichBlock(width, heads, attn_dropout, mlp_dropout) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, D) sequences with (B,) valid lengths to (B, E) values in (0, 1)."""
        h = self.proj(x)  # (B, T, E)
        valid = None
        if self.key_padding_mask and lengths is not None:
            valid = valid_steps(lengths, h.shape[1])  # (B, T)
        for block in self.blocks:
            h = block(h, None if valid is None else ~valid)
        if valid is None:
            pooled = h.mean(dim=1)
        else:
            weights = valid[..., None].to(h.dtype)  # (B, T, 1)
            pooled = (h * weights).sum(dim=1) / weights.sum(dim=1)
        return torch.sigmoid(pooled)  # (B, E)
