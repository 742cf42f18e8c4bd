"""Data layer: feature stores, sources, missing-modality protocols and batches.

Import from the modules (``mmlearn.data.store``, ``mmlearn.data.missing``, ...): this package
imports nothing, so the command line starts without loading torch.
"""
