"""Write a study's report folder: ``summary.md``, the tidy ``results.parquet`` and the plots.

``write_report(folder)`` reads ``folder/results.parquet`` and ``folder/optuna.journal`` and
writes ``folder/report/``. ``write_aim_report(folder, spec, repo)`` reads the same records from
the study's Aim repository instead and writes ``folder/report-aim/`` (``summary.md`` without
the importance section, which needs the Optuna studies, and ``results.parquet``; no plots). A
report folder is built beside its place and swapped in whole, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mmlearn.report import plots, robustness, tables
from mmlearn.report.from_aim import read_aim
from mmlearn.report.journal import Importance, importances
from mmlearn.report.locate import spec_of
from mmlearn.report.records import ReportError, StudyRecords, read_results, score_name
from mmlearn.report.summary import summary
from mmlearn.study.spec import StudySpec

REPORT = "report"
AIM_REPORT = "report-aim"

Progress = Callable[[str], None]


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A fresh folder that replaces ``target`` when the block ends without an error."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            old = target.with_name(f"{staging.name}-old")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _draw(spec: StudySpec, records: StudyRecords, found: list[Importance], out: Path) -> list[str]:
    """Draw every plot the records allow into ``out``; returns their file names."""
    metric, mode = spec.objective.metric, spec.objective.direction
    cells = [c.id for c in spec.cells()]
    names = []
    final = records.final
    if not final.empty:
        scores = tables.pattern_scores(final, metric)
        for condition, rows in scores.groupby("condition", sort=False):
            names.append(f"heatmap-{condition}.png")
            plots.heatmap(rows, metric, mode, str(condition), out / names[-1])
        names.append("by-missing.png")
        plots.by_missing(tables.missing_scores(final, metric), metric, out / names[-1])
        ranks = tables.ranks(final, metric, spec.objective.direction)
        if len(ranks.methods) > 1 and ranks.blocks > 1:
            names.append("cd-diagram.png")
            plots.critical_difference(ranks, out / names[-1])
        curves = robustness.mean_curves(robustness.run_curves(final, metric, spec.data.names))
        for modality in spec.data.names:
            names.append(f"robustness-{modality}.png")
            plots.robustness(curves, modality, metric, out / names[-1])
    names.append("importance.png")
    plots.importance(found, out / names[-1])
    names.append("best-so-far.png")
    plots.best_so_far(records.trials, cells, spec.search_mode, out / names[-1])
    if not records.worst_case.empty:
        names.append("worst-case.png")
        scores = tables.worst_case_scores(records.worst_case, metric)
        plots.worst_case(scores, metric, score_name(spec), out / names[-1])
    return names


def check_reference(spec: StudySpec, reference: str) -> None:
    """Raise ``ReportError`` unless ``reference`` is one of the study's methods."""
    methods = [m.name for m in spec.methods]
    if reference not in methods and reference != tables.REFERENCE:
        raise ReportError(
            f"--reference {reference}: study {spec.name!r} has no such method; give one of "
            f"{', '.join(methods)}"
        )


def _write(out: Path, text: str, records: StudyRecords) -> None:
    (out / "summary.md").write_text(text)
    records.final.to_parquet(out / "results.parquet", index=False)


def write_report(
    folder: Path,
    progress: Progress = print,
    spec: StudySpec | None = None,
    reference: str = tables.REFERENCE,
) -> Path:
    """Write ``folder/report/`` from the study's results and Optuna journal.

    Args:
        folder: the study folder (``storage/name``).
        progress: called with one line when the report is written.
        spec: the study; None reads it as ``mmlearn.report.locate.spec_of`` does.
        reference: the method the others are compared with (``check_reference``).

    Returns:
        The report folder.

    Raises:
        ReportError: no results, or no final or worst-case rows in them.
    """
    spec = spec or spec_of(folder)
    check_reference(spec, reference)
    records = read_results(folder, spec)
    found = importances(folder / "optuna.journal", [c.id for c in spec.cells()])
    with _staged(folder / REPORT) as out:
        names = _draw(spec, records, found, out)
        _write(out, summary(spec, records, found, names, reference), records)
    progress(f"report      {folder / REPORT / 'summary.md'} ({len(names)} plots)")
    return folder / REPORT


def write_aim_report(
    folder: Path,
    spec: StudySpec,
    repo: str,
    progress: Progress = print,
    reference: str = tables.REFERENCE,
) -> Path:
    """Write ``folder/report-aim/`` from the study's runs in the Aim repository ``repo``.

    Returns:
        The report folder.

    Raises:
        ReportError: no repository at ``repo``, or no finished final run of the study in it.
    """
    check_reference(spec, reference)
    records = read_aim(repo, spec)
    folder.mkdir(parents=True, exist_ok=True)
    with _staged(folder / AIM_REPORT) as out:
        _write(out, summary(spec, records, None, [], reference), records)
    progress(f"report      {folder / AIM_REPORT / 'summary.md'} (from Aim {repo})")
    return folder / AIM_REPORT
