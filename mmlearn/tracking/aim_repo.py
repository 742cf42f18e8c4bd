"""Aim repositories and runs, as the one writer of a study's runs opens them.

Aim 3.29 writes each run into its own containers; ``aim up`` indexes them in the background for
queries (a script that queries a repository no UI has opened must index the runs first, as
``mmlearn.report.from_aim`` does).
"""

from __future__ import annotations

from pathlib import Path

import filelock
from aim import Repo, Run
from aim.sdk.errors import MissingRunError, RunLockingError

_DRIVER_ONLY = {
    "system_tracking_interval": None,
    "capture_terminal_logs": False,
    "log_system_params": False,
}
"""Run options of a writer that is the Tune driver: its CPU, memory and console are not the
trial's, so none of them is tracked."""


def open_repo(location: str) -> Repo:
    """The repository at a path (created when missing) or on an ``aim://HOST:PORT`` server.

    Raises:
        Exception: whatever Aim raises for a location that is not a usable repository (a file,
            a broken ``.aim`` folder, a server that does not answer).
    """
    if Repo.is_remote_path(location):
        return Repo.from_path(location)
    Path(location).mkdir(parents=True, exist_ok=True)
    return Repo.from_path(location, init=not Repo.exists(location))


def new_run(repo: Repo, experiment: str) -> Run:
    """A new run of ``experiment`` in ``repo``."""
    return Run(repo=repo, experiment=experiment, **_DRIVER_ONLY)


def resume_run(repo: Repo, run_hash: str) -> Run | None:
    """Reopen the run ``run_hash`` to write more of it; None if ``repo`` has no such run.

    A lock that a dead driver left on this machine is released by Aim itself. One left by a
    driver on another machine holds for Aim's 10 s timeout, then is broken: the study's Tune
    driver is the only writer of its runs, and a trial is resumed only once its driver is gone.
    """
    try:
        return Run(run_hash, repo=repo, **_DRIVER_ONLY)
    except MissingRunError:  # the repository was deleted since, or is another one
        return None
    except (RunLockingError, filelock.Timeout):
        return Run(run_hash, repo=repo, force_resume=True, **_DRIVER_ONLY)
