"""Backbones and building blocks shared by the methods; one idea per module."""

from mmlearn.models.layers.dropout import keep_mask
from mmlearn.models.layers.encoders import SequenceKind, build_encoder
from mmlearn.models.layers.init import init_weights_, kaiming_init_, variance_preserving_init_
from mmlearn.models.layers.lstm import LSTMEncoder
from mmlearn.models.layers.mlp import MLP, MLPEncoder
from mmlearn.models.layers.residual_ae import ResidualAE, ResidualAEOutput
from mmlearn.models.layers.textcnn import TextCNN
from mmlearn.models.layers.transformer import SandwichBlock, SelfAttention, SequenceTransformer
from mmlearn.models.layers.vib import VIBHead, gaussian_kl, reparameterize

__all__ = [
    "LSTMEncoder",
    "MLP",
    "MLPEncoder",
    "ResidualAE",
    "ResidualAEOutput",
    "SandwichBlock",
    "SelfAttention",
    "SequenceKind",
    "SequenceTransformer",
    "TextCNN",
    "VIBHead",
    "build_encoder",
    "gaussian_kl",
    "init_weights_",
    "kaiming_init_",
    "keep_mask",
    "reparameterize",
    "variance_preserving_init_",
]
