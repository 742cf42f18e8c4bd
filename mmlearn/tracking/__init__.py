"""Experiment tracking of studies: every trial as an Aim run, written by the Tune driver."""

from __future__ import annotations

from collections.abc import Callable

from ray import tune

from mmlearn.study.spec import StudySpec


def tracking_callbacks(spec: StudySpec, progress: Callable[[str], None]) -> list[tune.Callback]:
    """The Tune callbacks that track a study's trials; give a fresh list to every Tuner.

    Args:
        spec: the study; ``spec.tracking.repo`` says where its runs go (None: nowhere).
        progress: where a line goes if tracking is off for a reason other than the study file
            (Aim not installed, an unusable repository); must be picklable.

    Returns:
        ``[AimTracking]``, or nothing when tracking is off.

    Raises:
        ConfigError: ``$MMLEARN_AIM_REPO`` holds a malformed address.
    """
    location = spec.tracking.repo
    if location is None:
        return []
    try:
        from mmlearn.tracking.aim_callback import AimTracking
    except ImportError as e:  # Aim has no wheels for some platforms (Python 3.13)
        progress(off_line(f"Aim cannot be imported: {e}"))
        return []
    return [AimTracking(spec, location, progress)]


def off_line(reason: str) -> str:
    """The one line that says tracking is off, why, and that the study is not affected."""
    return (
        f"tracking: off ({reason}); the study goes on, results.parquet and optuna.journal "
        "record every trial"
    )
