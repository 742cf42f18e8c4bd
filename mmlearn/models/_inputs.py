"""What a method may read of a batch: zero-filled features of the modalities it sees.

Every method reads its inputs through ``zero_filled`` so that predictions never depend on the
content of absent modalities (methods.md §1.3: zero-fill at the raw input).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from mmlearn.data.batch import Batch
from mmlearn.data.spec import DatasetSpec
from mmlearn.errors import ConfigError
from mmlearn.models.hparams import EncoderHParams
from mmlearn.models.layers import build_encoder


def build_encoders(spec: DatasetSpec, hp: EncoderHParams) -> nn.ModuleDict:
    """One encoder per modality of ``spec``, each mapping its input to (B, hp.hidden).

    Raises:
        ConfigError: if ``hp.encoder_overrides`` names a modality that ``spec`` lacks or that
            is not a sequence.
    """
    for name in hp.encoder_overrides:
        if name not in spec.names or not spec[name].is_sequence:
            sequences = [m.name for m in spec.modalities if m.is_sequence]
            raise ConfigError(
                f"encoder_overrides.{name}: must name a sequence modality of the data set "
                f"(sequences: {sequences})"
            )
    return nn.ModuleDict(
        {
            m.name: build_encoder(
                m,
                hp.hidden,
                hp.encoder_overrides.get(m.name, hp.sequence_encoder),
                hp.transformer_layers,
                hp.transformer_heads,
                hp.key_padding_mask,
            )
            for m in spec.modalities
        }
    )


def zero_filled(
    batch: Batch, seen: torch.Tensor | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Features and lengths that hold nothing of the modalities a model does not see.

    Unseen features are zero-filled. An unseen sequence gets its full padded length T, so a
    length-aware encoder sees the same all-zero sequence whatever length was stored.

    Args:
        batch: the batch.
        seen: (B, M) bool, a subset of ``batch.present`` (e.g. after a model's own modality
            drop); None means ``batch.present``.

    Returns:
        ``(features, lengths)`` keyed by modality name; lengths only for sequences.
    """
    seen = batch.present if seen is None else seen & batch.present  # (B, M)
    features, lengths = {}, {}
    for m, name in enumerate(batch.modalities):
        x = batch.features[name]
        keep = seen[:, m].view(-1, *([1] * (x.dim() - 1)))
        features[name] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        if name in batch.lengths:
            full = torch.full_like(batch.lengths[name], x.shape[1])
            lengths[name] = torch.where(seen[:, m], batch.lengths[name], full)
    return features, lengths


def encode(
    encoders: nn.ModuleDict, batch: Batch, seen: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Each modality's (B, E) encoding of its zero-filled input (see ``zero_filled``)."""
    features, lengths = zero_filled(batch, seen)
    return {name: enc(features[name], lengths.get(name)) for name, enc in encoders.items()}


def columns(batch: Batch, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The columns of a (B, M) mask keyed by modality name, each (B,)."""
    return {name: mask[:, m] for m, name in enumerate(batch.modalities)}


def pattern_bits(mask: torch.Tensor) -> torch.Tensor:
    """(B,) int64 bitmask of a (B, M) bool mask: bit m set when column m is True."""
    weights = 2 ** torch.arange(mask.shape[1], device=mask.device)  # (M,)
    return (mask.long() * weights).sum(dim=1)


def _subsets(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pattern over the M modalities, and which of them lie inside each sample's.

    Args:
        present: (B, M) bool.

    Returns:
        (P, M) bool, the P = 2^M patterns (the empty one first), and (B, P) bool: pattern p
        is a subset of sample b's present modalities.
    """
    m = present.shape[1]
    options = torch.tensor(
        list(itertools.product([False, True], repeat=m)), device=present.device
    )  # (P, M)
    inside = ~(options[None] & ~present[:, None]).any(dim=-1)  # (B, P)
    return options, inside


def drop_independent(present: torch.Tensor, p: float) -> torch.Tensor:
    """Drop each present modality with probability ``p``, keeping at least one per sample.

    A sample that would lose every present modality is drawn again (UME-MMA's branch drop,
    methods.md §3.3); samples with nothing present stay empty. Rather than redrawing until
    no sample is empty (a loop whose length the host must read from the device), each sample
    draws its kept subset S of its n present modalities from the same law in one step:
    P(S) is proportional to (1 - p)^|S| p^(n - |S|) over the non-empty S.

    Args:
        present: (B, M) bool.
        p: drop probability in [0, 1).

    Returns:
        (B, M) bool, a subset of ``present``.
    """
    options, inside = _subsets(present)
    kept = options.sum(dim=1).to(torch.float64)  # (P,)
    n = present.sum(dim=1, keepdim=True).to(torch.float64)  # (B, 1)
    weight = (1.0 - p) ** kept * torch.pow(torch.full_like(n, p), n - kept)  # (B, P)
    allowed = inside & ((kept > 0) | (n == 0))  # (B, P): non-empty, unless nothing is present
    choice = torch.multinomial(torch.where(allowed, weight, 0.0), 1).squeeze(1)  # (B,)
    return options[choice]


def drop_to_incomplete(present: torch.Tensor) -> torch.Tensor:
    """Per sample, a uniformly drawn non-empty proper subset of its present modalities.

    MMIN's training masks (methods.md §4.2): with all M present this is uniform over the
    2^M - 2 incomplete patterns. Samples with fewer than two present modalities are unchanged.
    Drawn for every sample at once, with no host-side test of which samples can change.

    Args:
        present: (B, M) bool.

    Returns:
        (B, M) bool, a subset of ``present``.
    """
    options, inside = _subsets(present)
    nonempty = options.any(dim=1)  # (P,)
    proper = (options[None] != present[:, None]).any(dim=-1)  # (B, P)
    allowed = inside & proper & nonempty  # (B, P)
    same = ~proper  # (B, P): the sample's own pattern, drawn when nothing else is allowed
    weights = torch.where(allowed.any(dim=1, keepdim=True), allowed, same).float()  # (B, P)
    return options[torch.multinomial(weights, 1).squeeze(1)]
