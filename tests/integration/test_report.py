"""`mmlearn report` on the integration tests' shared study (Ray Tune, Optuna, DeepSpeed on CPU).

The shared study (``finished_study``) is redcore and early_fusion x 1 condition, 3 trials of up
to 3 epochs per cell, 2 final seeds. The report's cells are checked against means and Student-t
intervals computed by hand from its results.parquet, its comparison against scipy's paired t
and Wilcoxon tests on the 2 runs. The --from-aim path reads Aim runs written with the Aim SDK in
the tracking layout (``tests.aim_runs``, from the same study's rows) and must give the same
tables without a log line.
"""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
import yaml
from scipy import stats

from mmlearn.cli import main
from tests.aim_runs import write_aim_runs
from tests.integration.studies import MAX_EPOCHS, TRIALS, study_file

PATTERNS = ("fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor", "fac+fou+mor")
T_DF1 = math.tan(0.475 * math.pi)  # t(0.975) with 1 degree of freedom: 2 seeds


@pytest.fixture(scope="module")
def study(finished_study):
    """The shared study (run once per session); returns (study file, study folder)."""
    return finished_study.path, finished_study.folder


@pytest.fixture(scope="module")
def report(study):
    """`mmlearn report FILE`: the report folder and its summary's lines."""
    path, folder = study
    assert main(["report", str(path)]) == 0
    return folder / "report", (folder / "report" / "summary.md").read_text().splitlines()


def test_every_report_file_exists(report):
    out, _ = report
    names = {"summary.md", "results.parquet", "heatmap-c1.png", "by-missing.png",
             "importance.png", "best-so-far.png", "cd-diagram.png", "robustness-fac.png",
             "robustness-fou.png", "robustness-mor.png"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    for name in names - {"summary.md", "results.parquet"}:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".report")]  # no staging


def test_tidy_results_are_the_final_rows(study, report):
    _, folder = study
    out, _ = report
    tidy = pd.read_parquet(out / "results.parquet")
    assert len(tidy) == 2 * 2 * len(PATTERNS)  # cells x seeds x patterns
    assert list(tidy["pattern"][: len(PATTERNS)]) == list(PATTERNS)
    assert list(tidy["missing"][: len(PATTERNS)]) == [2, 2, 2, 1, 1, 1, 0]
    rows = pd.read_parquet(folder / "results.parquet")
    final = rows[rows["phase"] == "final"].set_index(["cell", "seed", "pattern"])
    got = tidy.set_index(["cell", "seed", "pattern"])["test.macro_f1"]
    assert got.to_dict() == final["test.macro_f1"].to_dict()


def _per_seed(tidy: pd.DataFrame, method: str, pattern: str | None) -> list[float]:
    """Each run's score, by hand: its test macro-F1 on ``pattern`` (its pattern mean if None)."""
    own = tidy[tidy["method"] == method]
    if pattern is not None:
        own = own[own["pattern"] == pattern]
    return [sum(g["test.macro_f1"]) / len(g) for _, g in own.groupby("seed")]


def _by_hand(tidy: pd.DataFrame, method: str, pattern: str | None) -> tuple[float, float]:
    """Mean over the 2 runs (seeds) and the t half-width, by hand."""
    per_seed = _per_seed(tidy, method, pattern)
    assert len(per_seed) == 2
    mean = sum(per_seed) / 2
    sd = abs(per_seed[0] - per_seed[1]) / math.sqrt(2)
    return mean, T_DF1 * sd / math.sqrt(2)


def test_summary_cells_equal_hand_computed_means(report):
    out, lines = report
    tidy = pd.read_parquet(out / "results.parquet")
    header = next(line for line in lines if line.startswith("| method | fac |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    for method in ("redcore", "early_fusion"):
        line = next(ln for ln in lines if ln.startswith(f"| {method} | ") and "±" in ln)
        values = [c.strip() for c in line.strip("|").split("|")]
        for pattern in ("fac", "fou+mor", "fac+fou+mor"):
            mean, half = _by_hand(tidy, method, pattern)
            assert values[cells.index(pattern)] == f"{mean:.4f} ± {half:.4f}", (method, pattern)
    mean, half = _by_hand(tidy, "early_fusion", None)
    assert f"| early_fusion | {mean:.4f} ± {half:.4f} | 2 |" in lines
    # one comparison, on the 2 runs (seeds) both methods have: Holm leaves its p as it is
    own, base = _per_seed(tidy, "early_fusion", None), _per_seed(tidy, "redcore", None)
    diff = (own[0] - base[0] + own[1] - base[1]) / 2
    p_t = stats.ttest_rel(own, base).pvalue
    p_w = stats.wilcoxon([a - b for a, b in zip(own, base, strict=True)]).pvalue
    compared = next(ln for ln in lines if ln.startswith("| c1 | early_fusion | 2 | "))
    cells = [c.strip() for c in compared.strip("|").split("|")]
    assert cells[3].startswith(f"{diff:+.4f} [")
    assert cells[5:] == [f"{p_t:.3g}", f"{p_t:.3g}", f"{p_w:.3g}", f"{p_w:.3g}"]
    assert any("Holm-adjusted over all 1 comparison of" in ln for ln in lines)
    best = [ln for ln in lines if ln.startswith("| redcore@c1 | ") and "hidden=" in ln]
    assert len(best) == 1 and "hidden=16" in best[0] and "n_blocks=2" in best[0]


def test_summary_counts_trials_and_saving(study, report):
    _, lines = report
    counts = {
        ln.split(" | ")[0][2:]: ln
        for ln in lines
        if ln.startswith("| ") and f"@c1 | {TRIALS} |" in ln
    }
    assert set(counts) == {"redcore@c1", "early_fusion@c1"}
    epochs = 0
    for line in counts.values():
        _, trials, complete, pruned, failed, run = (c.strip() for c in line.strip("|").split("|"))
        assert trials == str(TRIALS) and int(complete) + int(pruned) + int(failed) == TRIALS
        ran, budget = run.split(" / ")
        assert budget == str(TRIALS * MAX_EPOCHS)
        epochs += int(ran)
    saving = 1 - epochs / (2 * TRIALS * MAX_EPOCHS)
    assert any(ln.startswith(f"Early stopping saved {saving:.1%}") for ln in lines)
    assert "## Hyperparameter importance" in lines


def test_from_aim_gives_the_same_tables(study, report, tmp_path, capfd, caplog):
    path, folder = study
    out, lines = report
    resources = yaml.safe_load((folder / "study.yaml").read_text())["resources"]
    rows = pd.read_parquet(folder / "results.parquet")
    write_aim_runs(rows, tmp_path / "aim", "tiny", ("fac", "fou", "mor"), resources)
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        assert main(["report", str(path), "--from-aim", "--aim-repo", str(tmp_path / "aim")]) == 0
    said = capfd.readouterr()
    assert said.err == "" and said.out.startswith("report      ")  # no Aim log lines
    assert len(said.out.splitlines()) == 1
    assert [r.getMessage() for r in caplog.records] == []
    aim_lines = (folder / "report-aim" / "summary.md").read_text().splitlines()
    assert aim_lines[2].startswith(f"Read from the Aim repository {tmp_path / 'aim'}")

    def tables(text: list[str]) -> str:
        """From the first condition to the compute table: what both sources hold."""
        start = text.index("## Condition c1")
        ends = [i for i, line in enumerate(text) if line == "## Hyperparameter importance"]
        return "\n".join(text[start : ends[0] if ends else len(text)]).strip()

    assert tables(aim_lines) == tables(lines)
    tidy = pd.read_parquet(out / "results.parquet")
    from_aim = pd.read_parquet(folder / "report-aim" / "results.parquet")
    pd.testing.assert_frame_equal(from_aim, tidy, check_dtype=False)


def test_errors_are_one_line_and_exit_2(study, tmp_path, capsys, mfeat_path):
    _, folder = study
    assert main(["report", str(tmp_path / "no-such-study")]) == 2
    assert main(["report", "no-such-study"]) == 2
    unfinished = study_file(tmp_path, mfeat_path, name="unfinished")  # never run
    assert main(["report", str(unfinished)]) == 2
    searched = study_file(tmp_path, mfeat_path, name="searched")  # search rows, no final rows
    rows = pd.read_parquet(folder / "results.parquet")
    (tmp_path / "runs" / "searched").mkdir(parents=True)
    rows[rows["phase"] == "search"].to_parquet(tmp_path / "runs" / "searched" / "results.parquet")
    assert main(["report", str(searched)]) == 2
    assert main(["report", str(searched), "--from-aim"]) == 2  # tracking.aim: null
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and all(line.startswith("mmlearn: error: ") for line in err), err
    assert "no study" in err[0] and "no-such-study" in err[1]
    assert "no results.parquet" in err[2] and "no final runs yet" in err[3]
    assert "tracking.aim: null" in err[4]
