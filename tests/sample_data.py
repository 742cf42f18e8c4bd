"""Small hand-made data sets in the source format, shared by tests."""

import numpy as np

from mmlearn.data.source import SourceData, SplitArrays
from mmlearn.data.spec import TargetSpec


def sequence_data(n: int = 6, seed: int = 0) -> SourceData:
    """Two sequence modalities (one with lengths) and a vector one, in three splits."""
    rng = np.random.default_rng(seed)

    def split(k: int) -> SplitArrays:
        lengths = rng.integers(1, 5, size=k).astype(np.int32)
        audio = rng.standard_normal((k, 4, 3), dtype=np.float32)
        audio[np.arange(4)[None, :] >= lengths[:, None]] = 0
        return SplitArrays(
            features={
                "audio": audio,
                "text": rng.standard_normal((k, 2, 5), dtype=np.float32),
                "pose": rng.standard_normal((k, 7), dtype=np.float32),
            },
            lengths={"audio": lengths},
            targets={
                "label": rng.integers(0, 3, size=k),
                "score": rng.standard_normal(k).astype(np.float32),
            },
        )

    return SourceData(
        splits={"train": split(n), "val": split(3), "test": split(4)},
        targets=(
            TargetSpec("label", "classification", ("a", "b", "c")),
            TargetSpec("score", "regression"),
        ),
        task="label",
    )
