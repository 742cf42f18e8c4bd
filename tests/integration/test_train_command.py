"""`mmlearn train`: one method, no Ray, a per-pattern table; one and two gloo processes."""

import json
import subprocess
import sys

import pytest

PATTERNS = ("fac", "fou", "mor", "fac+fou", "fac+mor", "fou+mor", "fac+fou+mor")


def train(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmlearn", "train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def runs(mfeat_path, tmp_path_factory):
    """The same fit in one process and in two gloo processes."""
    out = {}
    work = tmp_path_factory.mktemp("train")
    for workers, batch in ((1, 64), (2, 32)):
        result = work / f"w{workers}.json"
        done = train(
            "--method", "early_fusion", "--data", str(mfeat_path), "--epochs", "2",
            "--batch-size", str(batch), "--rates", "fac=0.8,fou=0.2,mor=0.5",
            "--workers", str(workers), "--json", str(result), cwd=work,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out[workers] = (done.stdout, json.loads(result.read_text()))
    return out


def test_prints_progress_and_a_table_of_every_pattern(runs):
    stdout, result = runs[1]
    assert "epoch   1/2" in stdout and "epoch   2/2" in stdout
    assert "protocol per_epoch {'fac': 0.8, 'fou': 0.2, 'mor': 0.5}" in stdout
    for name in (*PATTERNS, "mean"):
        assert any(line.startswith(name + " ") for line in stdout.splitlines()), name
    assert set(result["test"]["patterns"]) == set(PATTERNS)
    assert all(n == 400 for n in result["test"]["samples"].values())


def test_two_gloo_processes_match_one_process(runs):
    # Two ranks of batch 32 train on the same global batches of 64 as one process, with
    # averaged gradients; only dropout draws (seeded per rank) and float summation order
    # differ. Tolerance: 0.03 of mean accuracy over the 7 x 200 validation pairs.
    one, two = runs[1][1], runs[2][1]
    assert two["val"]["samples"] == one["val"]["samples"]
    for split in ("val", "test"):
        assert abs(two[split]["mean"]["accuracy"] - one[split]["mean"]["accuracy"]) < 0.03
    assert two["test"]["patterns"]["fac+fou+mor"]["accuracy"] > 0.5


def test_bad_input_is_one_line_exit_2(mfeat_path, tmp_path):
    cases = [
        (("--method", "redcor"), "unknown method 'redcor'; did you mean 'redcore'?"),
        (("--method", "redcore", "--rates", "fac=1.0"), "missing rate of 'fac' must be in [0, 1)"),
        (("--method", "redcore", "--rates", "text=0.5"), "unknown modalities ['text']"),
        (("--method", "redcore", "--set", "kl_wieght=1"), "did you mean 'kl_weight'?"),
        (("--method", "redcore", "--epochs", "0"), "train.epochs: must be an integer >= 1"),
        # checked before DeepSpeed or the worker processes start
        (("--method", "mmin", "--epochs", "1"), "train.epochs: must be >= the 2 stages"),
        (("--method", "mmin", "--epochs", "1", "--workers", "2"), "must be >= the 2 stages"),
    ]
    for args, message in cases:
        done = train("--data", str(mfeat_path), *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
