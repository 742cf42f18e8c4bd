"""What a study will cost before it runs: trials, epochs, samples, wall time and GPU-hours.

Per phase (search, final) the estimate counts the runs, their expected epochs, and the samples
they train on, and turns them into time with a throughput per method: calibrated on this
machine (a few training steps and one validation of every method, on the study's data, or on a
synthetic MOSEI-shaped stand-in of the same modalities when the data are absent), or read from
a throughput table (``--throughput``: the ``gpu`` section of docs/benchmarks.md, as
``make bench-gpu`` writes it).

ASHA's expected reduction (Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020): rungs at ``g * eta^k`` epochs below the maximum R; a trial reaches rung
k with probability ``eta^-k`` (1 in eta goes on at each rung), and one that passes the last
rung trains to R. The expected epochs of a trial are therefore
``sum_k eta^-k * (r_k - r_{k-1})`` with ``r_-1 = 0`` and the last segment ending at R.

Wall time assumes the phase's run-seconds are spread evenly over the trials that run at once
(``max_concurrent_trials``, bounded by the machine's or the cluster's room for them), plus a
fixed cost per study for starting Ray and Tune and writing the results (``STUDY_OVERHEAD_S``:
9-27 s beyond the trials on the 2-core machines measured, docs/benchmarks.md "study").
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmlearn.cluster.check import ClusterFile
from mmlearn.data.missing import evaluation_patterns
from mmlearn.data.prepare import prepare_store
from mmlearn.data.sources.synthetic import split_size
from mmlearn.data.store import FeatureStore, StoreSplit, open_store
from mmlearn.errors import ConfigError, DataError
from mmlearn.models.registry import build
from mmlearn.study.cells import Cell
from mmlearn.study.spec import StudySpec
from mmlearn.train.engine import fit

# Ray, Tune and the results beyond the trials, on 2 cores: 17-27 s on the AMD EPYC of
# docs/benchmarks.md ("study"), about 9 s on an Intel Xeon (family 6, model 167; a 4-trial
# early_fusion study, 2026-12-08). The middle keeps both within the factor 1.5 the test allows.
STUDY_OVERHEAD_S = 14.0
SYNTHETIC_MODALITIES = ("audio", "vision", "text")
_ROW = re.compile(r"^\|\s*([a-z_0-9]+)\s*\|\s*([\d,.]+)\s*\|", re.MULTILINE)


@dataclass(frozen=True)
class Speed:
    """How fast one method runs.

    Attributes:
        train: training samples per second.
        evaluate: evaluated (sample, pattern) pairs per second.
        startup_s: seconds of a run before its first step (model, engine).
    """

    train: float
    evaluate: float
    startup_s: float


@dataclass(frozen=True)
class Phase:
    """One phase's estimate.

    Attributes:
        name: ``search`` or ``final``.
        runs: trials (search) or seeded runs (final).
        epochs: expected epochs over all runs.
        samples: training samples over all runs.
        run_seconds: the runs' seconds, summed.
        at_once: runs at the same time.
        gpus_per_run: GPUs each run holds.
    """

    name: str
    runs: int
    epochs: float
    samples: float
    run_seconds: float
    at_once: int
    gpus_per_run: float

    @property
    def wall_s(self) -> float:
        """The phase's wall time: its run-seconds spread over the runs at once."""
        return self.run_seconds / self.at_once

    @property
    def gpu_hours(self) -> float:
        """GPU-hours the phase's runs hold."""
        return self.run_seconds * self.gpus_per_run / 3600


@dataclass(frozen=True)
class Estimate:
    """A study's estimate: its phases and the assumptions behind them."""

    phases: tuple[Phase, ...]
    assumptions: tuple[str, ...]

    @property
    def wall_s(self) -> float:
        """The whole study: its phases one after the other, plus the fixed overhead."""
        return STUDY_OVERHEAD_S + sum(p.wall_s for p in self.phases)

    def table(self) -> str:
        """The estimate as a table and a list of assumptions."""
        lines = [
            f"{'phase':<8} {'runs':>6} {'epochs':>9} {'samples':>13} {'wall':>11} {'GPU-h':>9}",
        ]
        for p in self.phases:
            lines.append(
                f"{p.name:<8} {p.runs:>6} {p.epochs:>9.0f} {p.samples:>13,.0f} "
                f"{_duration(p.wall_s):>11} {p.gpu_hours:>9.1f}"
            )
        gpu_hours = sum(p.gpu_hours for p in self.phases)
        lines.append(
            f"{'total':<8} {'':>6} {'':>9} {'':>13} {_duration(self.wall_s):>11} {gpu_hours:>9.1f}"
        )
        lines.append("assumptions:")
        lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def asha_epochs(max_epochs: int, grace: int, eta: float) -> float:
    """A trial's expected epochs under ASHA (module docstring); ``max_epochs`` without it."""
    rungs = []
    r = float(grace)
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    expected, reached, previous = 0.0, 1.0, 0.0
    for rung in rungs:
        expected += reached * (rung - previous)
        reached, previous = reached / eta, rung
    return expected + reached * (max_epochs - previous)


def read_throughput(path: str | Path, precision: str) -> dict[str, float]:
    """Training samples/s per method from a ``bench-gpu`` table (RedCore: its ``precision`` row).

    Raises:
        ConfigError: the file is missing or holds no method rows.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"--throughput: cannot read {path}: {e.strerror}.") from e
    if "<!-- bench:gpu -->" in text:
        text = text.split("<!-- bench:gpu -->", 1)[1].split("<!-- /bench:gpu -->", 1)[0]
    rows = {name: float(value.replace(",", "")) for name, value in _ROW.findall(text)}
    if precision in rows:
        rows["redcore"] = rows[precision]
    rows = {k: v for k, v in rows.items() if k not in ("fp32", "bf16")}
    if not rows:
        raise ConfigError(
            f"--throughput: {path} has no '| method | samples/s |' rows; give the gpu section "
            "that `make bench-gpu` writes into docs/benchmarks.md."
        )
    return rows


def _stand_in(spec: StudySpec, folder: Path, batch: int, steps: int) -> tuple[FeatureStore, str]:
    """A synthetic MOSEI-shaped store of a few batches when the study's data are absent."""
    names = spec.data.names
    if not set(names) <= set(SYNTHETIC_MODALITIES):
        raise ConfigError(
            f"{spec.name}: its data are absent and its modalities {list(names)} are not the "
            f"synthetic MOSEI-shaped ones {list(SYNTHETIC_MODALITIES)}; prepare the data or pass "
            "--throughput."
        )
    scale = min(1.0, max(2, steps) * batch / split_size("train", 1.0))
    path = prepare_store("synthetic", {"scale": scale, "layout": "aligned"}, folder / "stand-in")
    return open_store(path), "a synthetic MOSEI-shaped aligned store (the data are absent)"


def _head(split: StoreSplit, n: int) -> StoreSplit:
    """The first ``n`` samples of ``split`` (views, no copies)."""
    return StoreSplit(
        split.name,
        {m: a[:n] for m, a in split.features.items()},
        {m: a[:n] for m, a in split.lengths.items()},
        {t: a[:n] for t, a in split.targets.items()},
    )


def _calibrate(store: FeatureStore, spec: StudySpec, cell: Cell, steps: int) -> Speed:
    """Time ``steps`` training steps (after as many to warm up) and one validation of ``cell``."""
    data = store.spec(spec.data.task, spec.data.names)
    batch = cell.train.batch_size
    train = _head(store.split("train"), steps * batch)
    val = _head(store.split("val"), batch)
    patterns = len(evaluation_patterns(data.names))
    rates = {m: 0.5 for m in data.names}
    protocol = cell.missing_protocol(0, None if cell.condition else rates)
    model = build(cell.method, cell.hyperparameters, data)
    stages = len(model.stages())
    config = dataclasses.replace(cell.train, epochs=2 * stages, seed=0)
    reports: list[dict[str, Any]] = []
    started = time.perf_counter()
    fit(model, {"train": train, "val": val}, protocol, config, on_epoch=reports.append)
    total = time.perf_counter() - started
    timed = reports[1:]
    train_s = sum(r["train_seconds"] for r in timed)
    eval_s = sum(r["seconds"] - r["train_seconds"] for r in timed)
    return Speed(
        train=len(train) * len(timed) / train_s,
        evaluate=len(val) * patterns * len(timed) / eval_s,
        startup_s=max(0.0, total - sum(r["seconds"] for r in reports)),
    )


def _room(spec: StudySpec, cluster: ClusterFile | None) -> tuple[int, str]:
    """Trials at once, and where that bound comes from."""
    r = spec.resources
    if cluster is not None:
        room = sum(t.count * r.trials_per_node(t.cpus, t.gpus) for t in cluster.node_types)
        where = f"the cluster {cluster.path} at its largest"
    else:
        room = r.trials_per_node(os.cpu_count() or 1, torch.cuda.device_count())
        where = f"this machine ({os.cpu_count()} CPUs)"
    if room < 1:
        raise ConfigError(
            f"{spec.name}: one trial needs {r.workers} x ({r.cpus_per_worker:g} CPU, "
            f"{r.gpus_per_worker:g} GPU), which {where} cannot hold; pass --cluster."
        )
    return min(r.max_concurrent_trials, room), where


def estimate(
    spec: StudySpec,
    cluster: ClusterFile | None = None,
    throughput: Mapping[str, float] | None = None,
    steps: int = 3,
) -> Estimate:
    """The study's estimate (module docstring).

    Args:
        spec: the study.
        cluster: the cluster it will run on (None: this machine).
        throughput: training samples/s per method (a GPU table); None calibrates here.
        steps: training steps timed per method when calibrating.

    Raises:
        ConfigError: the data are absent and not MOSEI-shaped, or no room for a trial.
    """
    cells = spec.cells()
    first = {c.method: c for c in reversed(cells)}
    assumptions = []
    with tempfile.TemporaryDirectory(prefix="mmlearn-estimate-") as tmp:
        try:
            store = spec.data.open()
            sizes = {s: len(store.split(s)) for s in ("train", "val", "test")}
            data = f"the study's data ({sizes['train']} training samples)"
        except DataError:
            batch = max(c.train.batch_size for c in cells)
            store, data = _stand_in(spec, Path(tmp), batch, steps)
            sizes = {s: split_size(s, 1.0) for s in ("train", "val", "test")}
            data += f", sized as MOSEI ({sizes['train']} training samples)"
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))  # as a trial does
        try:
            speeds = {}
            for method, cell in first.items():
                try:
                    speeds[method] = _calibrate(store, spec, cell, steps)
                except RuntimeError as e:  # e.g. a layer without a bf16 kernel on this CPU
                    fp32 = dataclasses.replace(
                        cell, train=dataclasses.replace(cell.train, precision="fp32")
                    )
                    speeds[method] = _calibrate(store, spec, fp32, steps)
                    first_line = str(e).splitlines()[0][:80]
                    assumptions.append(
                        f"{method}: {cell.train.precision} failed here ({first_line}); "
                        "calibrated in fp32"
                    )
        finally:
            torch.set_num_threads(threads)
    if throughput is None:
        assumptions.append(
            f"speeds calibrated on this machine on {data}, {steps} timed steps per method, "
            f"{spec.resources.cpus_per_worker:g} torch threads per trial"
        )
        if spec.resources.gpus_per_worker > 0 and not torch.cuda.is_available():
            assumptions.append(
                "the trials will train on GPUs, but these speeds are this CPU's: pass "
                "--throughput with the table of `make bench-gpu` (docs/benchmarks.md, gpu)"
            )
    else:
        missing = sorted(set(first) - set(throughput))
        if missing:
            raise ConfigError(f"--throughput: no samples/s for {missing}; rerun make bench-gpu.")
        speeds = {
            m: dataclasses.replace(
                s, train=throughput[m], evaluate=s.evaluate * throughput[m] / s.train
            )
            for m, s in speeds.items()
        }
        assumptions.append(
            "training samples/s from the throughput table; evaluation scaled by the same factor "
            f"over this machine's calibration on {data}"
        )
    at_once, where = _room(spec, cluster)
    assumptions.append(f"{at_once} trial(s) at once (max_concurrent_trials, {where})")
    patterns = len(evaluation_patterns(spec.data.names))
    asha = spec.scheduler.type == "asha"
    search_epochs = (
        asha_epochs(spec.max_epochs, spec.scheduler.grace_period, spec.scheduler.reduction_factor)
        if asha
        else float(spec.max_epochs)
    )
    if asha:
        assumptions.append(
            f"ASHA: {search_epochs:.2f} expected epochs per trial of at most {spec.max_epochs} "
            f"(grace {spec.scheduler.grace_period}, reduction factor "
            f"{spec.scheduler.reduction_factor:g})"
        )
    assumptions.append(
        f"every epoch validates {sizes['val']} samples x {patterns} patterns; final runs test "
        f"{sizes['test']} x {patterns} once"
    )
    assumptions.append(
        f"{STUDY_OVERHEAD_S:.0f} s per study to start Ray and Tune and write results"
    )

    def seconds(cell: Cell, epochs: float, test: bool) -> float:
        s = speeds[cell.method]
        per_epoch = sizes["train"] / s.train + sizes["val"] * patterns / s.evaluate
        tested = sizes["test"] * patterns / s.evaluate if test else 0.0
        return s.startup_s + epochs * per_epoch + tested

    gpus = spec.resources.gpus_per_worker * spec.resources.workers
    search_runs = sum(c.trials for c in cells)
    search = Phase(
        "search",
        search_runs,
        search_runs * search_epochs,
        search_runs * search_epochs * sizes["train"],
        sum(c.trials * seconds(c, search_epochs, False) for c in cells),
        at_once,
        gpus,
    )
    seeds = spec.final.seeds
    final = Phase(
        "final",
        len(cells) * seeds,
        sum(seeds * c.train.epochs for c in cells),
        sum(seeds * c.train.epochs for c in cells) * sizes["train"],
        sum(seeds * seconds(c, c.train.epochs, True) for c in cells),
        at_once,
        gpus,
    )
    return Estimate((search, final), tuple(assumptions))
