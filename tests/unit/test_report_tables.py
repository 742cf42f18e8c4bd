"""The report's tables on small hand-made frames, against closed-form numbers and scipy.

Student-t quantiles and p-values with 1 and 3 degrees of freedom have closed forms, so every
number below is computed by hand rather than by the library under test:
t(0.975, df=1) = tan(0.475 pi); two-sided p(t, df=1) = 1 - 2 atan(|t|) / pi;
two-sided p(t, df=3) = 1 - 2 (x / (1 + x^2) + atan(x)) / pi with x = |t| / sqrt(3).
The statistics themselves are pinned in test_report_stats.py.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from scipy import stats as scipy_stats

from mmlearn.cli import main
from mmlearn.report import plots, robustness, tables
from mmlearn.report.journal import DEFAULTS, MIN_COMPLETE, importances, read_trials
from mmlearn.report.records import StudyRecords, pattern_key, tidy_final, with_weights
from mmlearn.report.summary import summary
from mmlearn.study.spec import StudySpec

T_DF1 = math.tan(0.475 * math.pi)  # 12.7062...

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


def test_tidy_final_orders_rows_and_counts_missing_modalities():
    tidy = tidy_final(final_rows(), spec(["redcore", "early_fusion"]))
    assert list(tidy.columns[:9]) == ["study", "condition", "method", "cell", "fold", "seed",
                                      "pattern", "missing", "weight"]  # fmt: skip
    assert tidy["fold"].isna().all() and (tidy["weight"] == 0.5).all()  # no folds; 2 patterns
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
    # redcore per run: 0.60, 0.70; early_fusion per run: 0.75, 0.80
    assert means.loc["redcore", "mean"] == pytest.approx(0.65)
    assert means.loc["redcore", "half_width"] == pytest.approx(T_DF1 * 0.05)
    assert means.loc["early_fusion", "mean"] == pytest.approx(0.775)
    assert means.loc["early_fusion", "half_width"] == pytest.approx(T_DF1 * 0.025)
    assert means.loc["early_fusion", "n"] == 2
    assert means.loc["early_fusion", "plain_mean"] == pytest.approx(0.775)  # unweighted study
    # paired on runs (seed 0: 0.75 - 0.60, seed 1: 0.80 - 0.70), not on (seed, pattern)
    found = tables.comparisons(tidy, "macro_f1", "redcore", "max").set_index("method")
    assert list(found.index) == ["early_fusion"]
    assert found.loc["early_fusion", "difference"] == pytest.approx(0.125)
    assert found.loc["early_fusion", "p_t"] == pytest.approx(1 - 2 * math.atan(5) / math.pi)
    assert found.loc["early_fusion", "p_t_holm"] == found.loc["early_fusion", "p_t"]  # m = 1
    assert found.loc["early_fusion", "n"] == 2


FOLD_REFERENCE = {(1, 0): 0.50, (1, 1): 0.90, (2, 0): 0.30, (2, 1): 0.70}  # (fold, seed)
FOLD_DIFFS = {(1, 0): 0.01, (1, 1): 0.02, (2, 0): 0.03, (2, 1): 0.04}


def fold_rows(conditions: tuple[str, ...] = ("c1",)) -> pd.DataFrame:
    """2 folds x 2 seeds of redcore and early_fusion; each method's runs in another order.

    early_fusion's run score is redcore's plus ``FOLD_DIFFS`` on the same (fold, seed), on
    both patterns (``+ 0.1`` on fac+fou); rows arrive fold-major for redcore, seed-major and
    reversed for early_fusion, as runs finishing in a different order would write them.
    """
    rows = []
    for condition in conditions:
        for method, units in (
            ("redcore", sorted(FOLD_REFERENCE)),
            ("early_fusion", sorted(FOLD_REFERENCE, key=lambda u: (u[1], u[0]), reverse=True)),
        ):
            for fold, seed in units:
                score = FOLD_REFERENCE[fold, seed]
                if method == "early_fusion":
                    score += FOLD_DIFFS[fold, seed] * (2 if condition == "c2" else 1)
                for pattern, value in (("fac", score - 0.1), ("fac+fou", score + 0.1)):
                    rows.append(
                        {"study": "hand", "cell": f"{method}@{condition}#fold{fold}",
                         "method": method, "condition": condition, "fold": fold,
                         "phase": "final", "run": f"final-{seed}", "seed": seed,
                         "pattern": pattern, "hp.hidden": 16, "rate.fac": 0.5,
                         "rate.fou": 0.0, "test.macro_f1": value, "epochs": 2,
                         "wall_seconds": 36.0, "gpu_hours": 0.0}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def test_folds_are_units_paired_by_fold_and_seed_whatever_the_row_order():
    study = spec(["redcore", "early_fusion"])
    tidy = tidy_final(fold_rows(), study)
    assert list(tidy.loc[tidy["method"] == "early_fusion", "fold"]) == [1] * 4 + [2] * 4
    runs = tables.run_scores(tidy, "macro_f1")
    assert len(runs) == 8 and (runs["score"] == runs["plain"]).all()
    found = tables.comparisons(tidy, "macro_f1", "redcore", "max").iloc[0]
    diffs = list(FOLD_DIFFS.values())
    sd = math.sqrt(sum((d - 0.025) ** 2 for d in diffs) / 3)
    x = 0.025 / (sd / 2) / math.sqrt(3)
    assert found["n"] == 4
    assert found["difference"] == pytest.approx(0.025)
    assert found["p_t"] == pytest.approx(1 - 2 * (x / (1 + x * x) + math.atan(x)) / math.pi)
    assert found["p_wilcoxon"] == pytest.approx(2 / 2**4)  # 4 positive differences, exact
    assert found["p_better"] == 1.0
    cells = tables.pattern_scores(tidy, "macro_f1")
    assert set(cells["n"]) == {4}  # 2 folds x 2 seeds, each counted once
    assert set(tables.method_scores(tidy, "macro_f1")["n"]) == {4}
    assert set(tables.missing_scores(tidy, "macro_f1")["n"]) == {4}


def test_holm_runs_over_every_comparison_of_the_report():
    tidy = tidy_final(fold_rows(("c1", "c2")), spec(["redcore", "early_fusion"]))
    found = tables.comparisons(tidy, "macro_f1", "redcore", "max").set_index("condition")
    ref = np.array(list(FOLD_REFERENCE.values()))
    raw = [
        scipy_stats.ttest_rel(ref + k * np.array(list(FOLD_DIFFS.values())), ref).pvalue
        for k in (1, 2)
    ]
    assert list(found["p_t"]) == pytest.approx(raw)
    low, high = sorted(raw)
    assert list(found["p_t_holm"]) == pytest.approx(
        [max(2 * low, high) if p == high else 2 * low for p in raw]
    )
    assert list(found["p_wilcoxon_holm"]) == pytest.approx([0.25, 0.25])  # 2 x 0.125


def test_ranks_friedman_and_bayesian_table_over_blocks():
    study = spec(["redcore", "early_fusion", "late_fusion"])
    rows = fold_rows()
    third = rows[rows["method"] == "redcore"].assign(method="late_fusion")
    third["cell"] = third["cell"].str.replace("redcore", "late_fusion")
    third["test.macro_f1"] -= np.where(third["fold"] == 1, 0.2, -0.001)  # beats redcore on fold 2
    tidy = tidy_final(pd.concat([rows, third]), study)
    ranked = tables.ranks(tidy, "macro_f1", "max")
    # fold 1 blocks: early_fusion 1, redcore 2, late_fusion 3; fold 2: early 1, late 2, red 3
    assert ranked.methods == tuple(dict.fromkeys(tidy["method"]))  # the study's order
    by_method = dict(zip(ranked.methods, ranked.mean_ranks, strict=True))
    assert by_method == pytest.approx({"redcore": 2.5, "early_fusion": 1.0, "late_fusion": 2.5})
    assert ranked.blocks == 4 and ranked.dropped == 0
    wide = tables.rank_blocks(tidy, "macro_f1")[0].to_numpy()
    assert ranked.friedman.p_value == pytest.approx(scipy_stats.friedmanchisquare(*wide.T).pvalue)
    assert ranked.critical_difference == pytest.approx(2.343 * math.sqrt(12 / 24), abs=1e-3)
    bayes = tables.bayesian(tidy, "macro_f1", "redcore", "max").set_index("method")
    assert list(bayes.index) == ["early_fusion", "late_fusion"] and set(bayes["n"]) == {4}
    row = bayes.loc["early_fusion"]
    assert row["better"] + row["equivalent"] + row["worse"] == pytest.approx(1.0)
    incomplete = tidy[~((tidy["method"] == "late_fusion") & (tidy["seed"] == 1))]
    assert tables.ranks(incomplete, "macro_f1", "max").dropped == 2


def test_robustness_curve_and_area_match_a_hand_computation():
    tidy = tidy_final(fold_rows(), spec(["redcore", "early_fusion"]))
    curves = robustness.run_curves(tidy, "macro_f1", ("fac", "fou"))
    # redcore fold 1 seed 0: fac 0.40, fac+fou 0.60; rates fac 0.5, fou 0 (patterns fac, fac+fou)
    one = curves[(curves["method"] == "redcore") & (curves["fold"] == 1) & (curves["seed"] == 0)]
    fou = one[one["modality"] == "fou"].set_index("rate")["score"]
    # fou missing at r: P(fac+fou) = 0.5 (1 - r), P(fac) = 0.5 r, renormalised: 1 - r and r
    assert fou[0.0] == pytest.approx(0.60)
    assert fou[0.25] == pytest.approx(0.75 * 0.60 + 0.25 * 0.40)
    # linear in r, so the area / 0.95 is the value at r = 0.475
    assert robustness.area(fou.to_numpy(), robustness.RATES) == pytest.approx(0.60 - 0.475 * 0.2)
    fac = one[one["modality"] == "fac"].set_index("rate")["score"]
    # fac missing at r, fou present: P(fac+fou) = 1 - r; P(fou) is not evaluated, so fac+fou
    # is the only pattern left: the curve stays at 0.60
    assert list(fac) == pytest.approx([0.60] * len(robustness.RATES))
    table = robustness.areas(curves).set_index(["method", "modality"])
    assert table.loc[("redcore", "fou"), "n"] == 4
    per_run = [s + 0.1 - 0.475 * 0.2 for s in FOLD_REFERENCE.values()]
    assert table.loc[("redcore", "fou"), "mean"] == pytest.approx(np.mean(per_run))


def test_expected_scores_with_three_modalities_by_hand():
    scores = {"a": 0.2, "b": 0.4, "a+b": 0.9, "a+c": 0.5}
    curve = robustness.expected_scores(scores, {"a": 0.0, "b": 0.5, "c": 0.2}, "a", [0.5])
    # a, b and c missing at 0.5, 0.5, 0.2: P(a) = .5 .5 .2, P(b) = .5 .5 .2, P(a+b) = .5 .5 .2,
    # P(a+c) = .5 .5 .8 -> .05, .05, .05, .2 of a total .35 (b+c, a+b+c not evaluated)
    assert curve[0] == pytest.approx((0.05 * 0.2 + 0.05 * 0.4 + 0.05 * 0.9 + 0.2 * 0.5) / 0.35)


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
    assert any(line.startswith("| early_fusion | 0.7750 ± ") for line in lines)
    assert any(line.startswith("| c1 | early_fusion | 2 | +0.1250 [") for line in lines)
    assert "Holm-adjusted over all 1 comparison of" in text
    assert "## Ranks across conditions" in lines and "## Robustness" in lines
    assert "Friedman test: needs at least 3 methods and 2 blocks." in lines
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
    assert "redcore has no final runs in this study: no comparison." in text
    assert "Δ vs redcore" not in text and "Bayesian" not in text


def worst_case_spec(applies_to: str) -> StudySpec:
    return StudySpec.model_validate(
        {"name": "hand", "data": {"source": "mfeat", "options": {"views": ["fac", "fou"]}},
         "mode": "worst_case", "methods": ["redcore"], "tracking": {"aim": None},
         "worst_case": {"rates": {"fac": [0.0, 0.9], "fou": [0.0, 0.9]},
                        "applies_to": applies_to}}
    )  # fmt: skip


WORST_ROWS = pd.DataFrame(
    {"method": ["redcore"] * 4, "cell": ["redcore@worst_case"] * 4,
     "run": ["a", "a", "b", "b"], "rate.fac": [0.1, 0.1, 0.8, 0.8],
     "rate.fou": [0.2, 0.2, 0.3, 0.3], "pattern": ["fac", "fac+fou"] * 2,
     "val.macro_f1": [0.9, 0.4, 0.1, 0.75]}
)  # fmt: skip


def test_worst_case_ranks_trials_by_the_score_the_search_minimised(tmp_path):
    study = worst_case_spec("train_and_test")
    rows = with_weights(WORST_ROWS, study, ("cell", "run"))
    # run a (fac .1, fou .2): P(fac) = .9 x .2, P(fac+fou) = .9 x .8 -> weights .2, .8
    # run b (fac .8, fou .3): P(fac) = .2 x .3, P(fac+fou) = .2 x .7 -> weights .3, .7
    assert list(rows["weight"]) == pytest.approx([0.2, 0.8, 0.3, 0.7])
    scores = tables.worst_case_scores(rows, "macro_f1").set_index("run")
    assert scores.loc["a", "score"] == pytest.approx(0.2 * 0.9 + 0.8 * 0.4)  # 0.50
    assert scores.loc["b", "score"] == pytest.approx(0.3 * 0.1 + 0.7 * 0.75)  # 0.555
    assert scores.loc["b", "plain"] == pytest.approx(0.425)  # the plain mean would pick b
    final = rows[rows["run"] == "a"].assign(
        study="hand", condition=None, fold=None, phase="final", seed=0,
        **{"test.macro_f1": [0.7, 0.5]}, epochs=2, wall_seconds=1.0, gpu_hours=0.0,
    )  # fmt: skip
    records = StudyRecords(
        final=tidy_final(final, study),
        trials=pd.DataFrame(columns=["cell", "state", "epochs"]),
        runs=pd.DataFrame(columns=["phase", "wall_seconds", "cpu_hours", "gpu_hours"]),
        worst_case=rows,
        source="hand-made frames",
    )
    lines = summary(study, records, None, []).splitlines()
    assert "| redcore | 2 | 0.5000 | 0.6500 | 0.10 | 0.20 |" in lines
    assert "## Condition worst_case" in lines
    # the final run under the worst rates: weighted .2 x .7 + .8 x .5 = .54, plain .60
    assert "| redcore | 0.5400 (1 run) | 1 | 0.6000 (1 run) |" in lines
    assert any("what the search minimised" in line for line in lines)
    plots.worst_case(scores.reset_index(), "macro_f1", "weighted", tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_worst_case_trained_only_keeps_the_plain_mean():
    rows = with_weights(WORST_ROWS, worst_case_spec("train"), ("cell", "run"))
    assert list(rows["weight"]) == [0.5] * 4
    scores = tables.worst_case_scores(rows, "macro_f1").set_index("run")
    assert (scores["score"] == scores["plain"]).all()


def test_importance_needs_eight_complete_trials(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    for cell, trials in (("few@c1", MIN_COMPLETE - 1), ("enough@c1", MIN_COMPLETE)):
        study = optuna.create_study(study_name=cell, storage=storage, direction="maximize")
        for i in range(trials):
            study.add_trial(
                optuna.trial.create_trial(
                    params={"lr": 10.0 ** -(i % 4), "hidden": 16 * (1 + i % 2)},
                    distributions={"lr": FloatDistribution(1e-4, 1.0, log=True),
                                   "hidden": IntDistribution(16, 32)},
                    value=0.1 * (i % 4),
                    user_attrs={"origin": "defaults"} if i == 0 else {},
                )
            )  # fmt: skip
    found = {i.cell: i for i in importances(tmp_path / "optuna.journal", ["few@c1", "enough@c1"])}
    assert not found["few@c1"].values
    assert found["few@c1"].note == (
        f"not shown: {MIN_COMPLETE - 1} COMPLETE trials, importance needs at least "
        f"{MIN_COMPLETE} (1 more; raise search.trials_per_cell)"
    )
    assert found["enough@c1"].note is None
    assert set(found["enough@c1"].values) == {"lr", "hidden"}
    trials = read_trials(tmp_path / "optuna.journal", ["few@c1"])
    assert list(trials["origin"] == DEFAULTS) == [True] + [False] * (MIN_COMPLETE - 2)


def test_report_plots_are_written(tmp_path):
    study = spec(["redcore", "early_fusion", "late_fusion"])
    rows = fold_rows()
    third = rows[rows["method"] == "redcore"].assign(method="late_fusion", cell="late@c1")
    third["test.macro_f1"] -= 0.05
    tidy = tidy_final(pd.concat([rows, third]), study)
    plots.critical_difference(tables.ranks(tidy, "macro_f1", "max"), tmp_path / "cd.png")
    curves = robustness.mean_curves(robustness.run_curves(tidy, "macro_f1", ("fac", "fou")))
    assert len(curves) == 3 * 2 * len(robustness.RATES)  # methods x modalities x rates
    plots.robustness(curves, "fou", "macro_f1", tmp_path / "fou.png")
    trials = pd.DataFrame(
        {"cell": ["redcore@c1"] * 3, "number": [0, 1, 2], "state": ["COMPLETE"] * 3,
         "epochs": [4, 4, 4], "value": [0.5, 0.4, 0.7], "origin": ["defaults", None, None]}
    )  # fmt: skip
    plots.best_so_far(trials, ["redcore@c1"], "max", tmp_path / "best.png")
    for name in ("cd.png", "fou.png", "best.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_report_of_a_two_fold_two_seed_study_counts_four_runs(tmp_path, capsys):
    """`mmlearn report FOLDER` on a study folder with 2 folds x 2 seeds (hand-made results)."""
    folder = tmp_path / "runs" / "folds"
    folder.mkdir(parents=True)
    study = {
        "name": "folds",
        "data": {"path": str(tmp_path / "store" / "fold{fold}"), "folds": [1, 2],
                 "modalities": ["fac", "fou"]},
        "conditions": [{"name": "c1", "rates": {"fac": 0.5}}],
        "methods": ["redcore", "early_fusion"],
        "storage": str(tmp_path / "runs"),
        "tracking": {"aim": None},
    }  # fmt: skip
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    rows = fold_rows().assign(state=None, cpu_hours=0.01)
    rows.to_parquet(folder / "results.parquet")
    assert main(["report", str(folder)]) == 0
    out = folder / "report"
    lines = (out / "summary.md").read_text().splitlines()
    assert "| early_fusion | 0.5250 ± " in "\n".join(lines)
    assert any(line.startswith("| c1 | early_fusion | 4 | +0.0250 [") for line in lines)
    assert any(line.startswith("Mean rank of each method over 4 blocks") for line in lines)
    assert "| early_fusion | 4 | " in "\n".join(lines)  # the Bayesian table
    for name in ("cd-diagram.png", "robustness-fac.png", "robustness-fou.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    tidy = pd.read_parquet(out / "results.parquet")
    assert sorted(set(zip(tidy["fold"], tidy["seed"], strict=True))) == sorted(FOLD_REFERENCE)
    before = (out / "summary.md").read_text()
    capsys.readouterr()
    assert main(["report", str(folder), "--reference", "mmin"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "mmlearn: error: --reference mmin: study 'folds' has no such method; give one of "
        "redcore, early_fusion"
    ]
    assert (out / "summary.md").read_text() == before  # the old report is kept
