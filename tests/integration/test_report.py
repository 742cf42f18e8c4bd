"""`mmlearn report` on the integration tests' shared study (Ray Tune, Optuna, DeepSpeed on CPU).

The shared study (``finished_study``) is redcore and early_fusion x 1 condition, 3 trials of up
to 3 epochs per cell, 2 final seeds. The report's cells are checked against means and Student-t
intervals computed by hand from its results.parquet. The --from-aim path reads Aim runs written
with the Aim SDK in the tracking layout (from the same study's rows) and must give the same
tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from aim import Run
from scipy import stats

from mmlearn.cli import main
from tests.integration.studies import MAX_EPOCHS, TRIALS, study_file

PATTERNS = ("fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor", "fac+fou+mor")
METRICS = ("accuracy", "uar", "macro_f1", "weighted_f1")
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
             "importance.png", "best-so-far.png"}  # fmt: skip
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


def _by_hand(tidy: pd.DataFrame, method: str, pattern: str | None) -> tuple[float, float]:
    """Mean over the 2 seeds and the t half-width, by hand (of the seed's pattern mean if None)."""
    own = tidy[tidy["method"] == method]
    if pattern is not None:
        own = own[own["pattern"] == pattern]
    per_seed = [sum(g["test.macro_f1"]) / len(g) for _, g in own.groupby("seed")]
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
    compared = [ln for ln in lines if ln.startswith("| early_fusion | ") and "| 14 |" in ln]
    assert len(compared) == 1 and f"| {mean:.4f} ± {half:.4f} | 2 |" in compared[0]
    own = tidy[tidy["method"] == "early_fusion"].sort_values(["seed", "pattern"])
    base = tidy[tidy["method"] == "redcore"].sort_values(["seed", "pattern"])
    p = stats.ttest_rel(own["test.macro_f1"].to_numpy(), base["test.macro_f1"].to_numpy()).pvalue
    assert f"| {float(p):.4g} | 14 |" in compared[0]
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


def write_aim_runs(folder: Path, repo: Path) -> None:
    """Write the study's runs into an Aim repo with the Aim SDK, in the tracking layout."""
    rows = pd.read_parquet(folder / "results.parquet")
    resources = yaml.safe_load((folder / "study.yaml").read_text())["resources"]
    for (phase, cell, run_id), group in rows.groupby(["phase", "cell", "run"]):
        first = {k: v.item() if hasattr(v, "item") else v for k, v in group.iloc[0].items()}
        run = Run(repo=str(repo), experiment="tiny", system_tracking_interval=None,
                  capture_terminal_logs=False, log_system_params=False)  # fmt: skip
        run.name = f"{cell} {phase} {run_id}"
        hparams = {
            k.removeprefix("hp."): json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
            for k, v in first.items()
            if k.startswith("hp.") and not (isinstance(v, float) and math.isnan(v))
        }
        run["mmlearn"] = {
            "study": "tiny", "cell": cell, "method": first["method"],
            "condition": first["condition"],
            "rates": {m: first[f"rate.{m}"] for m in ("fac", "fou", "mor")},
            "protocol": "per_epoch", "phase": phase, "seed": int(first["seed"]),
            "trial_id": run_id, "number": None, "hparams": hparams,
            "resources": resources,
        }  # fmt: skip
        epochs = int(first["epochs"])
        splits = ("val", "test") if phase == "final" else ("val",)
        for split, metric in ((s, m) for s in splits for m in METRICS):
            column = f"{split}.{metric}"
            for pattern, value in zip(group["pattern"], group[column], strict=True):
                context = {"split": split, "pattern": pattern}
                run.track(float(value), name=metric, step=epochs, context=context)
            mean = float(group[column].mean())
            run.track(mean, name=metric, step=epochs, context={"split": split, "pattern": "mean"})
        for tag in ("tiny", cell, phase):
            run.add_tag(tag)
        status = {"PRUNED": "pruned", "FAIL": "failed"}.get(first["state"], "completed")
        run["outcome"] = {"status": status, "reason": None, "epochs": epochs,
                          "wall_seconds": first["wall_seconds"], "gpu_hours": 0.0}  # fmt: skip
        run.close()


def test_from_aim_gives_the_same_tables(study, report, tmp_path):
    path, folder = study
    out, lines = report
    write_aim_runs(folder, tmp_path / "aim")
    assert main(["report", str(path), "--from-aim", "--aim-repo", str(tmp_path / "aim")]) == 0
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
