"""Tune's snapshots of a study's experiment, and the ones a killed driver left torn.

Tune snapshots its experiment (its trials, the search generator and our searcher) into files
named after the driver's session, ``experiment_state-SESSION.json`` and its siblings, and
copies them to storage in the background. Every copy rewrites the session's files in place, so
a driver killed during a copy can leave them empty or cut short. Tune then fails to restore
and starts the experiment again with room for one trial only (``Tuner.restore`` does not pass
``num_samples`` on; Ray 2.60). ``set_aside_torn`` sets such a session aside, so that Tune restores
the session before it, or, with none left, the study starts a new Tune experiment from the
Optuna journal.
"""

from __future__ import annotations

import json
from pathlib import Path

SNAPSHOT = {
    "experiment_state-{}.json": "json",
    "search_gen_state-{}.json": "pickle",
    "searcher-state-{}.pkl": "json",
}
"""The files of one session's snapshot and how each is written (our searcher writes JSON)."""

OPTIONAL = {"callback-states-{}.pkl": "pickle"}
"""Written only when a callback has state to keep."""

TORN = ".torn"
"""Suffix of the files of a torn snapshot once set aside (Tune's patterns no longer match)."""


def set_aside_torn(experiment: Path) -> list[str]:
    """Rename the files of torn snapshots to ``*.torn``, newest first, until a whole one is on
    top (Tune restores the newest); the sessions set aside."""
    torn = []
    for session in _sessions(experiment):
        files = {experiment / t.format(session): kind for t, kind in SNAPSHOT.items()}
        for template, kind in OPTIONAL.items():
            if (path := experiment / template.format(session)).exists():
                files[path] = kind
        if all(_whole(path, kind) for path, kind in files.items()):
            break
        for path in files:
            if path.exists():
                path.rename(path.with_name(path.name + TORN))
        torn.append(session)
    return torn


def has_snapshot(experiment: Path) -> bool:
    """True if a session's snapshot of the experiment is there to restore."""
    return bool(_sessions(experiment))


def _sessions(experiment: Path) -> list[str]:
    """Every session with a snapshot file in ``experiment``, newest first (Tune's order)."""
    sessions = set()
    for template in SNAPSHOT:
        prefix, suffix = template.split("{}")
        for path in experiment.glob(f"{prefix}*{suffix}"):
            sessions.add(path.name[len(prefix) : -len(suffix)])
    return sorted(sessions, reverse=True)


def _whole(path: Path, kind: str) -> bool:
    """True if the file exists and is complete: JSON that parses, or a pickle's whole frame.

    A pickle is checked by its first and last bytes (protocol marker, STOP), not loaded.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if kind == "pickle":
        return len(data) > 2 and data[:1] == b"\x80" and data[-1:] == b"."
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
