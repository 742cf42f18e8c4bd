"""Checkpoints of a fit: everything needed to continue it as if it had never stopped.

Layout of one checkpoint directory (every rank calls ``save_checkpoint`` with the same path)::

    progress.json        epochs done, selection state, history of epoch reports (rank 0)
    deepspeed/           DeepSpeed's own checkpoint: module state_dict (with the model's extra
                         state, e.g. RedCore's weighter), optimizer, LR scheduler, step count
    rng-rank<r>.pt       the RNG states of rank r (python, numpy, torch, and the
                         generator of the rank's current CUDA device only)
    best.pt              state_dict of the best epoch so far (rank 0)

Resuming needs the same world size: ZeRO partitions the optimizer state by rank.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mmlearn.errors import DataError
from mmlearn.train._deepspeed import DeepSpeedEngine
from mmlearn.train.distributed import current_world

PROGRESS = "progress.json"
BEST = "best.pt"
_DEEPSPEED = "deepspeed"
_TAG = "state"
_FORMAT = 1


@dataclass
class Progress:
    """Where a fit stands after its last completed epoch.

    Attributes:
        epochs_done: epochs completed over the whole fit.
        engine_first_epoch: the epoch at which the current DeepSpeed engine (optimizer and
            LR scheduler) was created; its scheduler counts steps from there.
        world_size: number of ranks that trained.
        best_epoch: the best epoch of the method's final stage so far (1-based), or None
            before the final stage (only its epochs are selected).
        best_score: its selection score, or None with ``best_epoch``.
        history: the epoch reports so far, oldest first.
    """

    epochs_done: int
    engine_first_epoch: int
    world_size: int
    best_epoch: int | None = None
    best_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def device_generator() -> torch.Generator | None:
    """The default RNG of this process's current CUDA device, or None without CUDA.

    A rank trains on one device, whose index depends on the placement (Ray hands a trial a
    ``CUDA_VISIBLE_DEVICES`` of its own, torchrun one device of several), so checkpoints hold
    this generator's state only. Saving every visible device's state, as
    ``torch.cuda.get_rng_state_all`` does, restores another GPU's stream under another
    placement and fails with an IndexError on a node with fewer visible GPUs.
    """
    if not torch.cuda.is_available():
        return None
    return torch.cuda.default_generators[torch.cuda.current_device()]


def _rng_state(device: torch.Generator | None) -> dict[str, Any]:
    """This process's RNG states, with ``device``'s (its current CUDA device's) if given."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device is not None:
        state["device"] = device.get_state()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.Generator | None) -> None:
    """Restore what ``_rng_state`` saved; a device state goes to ``device``.

    A checkpoint written without a device state leaves ``device`` as seeded; one written on a
    GPU restores on a CPU without its device state.
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device is not None and "device" in state:
        device.set_state(state["device"])


def _barrier() -> None:
    if current_world().world_size > 1:
        dist.barrier()


def save_checkpoint(
    path: str | Path, engine: DeepSpeedEngine, progress: Progress, best_state: dict[str, Any]
) -> Path:
    """Write a checkpoint of ``engine`` and the fit's ``progress``; every rank must call this.

    Args:
        path: the checkpoint directory (created; the same on every rank).
        engine: the DeepSpeed engine of the current stage.
        progress: the fit's progress after its last completed epoch.
        best_state: the model's state_dict at the best epoch so far.

    Returns:
        ``path``.
    """
    path = Path(path)
    rank = current_world().rank
    path.mkdir(parents=True, exist_ok=True)
    engine.save_checkpoint(str(path / _DEEPSPEED), tag=_TAG)
    torch.save(_rng_state(device_generator()), path / f"rng-rank{rank}.pt")
    if rank == 0:
        torch.save(best_state, path / BEST)
        record = {"format": _FORMAT, **dataclasses.asdict(progress)}
        (path / PROGRESS).write_text(json.dumps(record, indent=1))
    _barrier()
    return path


def read_progress(path: str | Path) -> Progress:
    """The progress recorded in the checkpoint at ``path``.

    Raises:
        DataError: ``path`` is not a checkpoint of this format.
    """
    file = Path(path) / PROGRESS
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read checkpoint progress {file}: {e}.") from e
    if record.pop("format", None) != _FORMAT:
        raise DataError(f"{file} is not an mmlearn checkpoint of format {_FORMAT}.")
    return Progress(**record)


def load_checkpoint(path: str | Path, engine: DeepSpeedEngine) -> dict[str, Any]:
    """Restore ``engine`` (module, optimizer, scheduler) and this rank's RNG from ``path``.

    ``engine`` must have been built for the same stage, parameter groups and world size as the
    one that was saved. Every rank must call this.

    Returns:
        The best epoch's state_dict stored with the checkpoint.

    Raises:
        DataError: the checkpoint is incomplete.
    """
    path = Path(path)
    rank = current_world().rank
    loaded, _ = engine.load_checkpoint(str(path / _DEEPSPEED), tag=_TAG)
    if loaded is None:
        raise DataError(f"{path / _DEEPSPEED} holds no DeepSpeed checkpoint {_TAG!r}.")
    rng_file = path / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        raise DataError(f"{rng_file} is missing; was the checkpoint written by fewer ranks?")
    _set_rng_state(torch.load(rng_file, weights_only=False), device_generator())
    return load_best_state(path)


def load_best_state(path: str | Path) -> dict[str, Any]:
    """The best epoch's state_dict stored in the checkpoint at ``path`` (on the CPU).

    Use ``model.load_state_dict(load_best_state(path))`` to evaluate the selected model.

    Raises:
        DataError: the file is missing.
    """
    file = Path(path) / BEST
    if not file.is_file():
        raise DataError(f"{file} is missing; {path} is not a complete mmlearn checkpoint.")
    return torch.load(file, map_location="cpu", weights_only=False)
