"""mmlearn: hyperparameter studies of multimodal models when modalities are missing."""

__version__ = "0.1.0"
