"""Picking the encoder of a modality: MLP for vectors, a configurable backbone for sequences."""

from __future__ import annotations

from typing import Literal

from torch import nn

from mmlearn.data.spec import ModalitySpec
from mmlearn.models.layers.lstm import LSTMEncoder
from mmlearn.models.layers.mlp import MLPEncoder
from mmlearn.models.layers.textcnn import TextCNN
from mmlearn.models.layers.transformer import SequenceTransformer

SequenceKind = Literal["transformer", "lstm", "textcnn"]


def build_encoder(
    modality: ModalitySpec,
    hidden: int,
    sequence_kind: SequenceKind = "lstm",
    transformer_layers: int = 3,
    transformer_heads: int = 8,
    key_padding_mask: bool = False,
) -> nn.Module:
    """The encoder of one modality, mapping its features (and lengths) to (B, hidden).

    Every returned module is called as ``encoder(x, lengths)`` with ``lengths`` None for vectors.

    Args:
        modality: the modality's spec; vectors get an MLP whatever ``sequence_kind`` says.
        hidden: output size E.
        sequence_kind: backbone for sequences.
        transformer_layers: blocks of the transformer backbone.
        transformer_heads: attention heads of the transformer backbone.
        key_padding_mask: let the transformer ignore padded steps.

    Returns:
        The encoder.

    Raises:
        ValueError: if ``sequence_kind`` is not one of the known backbones.
    """
    if not modality.is_sequence:
        return MLPEncoder(modality.dim, hidden)
    if sequence_kind == "transformer":
        return SequenceTransformer(
            modality.dim, hidden, transformer_layers, transformer_heads, key_padding_mask
        )
    if sequence_kind == "lstm":
        return LSTMEncoder(modality.dim, hidden)
    if sequence_kind == "textcnn":
        return TextCNN(modality.dim, hidden, channels=hidden)
    raise ValueError(
        f"sequence_kind must be one of ('transformer', 'lstm', 'textcnn'), "
        f"but got {sequence_kind=}."
    )
