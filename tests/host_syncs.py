"""Counting the times a training step makes the host wait for the device.

A step's window runs from one training-mode forward of the model to the next, so it holds
the whole step: loss, finite check, backward, optimizer step, hooks and the next batch's
transfer. On CUDA the count is CUDA's own: ``torch.cuda.set_sync_debug_mode("warn")`` warns
at every synchronising call. On a CPU nothing waits, so the count is of the operators that
would wait on a GPU (the values read back to the host, and the operators whose output size
depends on the data), seen through a ``TorchDispatchMode``. What the CPU count cannot see is a
device-to-host copy (``.tolist()``, ``.cpu()``): those are found on a GPU. Nor does a read
made by ``torch.optim`` count: its step counters live on the host on a GPU too (unless
``capturable`` or ``fused``), so reading them does not wait.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

# Operators that make a CUDA host wait: reading a value, or sizing an output by the data.
_WAITING = {
    "aten._local_scalar_dense",
    "aten.is_nonzero",
    "aten.equal",
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
}
_INDEXING = {"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"}


def _is_mask(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8)


def _from_torch_optim() -> bool:
    """Whether the operator was called from ``torch.optim`` (its host-side step counters)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("torch.optim"):
            return True
        frame = frame.f_back
    return False


class _WaitingOps(TorchDispatchMode):
    """Counts the operators that would make a CUDA host wait."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        if name in _WAITING:
            self.count += name != "aten._local_scalar_dense" or not _from_torch_optim()
        elif name == "aten.repeat_interleave" and (kwargs or {}).get("output_size") is None:
            self.count += 1
        elif name in _INDEXING and len(args) > 1:
            indices = args[1] if isinstance(args[1], list | tuple) else [args[1]]
            self.count += any(_is_mask(i) for i in indices)
        return func(*args, **(kwargs or {}))


class StepSyncs:
    """Per-step host-sync counts of ``model``'s training steps, collected while active.

    Attributes:
        per_step: the count of every complete step window, in order. A window that contains
            an evaluation (the last step of an epoch) is not complete and not counted.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.cuda = device.type == "cuda"
        self.per_step: list[int] = []
        self._start: int | None = None
        self._read = lambda: 0

    def _mark(self, module: nn.Module, _args: Any) -> None:
        now = self._read()
        if not module.training:
            self._start = None  # an evaluation: the open window is not one step
            return
        if self._start is not None:
            self.per_step.append(now - self._start)
        self._start = now

    @contextlib.contextmanager
    def active(self) -> Iterator[StepSyncs]:
        """Count while the block runs."""
        hook = self.model.register_forward_pre_hook(self._mark)
        try:
            if self.cuda:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    self._read = lambda: sum("synchroniz" in str(w.message) for w in caught)
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        yield self
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
            else:
                with _WaitingOps() as ops:
                    self._read = lambda: ops.count
                    yield self
        finally:
            hook.remove()
