"""The Tune callback that tracks every trial of a study in Aim, from the Tune driver only.

Aim repositories get corrupted by many concurrent writers, so the driver writes every run of a
study (design decision 5). It writes them on one thread of its own: Tune waits for its callbacks
before it lets a trial go on to its next epoch, and Aim's writes (about 15 ms a result) would
stall every trial that long. The hooks only queue the work, in order; the experiment's end
waits for the queue to drain. A trial's run hash is kept in its trial folder; a retried trial
continues its open run, and a trial resumed by ``Tuner.restore`` reopens it: one run per trial,
however often it restarts. Aim is a convenience for browsing: if the repository cannot be used,
the callback says so once and the study goes on (results.parquet and the Optuna journal are the
record).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
from aim import Repo, Run
from ray import tune
from ray.tune.experiment import Trial

from mmlearn.study.spec import StudySpec
from mmlearn.tracking import aim_layout, aim_repo, off_line

log = logging.getLogger(__name__)

RUN_HASH_FILE = "aim_run_hash"
"""The file in a trial's folder that holds the hash of the trial's Aim run."""


class AimTracking(tune.Callback):
    """One Aim run per trial of one Tune experiment of a study (search or final).

    Args:
        spec: the study; its cells resolve each trial's configuration.
        location: the Aim repository: a path or ``aim://HOST:PORT``.
        progress: where the one line goes if tracking turns off (picklable: Tune saves the
            callback with the experiment and restores it from there).
    """

    def __init__(self, spec: StudySpec, location: str, progress: Callable[[str], None]) -> None:
        self.spec = spec
        self.cells = {c.id: c for c in spec.cells()}
        self.location = location
        self.progress = progress
        self.commit = aim_layout.git_commit(Path.cwd())
        self.off = False
        self._repo: Repo | None = None
        self._runs: dict[str, Run] = {}
        self._writer: ThreadPoolExecutor | None = None  # one thread: work runs in order

    def __getstate__(self) -> dict[str, Any]:
        """What Tune pickles with the experiment: no repository, runs or writer thread."""
        return self.__dict__ | {"_repo": None, "_runs": {}, "_writer": None}

    # -- Tune hooks: each queues its Aim work ------------------------------------------------

    def setup(self, **info: Any) -> None:
        """Start the writer and open the repository before the first trial starts."""
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aim-writer")
        self._submit(self._open)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Create the trial's run, or continue the one its folder names."""
        self._submit(self._run, _TrialView.of(trial))

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """Track the epoch's metrics (and a final run's test metrics)."""
        self._submit(self._track, _TrialView.of(trial), dict(result))

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record the outcome, completed or pruned, and close the run."""
        last = dict(trial.last_result or {})
        if last:
            status, reason = aim_layout.finished_status(last)
        else:
            status, reason = "failed", "the trial ended without reporting an epoch"
        self._submit(self._finish, _TrialView.of(trial), status, reason, last)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record the failure and its reason, and close the run (a restore reopens it)."""
        last = dict(trial.last_result or {})
        self._submit(self._finish, _TrialView.of(trial), "failed", _failure_reason(trial), last)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Close the runs still open (an interrupted experiment), let go of the repository,
        and wait until everything queued is written."""
        self._submit(self._close_all)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    # -- runs (on the writer thread) ----------------------------------------------------------

    def _submit(self, work: Callable[..., None], *args: Any) -> None:
        if self._writer is not None:
            self._writer.submit(self._guarded, work, *args)

    def _open(self) -> None:
        self._repo = aim_repo.open_repo(self.location)

    def _track(self, trial: _TrialView, result: dict[str, Any]) -> None:
        run = self._run(trial)
        if run is None:
            return
        for p in aim_layout.epoch_points(result):
            run.track(p.value, name=p.name, step=p.step, context=dict(p.context))

    def _run(self, trial: _TrialView) -> Run | None:
        """The trial's open run: this session's, the one its folder names, or a new one."""
        if self.off or self._repo is None:
            return None
        run = self._runs.get(trial.trial_id)
        if run is not None:
            return run
        config = trial.config
        known = _read_hash(trial)
        run = aim_repo.resume_run(self._repo, known) if known is not None else None
        if run is not None and run.get("outcome") is not None:
            del run["outcome"]  # it is running again
        if run is None:
            run = aim_repo.new_run(self._repo, self.spec.name)
            _write_hash(trial, run.hash)
            run.name = aim_layout.run_name(config, trial.trial_id)
            for tag in aim_layout.run_tags(self.spec, config):
                run.add_tag(tag)
        cell = self.cells[config["cell"]]
        run["mmlearn"] = aim_layout.run_params(self.spec, cell, config, trial.trial_id, self.commit)
        self._runs[trial.trial_id] = run
        return run

    def _finish(
        self,
        trial: _TrialView,
        status: aim_layout.Status,
        reason: str | None,
        last: dict[str, Any],
    ) -> None:
        run = self._run(trial)
        if run is None:
            return
        run["outcome"] = aim_layout.outcome(status, reason, last, self.spec.resources)
        run.close()
        del self._runs[trial.trial_id]

    def _close_all(self) -> None:
        for run in self._runs.values():
            run.close()
        self._runs.clear()
        self._repo = None

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        with self._guard():
            work(*args)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Run a hook's Aim work; on any error turn tracking off, say so once, go on."""
        try:
            yield
        except Exception as e:  # Aim raises many types (OSError, RuntimeError, sqlalchemy, ...)
            if self.off:
                return
            self.off = True
            log.info("Aim tracking failed", exc_info=True)
            first = str(e).strip().splitlines()[:1]  # sqlalchemy appends the SQL
            reason = f"{type(e).__name__}: {first[0]}" if first else type(e).__name__
            self.progress(off_line(f"Aim repository {self.location}: {reason}"))
            for run in self._runs.values():
                with contextlib.suppress(Exception):
                    run.close()
            self._runs.clear()
            self._repo = None


@dataclass(frozen=True)
class _TrialView:
    """What the writer needs of a trial, read when the hook runs (Tune changes the trial
    afterwards)."""

    trial_id: str
    config: dict[str, Any]
    filesystem: pyarrow.fs.FileSystem
    path: str

    @classmethod
    def of(cls, trial: Trial) -> _TrialView:
        return cls(trial.trial_id, trial.config, trial.storage.storage_filesystem, trial.path)


# ---------------------------------------------------------------------------------------------
# The trial folder: the run hash, the error


def _hash_path(trial: _TrialView) -> tuple[pyarrow.fs.FileSystem, str]:
    """The run hash file in the trial's folder on the experiment's storage."""
    return trial.filesystem, f"{trial.path}/{RUN_HASH_FILE}"


def _read_hash(trial: _TrialView) -> str | None:
    fs, path = _hash_path(trial)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.readall().decode().strip()


def _write_hash(trial: _TrialView, run_hash: str) -> None:
    """Write the hash to a temporary file, then move it into place."""
    fs, path = _hash_path(trial)
    fs.create_dir(trial.path, recursive=True)
    partial = f"{path}.partial"
    with fs.open_output_stream(partial) as f:
        f.write(run_hash.encode())
    fs.move(partial, path)


def _failure_reason(trial: Trial) -> str:
    """The last line of the trial's latest error (the exception), from its error file."""
    path = trial.error_file
    text = Path(path).read_text() if path is not None and Path(path).is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "failed without an error message; see the trial's folder"
