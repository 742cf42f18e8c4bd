"""Batches from a memory-mapped split, with missing-modality masks.

The hot path gathers whole rows with one ``np.take`` per array and batch; there is no
per-sample Python. Training cuts each global batch of a seeded permutation into equal slices,
one per rank, with equal step counts (wrapping around, like torch's DistributedSampler), so W
ranks of batch B train on the same global batches as one process of batch W * B. Evaluation
gives each rank a disjoint shard, so that summed over ranks every (sample, pattern) pair is
counted exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mmlearn.data.batch import Batch
from mmlearn.data.missing import MissingProtocol, Pattern, evaluation_patterns, pattern_bits
from mmlearn.data.spec import DatasetSpec
from mmlearn.data.store import StoreSplit


class SplitLoader:
    """Yields ``Batch``es of one split for one rank.

    Args:
        split: an opened store split.
        spec: which modalities (in order) and which target to serve.
        batch_size: samples per batch on this rank.
        rank: this process's rank.
        world_size: number of ranks sharing the split.
        seed: shuffling seed (masks have their own, in the protocol).
    """

    def __init__(
        self,
        split: StoreSplit,
        spec: DatasetSpec,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, but got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got {rank=}, {world_size=}.")
        self.split = split
        self.spec = spec
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self._modalities = spec.names
        self._labels = split.targets[spec.target.name]

    @property
    def samples_per_rank(self) -> int:
        """Training samples each rank sees per epoch (ceil(N / world_size))."""
        return -(-len(self.split) // self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch, the same on every rank."""
        return -(-self.samples_per_rank // self.batch_size)

    def train(self, protocol: MissingProtocol, epoch: int) -> Iterator[Batch]:
        """One shuffled epoch with the protocol's masks for ``epoch``."""
        if protocol.modalities != self._modalities:
            raise ValueError(
                f"protocol modalities {protocol.modalities} differ from the loader's "
                f"{self._modalities}."
            )
        n = len(self.split)
        present = protocol.train_mask(n, epoch)  # (N, M)
        order = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(n)
        total = self.samples_per_rank * self.world_size
        order = np.resize(order, total)  # wraps around so every rank gets as many samples
        step = self.batch_size * self.world_size
        for start in range(0, total, step):
            # Rank r takes the r-th equal slice of each global batch, so W ranks of batch B
            # see the same global batches as one process of batch W * B.
            share = min(self.batch_size, (total - start) // self.world_size)
            first = start + self.rank * share
            idx = np.sort(order[first : first + share])
            yield self._batch(idx, present[idx])

    def evaluate(self, patterns: Sequence[Pattern] | None = None) -> Iterator[Batch]:
        """Every sample of this rank's shard under every pattern (default: all non-empty)."""
        patterns = evaluation_patterns(self._modalities) if patterns is None else patterns
        shard = np.arange(self.rank, len(self.split), self.world_size)
        for pattern in patterns:
            row = np.array(pattern.present, dtype=bool)
            for start in range(0, len(shard), self.batch_size):
                idx = shard[start : start + self.batch_size]
                yield self._batch(idx, np.broadcast_to(row, (len(idx), len(row))))

    def _batch(self, idx: np.ndarray, present: np.ndarray) -> Batch:
        features = {
            m: torch.from_numpy(np.take(self.split.features[m], idx, axis=0))
            for m in self._modalities
        }
        lengths = {}
        for m in self._modalities:
            if m in self.split.lengths:
                lengths[m] = torch.from_numpy(np.take(self.split.lengths[m], idx).astype(np.int64))
            elif self.spec[m].is_sequence:
                lengths[m] = torch.full((len(idx),), self.spec[m].max_len, dtype=torch.int64)
        return Batch(
            modalities=self._modalities,
            features=features,
            lengths=lengths,
            present=torch.from_numpy(np.ascontiguousarray(present)),
            labels=torch.from_numpy(np.take(self._labels, idx)),
            pattern=torch.from_numpy(pattern_bits(present)),
            index=torch.from_numpy(idx.astype(np.int64)),
        )
