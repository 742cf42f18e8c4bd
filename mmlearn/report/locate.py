"""Find a study's folder and its study file from what the user typed after ``mmlearn report``.

A study file (``studies/NAME.yaml``) gives its folder, ``storage/name``. A study folder (or a
bare NAME, taken as ``runs/NAME``) gives its study file: the copy ``study.yaml`` inside it, or
``studies/NAME.yaml`` when that file writes to this folder. A bare NAME without a folder falls
back to ``studies/NAME.yaml``, as ``make study NAME=...`` does.
"""

from __future__ import annotations

from pathlib import Path

from mmlearn.report.records import ReportError
from mmlearn.study.load import load_study
from mmlearn.study.spec import StudySpec

SNAPSHOT = "study.yaml"
"""The copy of the study file in a study folder."""
STUDIES = Path("studies")
RUNS = Path("runs")


def folder_of(spec: StudySpec) -> Path:
    """Where the study writes: ``storage/name``, absolute."""
    return (spec.storage / spec.name).resolve()


def spec_of(folder: Path) -> StudySpec:
    """The study that wrote ``folder``.

    Raises:
        ReportError: neither ``folder/study.yaml`` nor a ``studies/NAME.yaml`` writing here.
        ConfigError: the study file found is invalid.
    """
    snapshot = folder / SNAPSHOT
    if snapshot.is_file():
        return load_study(snapshot)
    candidate = STUDIES / f"{folder.name}.yaml"
    if candidate.is_file():
        spec = load_study(candidate)
        if folder_of(spec) == folder.resolve():
            return spec
    raise ReportError(
        f"{folder}: no {SNAPSHOT} in it and no {candidate} that writes to it, so its study "
        "file is unknown; pass the study file: mmlearn report FILE"
    )


def locate(target: str) -> tuple[Path, StudySpec]:
    """The folder and the study of ``target``: a study file, a study folder, or a NAME.

    Raises:
        ReportError: nothing matches ``target``.
        ConfigError: the study file is invalid.
    """
    path = Path(target)
    if path.is_file():
        spec = load_study(path)
        return folder_of(spec), spec
    if path.is_dir():
        return path.resolve(), spec_of(path)
    if path.name == target:  # a bare NAME
        if (RUNS / target).is_dir():
            return (RUNS / target).resolve(), spec_of(RUNS / target)
        if (STUDIES / f"{target}.yaml").is_file():
            spec = load_study(STUDIES / f"{target}.yaml")
            return folder_of(spec), spec
    tried = f", nor is {RUNS / target} or {STUDIES / target}.yaml" if path.name == target else ""
    raise ReportError(
        f"no study {target!r}: it is not a study file or folder{tried}; check the name, or run "
        "the study first (mmlearn study run FILE)"
    )
