"""Data layer: feature stores, sources, missing-modality protocols and batches."""

from mmlearn.data.batch import Batch
from mmlearn.data.loader import SplitLoader
from mmlearn.data.missing import MissingProtocol, Pattern, evaluation_patterns
from mmlearn.data.spec import DatasetSpec, ModalitySpec, TargetSpec
from mmlearn.data.store import FeatureStore, StoreSplit, open_store

__all__ = [
    "Batch",
    "DatasetSpec",
    "FeatureStore",
    "MissingProtocol",
    "ModalitySpec",
    "Pattern",
    "SplitLoader",
    "StoreSplit",
    "TargetSpec",
    "evaluation_patterns",
    "open_store",
]
