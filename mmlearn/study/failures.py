"""Why trials failed, in one line: read from the ``error.txt`` Tune writes for each failed trial.

Tune appends one block per failure to a trial's ``error.txt`` (``Failure # N (occurred at
...)`` followed by the error as ``str(exception)``: for a trial that raised, Ray's remote
traceback, which ends with the original exception's last line, e.g. ``RuntimeError: expected
scalar type BFloat16 but found Float``). That last line is the cause a user needs first; the
whole traceback stays in the file. Tune's ``params.json`` beside it names the trial's cell.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ERROR_FILE = "error.txt"
PARAMS_FILE = "params.json"
MAX_CAUSE = 300
"""Characters of a cause kept in a line (an exception's message can hold a whole tensor)."""

_FAILURE_HEADER = re.compile(r"^Failure # \d+ \(occurred at [^)]*\)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TrialFailure:
    """A failed trial of a study.

    Attributes:
        cell: the trial's cell (``method@condition``, with the fold when there are folds).
        cause: the last line of its first failure, e.g. ``ValueError: ...``.
        error_file: the file with the whole traceback.
    """

    cell: str
    cause: str
    error_file: Path


def error_cause(text: str) -> str:
    """The one-line cause of the first failure recorded in an ``error.txt``'s ``text``."""
    blocks = [b for b in _FAILURE_HEADER.split(_ANSI.sub("", text)) if b.strip()]
    if not blocks:
        return "no error message was recorded"
    last = [line.strip() for line in blocks[0].splitlines() if line.strip()][-1]
    return last if len(last) <= MAX_CAUSE else last[: MAX_CAUSE - 3] + "..."


def read_cause(error_file: str | Path | None) -> str:
    """The cause in ``error_file``, or a note saying why it cannot be read."""
    if error_file is None:
        return "no error file was written"
    try:
        return error_cause(Path(error_file).read_text(errors="replace"))
    except OSError as e:
        return f"its error file cannot be read ({e.strerror})"


def failures(experiment: Path) -> list[TrialFailure]:
    """Every failed trial of the Tune experiment folder ``experiment``, oldest first."""
    found = []
    for error_file in sorted(experiment.glob(f"*/{ERROR_FILE}"), key=lambda p: p.stat().st_mtime):
        try:
            cell = str(json.loads((error_file.parent / PARAMS_FILE).read_text())["cell"])
        except (OSError, ValueError, KeyError, TypeError):
            cell = "unknown cell"
        found.append(TrialFailure(cell, read_cause(error_file), error_file))
    return found


def first_failures(experiment: Path) -> dict[str, TrialFailure]:
    """The oldest failure of each cell of ``experiment`` that has one (each file read once)."""
    firsts: dict[str, TrialFailure] = {}
    for failure in failures(experiment):
        firsts.setdefault(failure.cell, failure)
    return firsts
