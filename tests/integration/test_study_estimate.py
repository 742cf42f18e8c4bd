"""``mmlearn study estimate``: the predicted wall time of a tiny study against its real run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlearn.study import load_study
from mmlearn.study.estimate import asha_epochs, estimate, read_throughput
from tests.integration.studies import study_file

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from mmlearn.cli import main; sys.exit(main())"]


def test_asha_expected_epochs_by_hand() -> None:
    # rungs 1, 2 (eta 2) below 4: 1 + 1/2 * (2 - 1) + 1/4 * (4 - 2)
    assert asha_epochs(4, 1, 2.0) == pytest.approx(2.0)
    # rungs 1, 3, 9 (eta 3) below 20: 1 + 2/3 + 6/9 + 11/27
    assert asha_epochs(20, 1, 3.0) == pytest.approx(1 + 2 / 3 + 6 / 9 + 11 / 27)
    assert asha_epochs(5, 5, 2.0) == 5.0  # no rung below the maximum


def test_throughput_table_rows_are_read(tmp_path: Path) -> None:
    table = tmp_path / "b.md"
    table.write_text(
        "<!-- bench:gpu -->\n| fp32 | 9,000 | 100 | 2.0x | 1 |\n| bf16 | 12,000 | 80 | 3x | 1 |\n"
        "| early_fusion | 30,000 | 1 |\n<!-- /bench:gpu -->\n"
    )
    assert read_throughput(table, "bf16") == {"redcore": 12000.0, "early_fusion": 30000.0}


def test_estimate_is_within_a_factor_of_1_5_of_the_real_wall_time(
    mfeat_path: Path, tmp_path: Path
) -> None:
    path = study_file(
        tmp_path,
        mfeat_path,
        name="estimated",
        methods=[{"name": "early_fusion", "fixed": {"hidden": 16, "cls_layers": [16]}}],
        train={"epochs": 4, "batch_size": 128, "lr": 1e-3},
        scheduler={"type": "asha", "max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
        search={"sampler": "tpe", "trials_per_cell": 4, "seed": 0},
        resources={"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 1},
        final={"seeds": 2},
    )
    predicted = estimate(load_study(path))
    started = time.perf_counter()
    run = subprocess.run(
        [*CLI, "study", "run", str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    measured = time.perf_counter() - started
    assert run.returncode == 0, run.stderr[-3000:]
    ratio = measured / predicted.wall_s
    assert 1 / 1.5 <= ratio <= 1.5, (measured, predicted.table())


def test_mosei_imbalance_is_estimated_without_its_data(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *CLI,
            "study",
            "estimate",
            "studies/mosei_imbalance.yaml",
            "--cluster",
            "cluster/gpu.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"MMLEARN_DATA": str(tmp_path / "absent")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()  # DeepSpeed may print before the table
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("phase")) :]
    assert lines[0].split() == ["phase", "runs", "epochs", "samples", "wall", "GPU-h"]
    assert lines[1].split()[:2] == ["search", "1760"] and lines[2].split()[:2] == ["final", "440"]
    assert "synthetic MOSEI-shaped" in run.stdout and "the cluster cluster/gpu.yaml" in run.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mmlearn.cli import main

    absent = {"path": str(tmp_path / "absent"), "modalities": ["fac", "fou", "mor"]}
    path = study_file(tmp_path, tmp_path / "absent", data=absent)
    assert main(["study", "estimate", str(path)]) == 2
    assert capsys.readouterr().err == (
        "mmlearn: error: tiny: its data are absent and its modalities ['fac', 'fou', 'mor'] "
        "are not the synthetic MOSEI-shaped ones ['audio', 'vision', 'text']; prepare the data "
        "or pass --throughput.\n"
    )
    missing = tmp_path / "none.md"
    assert main(["study", "estimate", str(path), "--throughput", str(missing)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"mmlearn: error: --throughput: cannot read {missing}: No such file or directory.\n"
    )
