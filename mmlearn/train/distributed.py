"""Process groups: reuse the caller's, make a one-process one, or launch N local processes.

Under Ray Train (or torchrun) the process group exists before ``fit`` runs and is reused.
Without one, ``process_group`` creates a one-process group backed by an in-memory store, so a
world of size 1 opens no port. ``run_distributed`` starts N processes on this machine with
``torch.multiprocessing.spawn``, rendezvousing on a free port of 127.0.0.1; it is meant for
tests and local runs. Backends: nccl when CUDA is available, gloo otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmlearn.train._deepspeed import deepspeed

log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int
    world_size: int


def current_world() -> World:
    """The rank and world size of the default process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World(0, 1)


def default_backend() -> str:
    """nccl when CUDA is available, gloo otherwise."""
    return "nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def process_group() -> Iterator[World]:
    """The default process group for the duration of the block.

    An existing group is used as it is. Otherwise a one-process group is created on an in-memory
    store and destroyed on exit through DeepSpeed, which also drops the subgroups DeepSpeed
    cached for it; ``LOCAL_RANK``, which DeepSpeed requires, is set to 0 for the block when the
    environment has none.

    Yields:
        This process's ``World``.
    """
    if dist.is_initialized():
        yield current_world()
        return
    set_local_rank = "LOCAL_RANK" not in os.environ
    if set_local_rank:
        os.environ["LOCAL_RANK"] = "0"
    dist.init_process_group(default_backend(), store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield World(0, 1)
    finally:
        destroy_process_group()
        if set_local_rank:
            del os.environ["LOCAL_RANK"]


def destroy_process_group() -> None:
    """Destroy the default process group, if any, safely whether or not a fit started.

    DeepSpeed caches the group once a fit used it, and its own teardown clears that cache
    (without it, the next fit in this process finds DeepSpeed's subgroups of the destroyed group:
    "Group ... is not registered"). A fit that failed before DeepSpeed ever started has no
    DeepSpeed backend, and DeepSpeed's teardown would raise ``AttributeError`` over the fit's
    own error. ``deepspeed.comm.is_initialized()`` reads the live backend; the package attribute
    ``deepspeed.comm.cdb`` is a copy taken at import time and is always None.
    """
    if deepspeed.comm.is_initialized():
        deepspeed.comm.destroy_process_group()
    elif dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


def run_distributed(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """Run ``fn(*args)`` in ``world_size`` new local processes joined in one process group.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` (127.0.0.1) and
    ``MASTER_PORT`` in its environment, as torchrun would set them, and the default process
    group is initialised before ``fn`` runs, so ``fn`` finds its rank through
    ``torch.distributed``. ``fn`` and ``args`` must be picklable (``fn`` importable).

    Args:
        fn: the function every rank runs.
        world_size: number of processes.
        *args: positional arguments of ``fn``.

    Returns:
        The return value of ``fn`` on each rank, in rank order.

    Raises:
        ValueError: ``world_size`` < 1, or more ranks than GPUs under nccl.
        torch.multiprocessing.ProcessRaisedException: a rank raised; its traceback is attached.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, but got {world_size}.")
    if default_backend() == "nccl" and world_size > torch.cuda.device_count():
        raise ValueError(
            f"world_size must be <= the {torch.cuda.device_count()} visible GPUs (one whole GPU "
            f"per rank), but got {world_size}."
        )
    port = free_port()
    log.info("starting %d processes on %s:%d", world_size, _LOOPBACK, port)
    with tempfile.TemporaryDirectory(prefix="mmlearn-dist-") as out:
        mp.spawn(
            _worker,
            args=(fn, world_size, port, out, args),
            nprocs=world_size,
            join=True,
        )
        return [
            torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world_size)
        ]


def _worker(
    rank: int, fn: Callable[..., Any], world_size: int, port: int, out: str, args: tuple
) -> None:
    """One spawned rank: set the launcher environment, join the group, run, save the result."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR=_LOOPBACK,
        MASTER_PORT=str(port),
    )
    backend = default_backend()
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend, init_method=f"tcp://{_LOOPBACK}:{port}", rank=rank, world_size=world_size
    )
    try:
        result = fn(*args)
    finally:
        destroy_process_group()
    torch.save(result, Path(out) / f"rank{rank}.pt")
