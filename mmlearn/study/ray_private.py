"""Every use of Ray's private API in mmlearn, in one place (written against Ray 2.60).

Ray offers no public way to do either of these; when Ray changes, this is the module to check.

- ``trial_trainable`` subclasses the class Tune builds from a function trainable
  (``ray.tune.trainable.function_trainable.wrap_function``) to change how it restores: Tune
  hands ``restore`` a ``ray.train._internal.session._TrainingResult`` naming the checkpoint
  to load, which may already be deleted after a driver was killed.
- ``TorchTrainerWithoutDatasets`` drops Train V2's ``DatasetsCallback``
  (``ray.train.v2._internal.callbacks.datasets``), which starts an actor per run for Ray
  Data even when the run passes no datasets.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow.fs
import ray.train.torch
from ray.train._internal.session import _TrainingResult
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.trainable.function_trainable import wrap_function


def trial_trainable(fn: Any, name: str) -> type:
    """``fn`` (``run_trial`` with the study's setup) as a Tune trainable class named ``name``
    that restores from the newest checkpoint its trial folder holds when the one Tune asks for
    is gone.

    Tune deletes a trial's older checkpoint as soon as it registers a newer one, but uploads
    the experiment state that names the checkpoint in the background; a driver killed in
    between leaves a state naming a deleted checkpoint, and every restore of that trial
    failed ("does not exist on storage anymore"). The newer checkpoint holds the same run one
    or more epochs on, and ``fit`` resumes from whatever epoch a checkpoint holds.
    """
    base = wrap_function(fn, name=name)

    class Trainable(base):  # type: ignore[misc, valid-type]
        def restore(self, checkpoint_path: Any) -> Any:
            if isinstance(checkpoint_path, _TrainingResult):
                checkpoint_path = newest_existing(checkpoint_path)
                if checkpoint_path is None:  # nothing left: the trial starts afresh
                    return None
            return super().restore(checkpoint_path)

    Trainable.__name__ = Trainable.__qualname__ = name
    return Trainable


def newest_existing(result: _TrainingResult) -> _TrainingResult | None:
    """``result`` if its checkpoint exists, else one for the newest ``checkpoint_*`` folder
    beside it (its metrics with that checkpoint's iteration), or None if there is none."""
    fs, path = result.checkpoint.filesystem, result.checkpoint.path
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        return result
    folder = posixpath.dirname(path)
    found = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    names = sorted(
        f.base_name
        for f in found
        if f.type == pyarrow.fs.FileType.Directory and f.base_name.startswith("checkpoint_")
    )
    if not names:
        return None
    newest = ray.train.Checkpoint(posixpath.join(folder, names[-1]), filesystem=fs)
    # A trial checkpoints every epoch, so checkpoint_k is iteration k + 1: the count that
    # ASHA and the searcher read (a full-length trial must not look stopped early)
    iteration = int(names[-1].removeprefix("checkpoint_")) + 1
    return _TrainingResult(
        checkpoint=newest, metrics={**result.metrics, TRAINING_ITERATION: iteration}
    )


class TorchTrainerWithoutDatasets(ray.train.torch.TorchTrainer):
    """A ``TorchTrainer`` without Ray Data's dataset manager, an actor (so a process) per run
    that a trial, which reads its own feature store and passes no datasets, never uses."""

    def _create_default_callbacks(self) -> list[Any]:
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]
