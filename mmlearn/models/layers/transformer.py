"""RedCore's utterance Transformer (methods.md §1.4): sandwich-norm blocks, mean pool, sigmoid."""

from __future__ import annotations

import torch
from torch import nn

from mmlearn.models.layers._steps import valid_steps


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
        self.attn = nn.MultiheadAttention(width, heads, dropout=attn_dropout, batch_first=True)
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
        h, _ = self.attn(h, h, h, key_padding_mask=padding, need_weights=False)
        x = x + self.norm_attn_out(h)
        return x + self.norm_mlp_out(self.mlp(self.norm_mlp_in(x)))  # (B, T, E)


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
