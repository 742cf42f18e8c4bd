"""What a study costs beyond training: per-trial start-up and the runner's overhead.

Runs the same small study (early fusion on mfeat, 6 trials of 2 epochs, no early stopping, one
final seed) twice on a local Ray: with in-process trials (``workers: 1``, 1 CPU each, 2 at
once) and with 2-worker Ray Train trials (1 CPU per worker, one at a time). For every trial,
Tune's wall time (``time_total_s``) minus the time its epochs took (training and validation, as
the engine measured them) is the trial's start-up and teardown cost. The study overhead is the
study's wall time divided by the trials' wall time over the concurrency: 1.0 means the runner
adds nothing to the trials themselves. Targets: start-up <= 3 s in-process, <= 12 s for 2
workers, overhead <= 15 %. Also times ``make study NAME=quickstart`` (target <= 10 min) unless
``--no-quickstart``. Results replace the ``study`` section of docs/benchmarks.md.

Run: ``make bench`` (all benchmarks) or ``python -m tests.benchmarks.study``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmlearn.data.prepare import prepare_store
from tests.benchmarks.report import machine_summary, replace_section
from tests.integration.studies import study_file

TRIALS = 6
EPOCHS = 2


def measure(folder: Path, store: Path, workers: int) -> dict[str, float]:
    """Run the small study with ``workers`` per trial; its start-up and overhead figures."""
    concurrency = 2 if workers == 1 else 1
    path = study_file(
        folder,
        store,
        name=f"bench{workers}",
        methods=[
            {
                "name": "early_fusion",
                "fixed": {"hidden": 64, "cls_layers": [64]},
                "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
            }
        ],  # fmt: skip
        train={"epochs": EPOCHS, "batch_size": 128, "lr": 1e-3},
        search={"sampler": "tpe", "trials_per_cell": TRIALS, "seed": 0},
        scheduler={"type": "none"},
        resources={
            "workers": workers,
            "cpus_per_worker": 1,
            "max_concurrent_trials": concurrency,
        },  # fmt: skip
        final={"seeds": 1},
    )
    started = time.perf_counter()
    command = [sys.executable, "-m", "mmlearn", "study", "run", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    startup, trial_wall = trial_times(folder / "runs" / f"bench{workers}")
    return {
        "trials": len(startup),
        "startup_median_s": statistics.median(startup),
        "startup_max_s": max(startup),
        "wall_s": wall,
        "overhead": wall / (trial_wall / concurrency) - 1.0,
    }


def trial_times(study: Path) -> tuple[list[float], float]:
    """Each trial's start-up (Tune wall time less its epochs' time) and the trials' total wall."""
    startup, total = [], 0.0
    for phase in ("search", "final"):
        for file in (study / phase).glob("*/result.json"):
            results = [json.loads(line) for line in file.read_text().splitlines() if line]
            epochs = sum(r["seconds"] for r in results if r["epoch"] == r["training_iteration"])
            startup.append(results[-1]["time_total_s"] - epochs)
            total += results[-1]["time_total_s"]
    return startup, total


def time_quickstart() -> tuple[float, float, int]:
    """Wall seconds of ``make study NAME=quickstart`` from an empty ``runs/quickstart``, and
    its overhead over its trials' wall time (2 at once), and how many trials it ran."""
    shutil.rmtree("runs/quickstart", ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(["make", "study", "NAME=quickstart"], check=True, capture_output=True)
    wall = time.perf_counter() - started
    startup, total = trial_times(Path("runs/quickstart"))
    return wall, wall / (total / 2) - 1.0, len(startup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-quickstart", action="store_true", help="skip the quickstart run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmlearn-bench-") as tmp:
        store = prepare_store("mfeat", {}, Path(tmp) / "mfeat")
        for workers, target in ((1, 3.0), (2, 12.0)):
            m = measure(Path(tmp), store, workers)
            kind = "in-process" if workers == 1 else "2-worker Ray Train"
            rows.append(
                f"| {kind} | {m['trials']} | {m['startup_median_s']:.1f} "
                f"(max {m['startup_max_s']:.1f}) | <= {target:g} | {m['wall_s']:.0f} "
                f"| {m['overhead']:+.1%} |"
            )
            print(rows[-1], flush=True)
    lines = [
        f"Small study: early fusion on mfeat, {TRIALS} search trials of {EPOCHS} epochs (no "
        "early stopping) + 1 final run; in-process trials 1 CPU each, 2 at once; 2-worker "
        "trials 1 CPU per worker, one at a time. Start-up = a trial's Tune wall time minus its "
        "epochs' time (training + validation). Overhead = study wall time / (sum of trial "
        "wall times / concurrency) - 1 (target <= 15 %; it includes starting Ray and the "
        "report).",
        "",
        machine_summary(),
        "",
        "| trials | runs | start-up s, median | target | study wall s | study overhead |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    if not args.no_quickstart:
        seconds, overhead, trials = time_quickstart()
        lines += [
            "",
            f"`make study NAME=quickstart` ({trials} trials and final runs, 2 at once): "
            f"{seconds / 60:.1f} min (target <= 10 min); study overhead {overhead:+.1%}.",
        ]
        print(lines[-1], flush=True)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        replace_section(Path("docs/benchmarks.md"), "study", body)


if __name__ == "__main__":
    main()
