"""`mmlearn report --from-aim` reads folds back from Aim runs written with the Aim SDK.

The runs are those of a 2-fold x 2-seed study (hand-made results, ``fold_rows``) in the
tracking layout (``tests.aim_runs``), learning rates included: the report reads the same tidy
frame as from ``results.parquet`` and prints nothing but its progress line.
"""

from __future__ import annotations

import logging

import pandas as pd

from mmlearn.report.from_aim import read_aim
from mmlearn.report.records import tidy_final
from mmlearn.study.spec import StudySpec
from tests.aim_runs import write_aim_runs
from tests.unit.test_report_tables import fold_rows


def test_folds_come_back_from_aim_without_log_noise(tmp_path, capfd, caplog):
    study = StudySpec.model_validate(
        {"name": "folds",
         "data": {"path": str(tmp_path / "store" / "fold{fold}"), "folds": [1, 2],
                  "modalities": ["fac", "fou"]},
         "conditions": [{"name": "c1", "rates": {"fac": 0.5}}],
         "methods": ["redcore", "early_fusion"], "tracking": {"aim": None}}
    )  # fmt: skip
    rows = fold_rows().assign(
        study="folds", state=None, **{"val.macro_f1": lambda f: f["test.macro_f1"] - 0.01}
    )
    write_aim_runs(rows, tmp_path / "aim", "folds", ("fac", "fou"), {"workers": 1})
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        records = read_aim(str(tmp_path / "aim"), study)
    said = capfd.readouterr()
    assert said.err == "" and said.out == ""
    assert [r.getMessage() for r in caplog.records] == []  # e.g. "query failed, 'split'"
    expected = tidy_final(rows, study)
    pd.testing.assert_frame_equal(
        records.final[expected.columns], expected, check_dtype=False, check_like=True
    )
    assert sorted(set(records.final["fold"])) == [1, 2]
