"""Putting batches where the model is: its device, and its floating dtype (bf16 under DeepSpeed).

On a GPU, ``on_device`` keeps one batch ahead: the next batch is pinned and copied on a side
stream while the model computes on the current one. A copy from pageable memory is
synchronous whatever ``non_blocking`` says (the driver stages it through a pinned buffer),
so without pinning the host waited for every copy and the next batch's gather could not
start before the step's kernels were queued (PyTorch, "CUDA semantics: use pinned memory
buffers").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from mmlearn.data.batch import Batch


def model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    raise ValueError(f"{type(model).__name__} has no floating-point parameters.")


def to_model(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """``batch`` on ``device`` with its floating features in ``dtype``; labels keep theirs."""
    moved = batch.to(device, non_blocking=True)
    if dtype != torch.float32:
        moved.features = {
            k: v.to(dtype) if v.is_floating_point() else v for k, v in moved.features.items()
        }
    return moved


def on_device(
    batches: Iterable[Batch], device: torch.device, dtype: torch.dtype
) -> Iterator[Batch]:
    """``batches`` moved by ``to_model``; on CUDA pinned and prefetched one batch ahead.

    Args:
        batches: host batches, in order.
        device: the model's device.
        dtype: the model's floating dtype.

    Yields:
        The batches on ``device``, in order.
    """
    if device.type != "cuda":
        for batch in batches:
            yield to_model(batch, device, dtype)
        return
    copies = torch.cuda.Stream(device)

    def stage(batch: Batch) -> tuple[Batch, torch.cuda.Event]:
        pinned = batch.map(torch.Tensor.pin_memory)
        with torch.cuda.stream(copies):
            moved = to_model(pinned, device, dtype)
            return moved, copies.record_event()

    ahead: tuple[Batch, torch.cuda.Event] | None = None
    for batch in batches:
        staged = stage(batch)
        if ahead is not None:
            yield _ready(*ahead)
        ahead = staged
    if ahead is not None:
        yield _ready(*ahead)


def _ready(batch: Batch, copied: torch.cuda.Event) -> Batch:
    """Make the current stream wait for ``batch``'s copies and own its memory from then on."""
    current = torch.cuda.current_stream()
    current.wait_event(copied)
    return batch.map(lambda t: _used_on(t, current))


def _used_on(t: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
    t.record_stream(stream)  # the copy stream allocated it: keep it until this stream is done
    return t
