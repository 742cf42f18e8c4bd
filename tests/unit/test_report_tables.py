"""The report's statistics and tables on small hand-made frames, against closed-form numbers.

Student-t quantiles and p-values with 1, 2 and 3 degrees of freedom have closed forms, so every
number below is computed by hand rather than by the library under test:
t(0.975, df=1) = tan(0.475 pi); t(0.975, df=2) = 0.95 / sqrt(2 * 0.975 * 0.025);
two-sided p(t, df=1) = 1 - 2 atan(|t|) / pi;
two-sided p(t, df=3) = 1 - 2 (x / (1 + x^2) + atan(x)) / pi with x = |t| / sqrt(3).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmlearn.report import plots, tables
from mmlearn.report.records import StudyRecords, pattern_key, tidy_final
from mmlearn.report.summary import summary
from mmlearn.study.spec import StudySpec

T_DF1 = math.tan(0.475 * math.pi)  # 12.7062...
T_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # 4.3027...

# test macro_f1 of (method, seed) on patterns fac and fac+fou
SCORES = {
    ("redcore", 0): (0.50, 0.70),
    ("redcore", 1): (0.60, 0.80),
    ("early_fusion", 0): (0.60, 0.90),
    ("early_fusion", 1): (0.65, 0.95),
}


def spec(methods: list[str]) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "hand",
            "data": {"source": "mfeat", "options": {"views": ["fac", "fou"]}},
            "conditions": [{"name": "c1", "rates": {"fac": 0.5}}],
            "methods": methods,
            "tracking": {"aim": None},
        }
    )


def final_rows(methods: tuple[str, ...] = ("redcore", "early_fusion")) -> pd.DataFrame:
    """Final rows as results.parquet holds them, in a scrambled order."""
    rows = [
        {"study": "hand", "cell": f"{method}@c1", "method": method, "condition": "c1",
         "phase": "final", "run": f"r{seed}", "seed": seed, "state": None, "pattern": pattern,
         "hp.hidden": 16, "hp.kl_weight": 0.01 if method == "redcore" else math.nan,
         "rate.fac": 0.5, "rate.fou": 0.0, "val.macro_f1": score - 0.01,
         "test.macro_f1": score, "epochs": 2, "wall_seconds": 36.0, "cpu_hours": 0.01,
         "gpu_hours": 0.0}
        for (method, seed), scores in SCORES.items()
        if method in methods
        for pattern, score in zip(("fac+fou", "fac"), scores[::-1], strict=True)
    ]  # fmt: skip
    return pd.DataFrame(rows[::-1])


def records(final: pd.DataFrame, trials: pd.DataFrame | None = None) -> StudyRecords:
    runs = final.drop_duplicates(["cell", "seed"]).assign(phase="final", run="r", cpu_hours=0.01)
    return StudyRecords(
        final=final,
        trials=trials if trials is not None else pd.DataFrame(columns=["cell", "state", "epochs"]),
        runs=runs[["phase", "cell", "run", "wall_seconds", "cpu_hours", "gpu_hours"]],
        worst_case=pd.DataFrame(),
        source="hand-made frames",
    )


def test_estimate_is_the_mean_with_a_student_t_half_width():
    e = tables.estimate([0.5, 0.6, 0.4])
    assert e.mean == pytest.approx(0.5)
    assert e.half_width == pytest.approx(T_DF2 * 0.1 / math.sqrt(3))  # s = 0.1
    assert e.n == 3
    one = tables.estimate([0.7])
    assert one.mean == 0.7 and math.isnan(one.half_width) and one.n == 1


def test_paired_t_test_with_one_degree_of_freedom():
    test = tables.paired_t_test([0.6, 0.9], [0.5, 0.6])  # differences 0.1, 0.3: t = 2
    assert test.difference == pytest.approx(0.2)
    assert test.p_value == pytest.approx(1 - 2 * math.atan(2) / math.pi)
    assert test.pairs == 2
    same = tables.paired_t_test([0.6, 0.7], [0.5, 0.6])  # identical differences: no test
    assert same.difference == pytest.approx(0.1) and math.isnan(same.p_value)


def test_tidy_final_orders_rows_and_counts_missing_modalities():
    tidy = tidy_final(final_rows(), spec(["redcore", "early_fusion"]))
    assert list(tidy.columns[:7]) == ["study", "condition", "method", "cell", "seed", "pattern",
                                      "missing"]  # fmt: skip
    assert list(tidy["method"]) == ["redcore"] * 4 + ["early_fusion"] * 4
    assert list(tidy["seed"]) == [0, 0, 1, 1] * 2
    assert list(tidy["pattern"]) == ["fac", "fac+fou"] * 4
    assert list(tidy["missing"]) == [1, 0] * 4
    assert {"phase", "run", "state", "cpu_hours"}.isdisjoint(tidy.columns)
    assert pattern_key("fou", ("fac", "fou")) < pattern_key("fac+fou", ("fac", "fou"))


def test_pattern_and_method_scores_match_hand_computed_numbers():
    tidy = tidy_final(final_rows(), spec(["redcore", "early_fusion"]))
    cells = tables.pattern_scores(tidy, "macro_f1").set_index(["method", "pattern"])
    # redcore on fac: 0.50, 0.60 -> mean 0.55, s = 0.1 / sqrt(2)
    assert cells.loc[("redcore", "fac"), "mean"] == pytest.approx(0.55)
    assert cells.loc[("redcore", "fac"), "half_width"] == pytest.approx(T_DF1 * 0.05)
    assert cells.loc[("early_fusion", "fac+fou"), "mean"] == pytest.approx(0.925)
    means = tables.method_scores(tidy, "macro_f1").set_index("method")
    # redcore per seed: 0.60, 0.70; early_fusion per seed: 0.75, 0.80
    assert means.loc["redcore", "mean"] == pytest.approx(0.65)
    assert means.loc["redcore", "half_width"] == pytest.approx(T_DF1 * 0.05)
    assert means.loc["early_fusion", "mean"] == pytest.approx(0.775)
    assert means.loc["early_fusion", "half_width"] == pytest.approx(T_DF1 * 0.025)
    assert means.loc["early_fusion", "seeds"] == 2
    # paired on (seed, pattern): differences 0.10, 0.20, 0.05, 0.15
    diffs = [0.10, 0.20, 0.05, 0.15]
    sd = math.sqrt(sum((d - 0.125) ** 2 for d in diffs) / 3)
    x = 0.125 / (sd / 2) / math.sqrt(3)
    p = 1 - 2 * (x / (1 + x * x) + math.atan(x)) / math.pi
    assert means.loc["early_fusion", "difference"] == pytest.approx(0.125)
    assert means.loc["early_fusion", "p_value"] == pytest.approx(p)
    assert means.loc["early_fusion", "pairs"] == 4
    assert means.loc["redcore", "pairs"] == 0 and math.isnan(means.loc["redcore", "p_value"])


def test_missing_scores_average_the_patterns_that_miss_as_many_modalities():
    tidy = tidy_final(final_rows(), spec(["redcore", "early_fusion"]))
    by = tables.missing_scores(tidy, "macro_f1").set_index(["method", "missing"])
    assert by.loc[("early_fusion", 1), "mean"] == pytest.approx(0.625)  # fac: 0.60, 0.65
    assert by.loc[("redcore", 0), "mean"] == pytest.approx(0.75)  # fac+fou: 0.70, 0.80


def test_search_counts_saving_and_compute():
    trials = pd.DataFrame(
        {"cell": ["redcore@c1"] * 3 + ["early_fusion@c1"],
         "state": ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"], "epochs": [4, 1, 2, 4]}
    )  # fmt: skip
    counts = tables.trial_counts(trials, ["redcore@c1", "early_fusion@c1", "mmin@c1"], 4)
    row = counts.set_index("cell").loc["redcore@c1"]
    assert (row["trials"], row["complete"], row["pruned"], row["failed"]) == (3, 1, 1, 1)
    assert (row["epochs"], row["budget"]) == (7, 12)
    assert counts.set_index("cell").loc["mmin@c1", "trials"] == 0
    assert tables.early_stopping_saving(counts) == pytest.approx(1 - 11 / 16)
    runs = pd.DataFrame(
        {"phase": ["search", "search", "final"], "wall_seconds": [3600.0, 1800.0, 360.0],
         "cpu_hours": [2.0, math.nan, 0.2], "gpu_hours": [1.0, 0.5, 0.1]}
    )  # fmt: skip
    spent = tables.compute_spent(runs).set_index("phase")
    assert spent.loc["search", "runs"] == 2 and spent.loc["all", "runs"] == 3
    assert spent.loc["search", "wall_hours"] == pytest.approx(1.5)
    assert spent.loc["all", "gpu_hours"] == pytest.approx(1.6)
    assert math.isnan(spent.loc["search", "cpu_hours"])  # one run lacks it
    assert math.isnan(spent.loc["all", "cpu_hours"])
    assert spent.loc["final", "cpu_hours"] == pytest.approx(0.2)


def test_best_so_far_skips_missing_values():
    values = [0.2, math.nan, 0.5, 0.3]
    assert tables.best_so_far(values, "max") == [0.2, 0.2, 0.5, 0.5]
    assert tables.best_so_far(values, "min") == [0.2, 0.2, 0.2, 0.2]


def test_summary_holds_the_tables():
    study = spec(["redcore", "early_fusion"])
    trials = pd.DataFrame({"cell": ["redcore@c1", "redcore@c1"], "state": ["COMPLETE", "PRUNED"],
                           "epochs": [10, 3]})  # fmt: skip
    text = summary(study, records(tidy_final(final_rows(), study), trials), None, ["a.png"])
    lines = text.splitlines()
    assert "| method | fac | fac+fou |" in lines
    assert f"| redcore | 0.5500 ± {T_DF1 * 0.05:.4f} | 0.7500 ± {T_DF1 * 0.05:.4f} |" in lines
    assert any(line.startswith("| early_fusion | 0.7750 ± ") and "| +0.1250 |" in line
               for line in lines)  # fmt: skip
    assert "| redcore@c1 | hidden=16, kl_weight=0.01 |" in lines
    assert "| redcore@c1 | 2 | 1 | 1 | 0 | 13 / 20 |" in lines
    assert "1 - 13 / (2 x 10)" in text  # train.epochs defaults to 10
    assert "Hyperparameter importance" not in text and "![a.png](a.png)" in lines


def test_summary_names_each_methods_rates_when_they_differ():
    study = spec(["redcore", "early_fusion"])
    rows = final_rows()
    rows.loc[rows["method"] == "redcore", "rate.fou"] = 0.25
    text = summary(study, records(tidy_final(rows, study)), None, [])
    assert (
        "Training missing rates: redcore: fac 0.5, fou 0.25; early_fusion: fac 0.5, fou 0." in text
    )
    same = summary(study, records(tidy_final(final_rows(), study)), None, [])
    assert "Training missing rates: fac 0.5, fou 0." in same


def test_summary_without_redcore_says_there_is_no_paired_test():
    study = spec(["early_fusion"])
    text = summary(study, records(tidy_final(final_rows(("early_fusion",)), study)), None, [])
    assert "redcore is not in this study: no paired test." in text
    assert "Δ vs redcore" not in text


def test_worst_case_table_and_plot(tmp_path):
    rows = pd.DataFrame(
        {"method": ["redcore"] * 4, "cell": ["redcore@worst_case"] * 4,
         "run": ["a", "a", "b", "b"], "rate.fac": [0.1, 0.1, 0.8, 0.8],
         "rate.fou": [0.2, 0.2, 0.3, 0.3], "pattern": ["fac", "fac+fou"] * 2,
         "val.macro_f1": [0.8, 0.9, 0.3, 0.5]}
    )  # fmt: skip
    scores = tables.worst_case_scores(rows, "macro_f1").set_index("run")
    assert scores.loc["a", "score"] == pytest.approx(0.85)
    assert scores.loc["b", "score"] == pytest.approx(0.4)
    study = spec(["redcore"])
    none = StudyRecords(
        final=pd.DataFrame(),
        trials=pd.DataFrame(columns=["cell", "state", "epochs"]),
        runs=pd.DataFrame(columns=["phase", "wall_seconds", "cpu_hours", "gpu_hours"]),
        worst_case=rows,
        source="hand-made frames",
    )
    text = summary(study, none, None, [])
    assert "| redcore | 2 | 0.4000 | 0.80 | 0.30 |" in text.splitlines()
    plots.worst_case(scores.reset_index(), "macro_f1", tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
