"""optuna-dashboard reads a study's journal and names each cell's value by its metric.

The dashboard's WSGI app (the one ``make dashboard`` serves on 127.0.0.1) is called directly on
a journal whose cell studies ``mmlearn.study.search.open_study`` created: its study API gives
every cell's trials and the metric name instead of "Objective 0".
"""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

from optuna.trial import TrialState
from optuna_dashboard import wsgi

from mmlearn.study.search import journal_storage, open_study


def get(app, path: str) -> dict:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, *error: status.append(s)))
    assert status == ["200 OK"], (path, status, body[:200])
    return json.loads(body)


def test_dashboard_shows_each_cells_history_under_its_metric_name(tmp_path):
    storage = journal_storage(tmp_path / "optuna.journal")
    for cell in ("redcore@c1", "early_fusion@c1"):
        study = open_study(storage, cell, "max", "random", 0, "val macro_f1")
        trial = study.ask()
        trial.report(0.4, step=0)
        study.tell(trial, state=TrialState.PRUNED)
        study.tell(study.ask(), 0.6)
    again = open_study(storage, "redcore@c1", "max", "random", 0, "val macro_f1")  # resumed
    assert again.metric_names == ["val macro_f1"]
    app = wsgi(journal_storage(tmp_path / "optuna.journal"))  # as `make dashboard` opens it
    summaries = get(app, "/api/studies")["study_summaries"]
    assert sorted(s["study_name"] for s in summaries) == ["early_fusion@c1", "redcore@c1"]
    for summary in summaries:
        detail = get(app, f"/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == ["val macro_f1"]
        assert [t["state"] for t in detail["trials"]] == ["Pruned", "Complete"]
