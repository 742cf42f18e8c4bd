"""Room on a study's storage: checked before Ray starts, kept while the study runs.

A study writes every trial's checkpoints, the Optuna journal and Tune's experiment state under
``STORAGE/NAME``. When that file system fills up, writes fail in trials and in the driver alike;
rather than trials failing one after another, the study stops while there is still room for
the checkpoints being written, and says so in one line. What finished is kept: the rerun after
space was freed resumes the stopped trials from their checkpoints (Tune's interrupted run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from mmlearn.errors import ConfigError, MmlearnError


class StorageFullError(MmlearnError):
    """The study's storage has no room left; the study stopped and a rerun resumes it."""


@dataclass(frozen=True)
class SpaceNeed:
    """The checkpoints a study keeps.

    Attributes:
        checkpoints: checkpoints kept at once (one per trial and final run, one more per
            running trial while it replaces its last).
        bytes: their bytes (an estimate, see ``mmlearn.study.preflight``).
        largest: bytes of the largest checkpoint.
        concurrent: trials running at the same time.
    """

    checkpoints: int
    bytes: int
    largest: int
    concurrent: int

    @property
    def reserve(self) -> int:
        """Bytes kept free while the study runs: a checkpoint per running trial, and one more
        for the journal, the experiment state and the results."""
        return (self.concurrent + 1) * self.largest


def storage_full(path: Path | str) -> str:
    """The one line of a study whose storage filled up."""
    return (
        f"storage {path}: no space left on the device; free space there and rerun the same "
        "command (finished trials are kept)"
    )


def check_room(folder: Path, need: SpaceNeed, progress: Callable[[str], None]) -> None:
    """Check that ``folder`` can be created and written and has room for ``need``.

    Warns through ``progress`` when the file system has less than twice the room needed.

    Raises:
        ConfigError: the folder cannot be written, or has less room than needed.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".room-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ConfigError(storage_full(folder)) from e
        raise ConfigError(
            f"storage {folder}: cannot write there ({e.strerror}); make it writable or point "
            "storage (or $MMLEARN_STORAGE) at a folder you can write"
        ) from e
    written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    wanted = max(need.bytes - written, 0)  # a resumed study has written some already
    free = shutil.disk_usage(folder).free
    shown = (
        f"about {_mib(wanted)} for {need.checkpoints} checkpoints of up to "
        f"{_mib(need.largest)}, and {_mib(free)} is free"
    )
    if free < wanted:
        raise ConfigError(
            f"storage {folder}: no space for the study's checkpoints ({shown}); free space there "
            "or point storage (or $MMLEARN_STORAGE) elsewhere"
        )
    if free < 2 * wanted:
        progress(f"warning: storage {folder} has less than twice the room it needs ({shown})")


class StorageWatch(tune.Callback):
    """Stops the study, as Ctrl-C would, once its storage has less than ``reserve`` bytes free.

    Tune treats SIGUSR1 like SIGINT: it ends its loop, saves the experiment and leaves the
    running trials to resume from their checkpoints (``ray.tune.tune._setup_signal_catching``).
    Checked at most every ``every_s`` seconds, in the driver.
    """

    def __init__(self, folder: Path, reserve: int, every_s: float = 1.0) -> None:
        self.folder = folder
        self.reserve = reserve
        self.every_s = every_s
        self._next = 0.0
        self._stopped = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_next": 0.0, "_stopped": False}  # a resumed run watches anew

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:  # noqa: D102
        now = time.monotonic()
        if self._stopped or now < self._next:
            return
        self._next = now + self.every_s
        if shutil.disk_usage(self.folder).free < self.reserve:
            self._stopped = True
            _STOPPED.add(self.folder)
            if callable(signal.getsignal(signal.SIGUSR1)):  # Tune's handler; not in a thread
                os.kill(os.getpid(), signal.SIGUSR1)


_STOPPED: set[Path] = set()
"""Storage folders whose study a ``StorageWatch`` of this process stopped (a restored run's
watch is Tune's copy of the one created, so the news cannot travel on the object)."""


@contextlib.contextmanager
def full_storage_stops(folder: Path) -> Iterator[None]:
    """Turn a full storage into one line: a write that failed for want of space in the block,
    or a block that ``StorageWatch`` stopped.

    Raises:
        StorageFullError: naming ``folder``.
    """
    try:
        yield
    except Exception as e:
        if _no_space(e):
            raise StorageFullError(storage_full(folder)) from e
        raise
    finally:
        stopped = folder in _STOPPED
        _STOPPED.discard(folder)
    if stopped:
        raise StorageFullError(storage_full(folder))


def _no_space(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, is a write that found no space."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
