"""What a study costs beyond training: per-trial start-up and the runner's overhead.

Start-up: the same small study (early fusion on mfeat, 6 trials of 2 epochs, no early
stopping, one final seed) runs twice on a local Ray: with in-process trials (``workers: 1``,
1 CPU each, 2 at once) and with 2-worker Ray Train trials (1 CPU per worker, one at a time). A
trial's start-up is the time from its start to the start of its first epoch: Tune's time to the
first result less that epoch's own time (training and validation, as the engine measured it).
Target: <= 3 s in-process, <= 12 s for 2 workers.

Overhead: study wall time / (sum of the trials' Tune wall times / concurrency) - 1, i.e. what
the runner adds around its trials (starting Python and Ray, the Tune experiment, the gaps
between trials, writing results and the report); the trials' own start-up is in their wall
time. Measured on ``studies/quickstart.yaml`` as shipped (``make study NAME=quickstart``,
target <= 10 min) and with 30 epochs instead of 5, a study whose trials last long enough for
the fixed costs to be a small part, as in any real study. Target: overhead <= 15 %. Results
replace the ``study`` section of docs/benchmarks.md.

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
from dataclasses import dataclass
from pathlib import Path

import yaml

from mmlearn.data.prepare import prepare_store
from tests.benchmarks.report import machine_summary, replace_section
from tests.integration.studies import study_file

TRIALS = 6
EPOCHS = 2
LONG_EPOCHS = 30


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
    wall = run_study(path)
    trials = trial_times(folder / "runs" / f"bench{workers}")
    startup = [t.startup for t in trials]
    return {
        "trials": len(trials),
        "startup_median_s": statistics.median(startup),
        "startup_max_s": max(startup),
        "wall_s": wall,
        "overhead": overhead(wall, trials, concurrency),
    }


@dataclass(frozen=True)
class TrialTime:
    """When a trial's time went: before its first epoch, and in all."""

    startup: float
    wall: float


def trial_times(study: Path) -> list[TrialTime]:
    """Start-up and wall time of every search trial and final run of a finished study."""
    out = []
    for file in (study / "tune").glob("*/result.json"):
        results = [json.loads(line) for line in file.read_text().splitlines() if line]
        first = results[0]
        out.append(
            TrialTime(first["time_this_iter_s"] - first["seconds"], results[-1]["time_total_s"])
        )
    return out


def overhead(wall: float, trials: list[TrialTime], concurrency: int) -> float:
    """What the study took beyond its trials' wall time spread over ``concurrency``."""
    return wall / (sum(t.wall for t in trials) / concurrency) - 1.0


def fixed_cost(wall: float, trials: list[TrialTime], concurrency: int) -> float:
    """The same in seconds: wall time beyond the trials' wall time over ``concurrency``."""
    return wall - sum(t.wall for t in trials) / concurrency


def run_study(path: Path) -> float:
    """Wall seconds of ``mmlearn study run PATH`` in a fresh process."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "mmlearn", "study", "run", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def time_quickstart() -> tuple[float, float, float, int]:
    """Wall seconds of ``make study NAME=quickstart`` from an empty ``runs/quickstart``, its
    overhead (2 trials at once), the fixed cost (wall time beyond the trials' wall time over
    the concurrency) in seconds, and how many trials and final runs it ran."""
    shutil.rmtree("runs/quickstart", ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(["make", "study", "NAME=quickstart"], check=True, capture_output=True)
    wall = time.perf_counter() - started
    trials = trial_times(Path("runs/quickstart"))
    return wall, overhead(wall, trials, 2), fixed_cost(wall, trials, 2), len(trials)


def ray_start_stop() -> float:
    """Seconds a fresh process takes to start a local Ray as a study does (the runner's own
    ``_start_ray``) and shut it down: the part of every study's fixed cost that belongs to Ray."""
    code = (
        "import time, ray\n"
        "from mmlearn.study.runner import _start_ray\n"
        "t = time.perf_counter()\n"
        "_start_ray()\n"
        "ray.shutdown()\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def time_long_quickstart(folder: Path) -> tuple[float, float, float]:
    """The quickstart study with ``LONG_EPOCHS`` epochs: wall seconds, overhead, and the fixed
    cost (wall time beyond the trials' wall time over the concurrency) in seconds."""
    study = yaml.safe_load(Path("studies/quickstart.yaml").read_text())
    study["name"] = "quickstart_long"
    study["train"]["epochs"] = LONG_EPOCHS
    study["storage"] = str(folder / "runs")
    study["tracking"] = {"aim": str(folder / "runs" / "aim")}
    path = folder / "quickstart_long.yaml"
    path.write_text(yaml.safe_dump(study))
    wall = run_study(path)
    trials = trial_times(folder / "runs" / "quickstart_long")
    return wall, overhead(wall, trials, 2), fixed_cost(wall, trials, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-quickstart", action="store_true", help="skip the quickstart runs")
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
            "trials 1 CPU per worker, one at a time. Start-up = the time from a trial's start "
            "to the start of its first epoch (Tune's time to the first result less that "
            "epoch's training and validation time). Overhead = study wall time / (sum of the "
            "trials' Tune wall times / concurrency) - 1: what the runner adds around its trials "
            "(starting Python and Ray, the Tune experiment, gaps between trials, results and "
            "report); on a study this small those fixed costs are most of the wall time.",
            "",
            machine_summary(),
            "",
            "| trials | runs | start-up s, median | target | study wall s | study overhead |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
        if not args.no_quickstart:
            seconds, quick_overhead, quick_fixed, trials = time_quickstart()
            wall, long_overhead, fixed = time_long_quickstart(Path(tmp))
            ray_s = ray_start_stop()
            lines += [
                "",
                "| study | wall | study overhead | target |",
                "|---|---|---|---|",
                f"| `make study NAME=quickstart` ({trials} trials and final runs, 5 epochs, 2 "
                f"at once) | {seconds / 60:.1f} min (target <= 10 min) | {quick_overhead:+.1%} "
                f"({quick_fixed:.0f} s beyond the trials) | <= 15 % |",
                f"| quickstart with {LONG_EPOCHS} epochs | {wall / 60:.1f} min | "
                f"{long_overhead:+.1%} ({fixed:.0f} s beyond the trials) | <= 15 % |",
                "",
                f"Starting a local Ray as a study does and shutting it down takes {ray_s:.1f} s "
                "in a fresh process: with Python's start and imports it is a floor under every "
                "study's fixed cost, so the overhead target can be met only by studies whose "
                f"trials outweigh it; at 5 epochs the quickstart's {quick_fixed:.0f} s are "
                f"{quick_overhead:.0%} of its trials' time.",
            ]
            print(*lines[-6:], sep="\n", flush=True)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        replace_section(Path("docs/benchmarks.md"), "study", body)


if __name__ == "__main__":
    main()
