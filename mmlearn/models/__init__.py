"""Missing-modality methods behind one registry; importing this package registers them all."""

from mmlearn.models import dmrnet, fusion, mmin, redcore, registry, ume_mma  # noqa: F401  (registration)
from mmlearn.models._experimental import ExperimentalWarning
from mmlearn.models.base import LossOutput, MissingModalityModel, ModelOutput, Stage
from mmlearn.models.hparams import HParams
from mmlearn.models.registry import (
    build,
    default_search_space,
    hparams_class,
    names,
    register,
    train_protocol,
)

__all__ = [
    "ExperimentalWarning",
    "HParams",
    "LossOutput",
    "MissingModalityModel",
    "ModelOutput",
    "Stage",
    "build",
    "default_search_space",
    "hparams_class",
    "names",
    "register",
    "registry",
    "train_protocol",
]
