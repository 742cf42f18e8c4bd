"""Run a study: one Ray Tune experiment that searches every cell and re-runs each cell's best.

``run_study(path)`` is what ``mmlearn study run FILE`` calls. The study is one ``Tuner``
(``STORAGE/NAME/tune``) whose searcher keeps one Optuna study per cell
(``STORAGE/NAME/optuna.journal``) and whose scheduler runs ASHA per cell. As soon as a cell's
search is over, the same searcher hands out the cell's final runs: its best COMPLETE
configuration re-trained with ``final.seeds`` seeds, test evaluated once per run (in worst-case
mode the best is the worst: the rates that hurt the method most). So final runs start while
other cells still search, and no slot idles between the phases. A trial with ``workers > 1``
drives a Ray Train ``TorchTrainer`` (see ``mmlearn.study.trial``). Everything lands in
``STORAGE/NAME/results.parquet``. Rerunning the same command resumes the experiment (finished
trials are not re-run; interrupted ones continue from their last checkpoint).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune import ResultGrid
from ray.tune.logger import JsonLoggerCallback

from mmlearn.errors import ConfigError, MmlearnError
from mmlearn.space import Dimension
from mmlearn.study import results, snapshots, worst_case
from mmlearn.study.cells import Cell
from mmlearn.study.disk import StorageWatch, full_storage_stops
from mmlearn.study.drivers import DRIVER_RESOURCE, DRIVER_SLOTS, train_env
from mmlearn.study.failures import TrialFailure, first_failures
from mmlearn.study.load import load_study
from mmlearn.study.preflight import preflight
from mmlearn.study.progress import Progress, StudyProgress, cell_trials
from mmlearn.study.ray_fate import RayReaper
from mmlearn.study.ray_private import trial_trainable
from mmlearn.study.results import RunRecord
from mmlearn.study.search import (
    MAX_FAILED,
    RUN_ATTR,
    CellSearch,
    CellSearcher,
    journal_storage,
    scheduler_for,
)
from mmlearn.study.spec import StudySpec
from mmlearn.study.trial import TrialSetup, run_trial
from mmlearn.tracking import tracking_callbacks

log = logging.getLogger(__name__)


class SearchIncompleteError(MmlearnError):
    """The search stopped (interrupted, or trials kept failing) before every cell was done."""


@dataclass(frozen=True)
class StudyOutcome:
    """What a study run produced.

    Attributes:
        folder: ``STORAGE/NAME``, where every output is.
        results: the results Parquet file.
        journal: the Optuna journal (one study per cell).
        experiment: the Tune experiment (search trials and final runs).
        table: the per-cell table of final test scores.
        resources: resource -> (free, total) in the Ray cluster once the study had finished.
        report: the report folder (``summary.md``, plots).
    """

    folder: Path
    results: Path
    journal: Path
    experiment: Path
    table: str
    resources: dict[str, tuple[float, float]]
    report: Path

    def summary(self) -> str:
        """The final table and where the outputs are."""
        return "\n".join(
            [
                self.table,
                f"results     {self.results}",
                f"optuna      {self.journal}  (optuna-dashboard {self.journal})",
                f"tune        {self.experiment}",
                f"report      {self.report / 'summary.md'}",
            ]
        )


def _ignore(_: str) -> None:
    """The default progress sink: nothing."""


def run_study(path: str | Path, progress: Progress = _ignore) -> StudyOutcome:
    """Search every cell of the study at ``path``, re-run each cell's best, write the results.

    Args:
        path: a study file.
        progress: called with one line per finished trial and final run.

    Returns:
        Where the outputs are, the final table and the cluster's free resources at the end.

    Raises:
        ConfigError: an invalid study file, or a cluster that cannot run its trials.
        DataError: the data are missing.
        SearchIncompleteError: the study stopped early (e.g. Ctrl-C) or a cell's trials kept
            failing; what finished is in the results file.
    """
    spec = load_study(path)
    need = preflight(spec, progress)  # the data, the models and the storage, before Ray starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress lines say what matters
    _configure_tune()
    store = spec.data.open()
    folder = (spec.storage / spec.name).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _keep_study_file(Path(path), folder)
    cells = spec.cells()
    r = spec.resources
    setup = TrialSetup(
        cells={c.id: c for c in cells},
        store=str(Path(store.path).resolve()),
        task=spec.data.task,
        modalities=spec.data.names,
        workers=r.workers,
        cpus=r.cpus_per_worker,
        gpus=r.gpus_per_worker,
        search_epochs=spec.max_epochs,
        train_storage=str(folder / "train"),
        worst_case=spec.worst_case if spec.mode == "worst_case" else None,
        train_env=train_env(on_cluster=bool(os.environ.get("RAY_ADDRESS"))),
    )
    report_import = _import_in_background("mmlearn.report")  # matplotlib and Aim: 2 s
    started, reaper = _start_ray()
    try:
        _check_cluster(spec, path)
        with full_storage_stops(folder):
            grid = _tune_study(spec, setup, folder, progress, StorageWatch(folder, need.reserve))
        journal = journal_storage(folder / "optuna.journal")  # read once: each open replays it
        final = _write_results(spec, setup, grid, journal, folder)
        _check_search_done(setup, journal, folder)
        _check_finals_done(spec, setup, final, journal, folder)
        at_rest = _resources_at_rest()
    finally:
        # In this thread: Ray's C++ worker ends the process if Python drops an ObjectRef while
        # another thread is shutting it down (seen when the report was drawn meanwhile).
        if started:
            ray.shutdown()
        if reaper is not None:
            reaper.release()
    report_import.join()
    from mmlearn.report import write_report

    report = write_report(folder, progress, spec=spec)
    return StudyOutcome(
        folder=folder,
        results=folder / "results.parquet",
        journal=folder / "optuna.journal",
        experiment=folder / EXPERIMENT,
        table=results.final_table(final, spec.objective.metric),
        resources=at_rest,
        report=report,
    )


def _keep_study_file(path: Path, folder: Path) -> None:
    """Copy the study file to ``folder/study.yaml`` (what ``mmlearn report`` reads)."""
    partial = folder / "study.yaml.partial"
    partial.write_text(path.read_text())
    partial.replace(folder / "study.yaml")


def _configure_tune() -> None:
    """Tune settings of every study, unless the user set them.

    Tune's CSV and TensorBoard loggers repeat what ``result.json`` and Aim hold and cost the
    driver CPU on every result, so only the JSON logger runs (``_tune_study``). A trial
    checkpoints every epoch, which forces an experiment snapshot each time; that is intended,
    so Tune need not warn about it. The study prints its own progress; Tune's new output engine
    would add a banner even at ``verbose=0`` (counting 2**63 - 1 trials for an open-ended
    search), the old one stays quiet. Tune's log of every trial error is a whole traceback; the
    study's progress line says the cause in one line instead.
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A failed trial's progress line gives its cause; the traceback stays in its error.txt.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def _import_in_background(module: str) -> threading.Thread:
    """Start importing ``module`` in a thread, to overlap it with Ray's start, which mostly
    waits for Ray's processes; join the thread, then import the module as usual (an import
    error is raised there)."""
    thread = threading.Thread(
        target=_try_import, args=(module,), name=f"import {module}", daemon=True
    )
    thread.start()
    return thread


def _try_import(module: str) -> None:
    """Import ``module``; errors are left to the import that follows the thread's join."""
    try:
        importlib.import_module(module)
    except Exception:
        return


def _start_ray() -> tuple[bool, RayReaper | None]:
    """Connect to ``RAY_ADDRESS``, or start a local Ray sized to the machine.

    Returns:
        Whether this call connected or started Ray, and the reaper of a local Ray it started,
        which makes its processes end with this driver (``mmlearn.study.ray_fate``).
    """
    if ray.is_initialized():
        return False, None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
    else:  # the dashboard is what lets Train V2 clean up its placement groups
        ray.init(
            num_cpus=os.cpu_count(),
            resources={DRIVER_RESOURCE: DRIVER_SLOTS},
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            **quiet,
        )
        return True, RayReaper.start()
    return True, None


def _check_cluster(spec: StudySpec, path: str | Path) -> None:
    """Raise if the cluster cannot place one trial of the study.

    Raises:
        ConfigError: naming what is missing (driver slots, CPUs or GPUs per trial).
    """
    total = ray.cluster_resources()
    r = spec.resources
    if r.workers > 1 and total.get(DRIVER_RESOURCE, 0) < 1:
        raise ConfigError(
            f"{path}: resources.workers: {r.workers} needs a node that hosts trial drivers, but "
            f"the Ray cluster has no {DRIVER_RESOURCE!r} resource; start its head with "
            f"`ray start --head --resources '{{\"{DRIVER_RESOURCE}\": {DRIVER_SLOTS}}}'` (the "
            "cluster files in cluster/ do this)"
        )
    for kind, per_worker in (("CPU", r.cpus_per_worker), ("GPU", r.gpus_per_worker)):
        need = per_worker * r.workers
        if need > total.get(kind, 0.0):
            raise ConfigError(
                f"{path}: resources: one trial needs {need:g} {kind} ({r.workers} worker(s)), but "
                f"the Ray cluster has {total.get(kind, 0.0):g}; lower resources or add nodes"
            )


def _resources_at_rest(wait_s: float = 15.0) -> dict[str, tuple[float, float]]:
    """(free, total) of every cluster resource once the study's trials released theirs.

    Waits up to ``wait_s`` for Ray to return what finished, failed or stopped trials held
    (Train placement groups are removed a moment after their trial ends).
    """
    deadline = time.monotonic() + wait_s
    while True:
        total = {k: v for k, v in ray.cluster_resources().items() if not _per_node(k)}
        free = ray.available_resources()
        held = {k: (free.get(k, 0.0), v) for k, v in total.items()}
        if all(f >= t for f, t in held.values()) or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def _per_node(resource: str) -> bool:
    """Ray's bookkeeping resources (node ids, object store): not what trials hold."""
    return resource.startswith("node:") or resource in ("object_store_memory", "memory")


# ---------------------------------------------------------------------------------------------
# The Tune experiment

EXPERIMENT = "tune"
"""The Tune experiment's folder in ``STORAGE/NAME``."""


def _trainable(setup: TrialSetup) -> Any:
    """``run_trial`` with the study's setup, asking for what one trial holds.

    An in-process trial holds its worker's CPUs and GPUs; a Train driver holds one driver slot
    only, and its ``TorchTrainer`` asks Ray for the workers' own resources.
    """
    fn = trial_trainable(tune.with_parameters(run_trial, setup=setup), run_trial.__name__)
    if setup.workers == 1:
        return tune.with_resources(fn, {"cpu": setup.cpus, "gpu": setup.gpus})
    return tune.with_resources(fn, {"cpu": 0, DRIVER_RESOURCE: 1})


def _reuse_actors(setup: TrialSetup) -> bool:
    """Reuse in-process trials' processes (they keep torch and DeepSpeed imported). Not a
    Train driver's: when ASHA stops a trial, Tune cannot reset a driver that is inside
    ``TorchTrainer.fit`` for the next trial, drops it, and waits for it forever."""
    return setup.workers == 1


def _searched_space(spec: StudySpec, cell: Cell) -> Mapping[str, Dimension]:
    """The keys a cell's Optuna study searches: the method's space, or the rates."""
    if spec.mode == "worst_case":
        assert spec.worst_case is not None
        return worst_case.rate_space(spec.worst_case, spec.data.names)
    return cell.space


def _tune_study(
    spec: StudySpec, setup: TrialSetup, folder: Path, progress: Progress, watch: StorageWatch
) -> ResultGrid:
    """Run (or resume) the study's one Tuner: every cell's search trials and final runs.

    A trial that crashes is retried once from its last checkpoint. ``watch`` stops the study
    when its storage fills up (a resumed run keeps the watch it was started with).
    """
    trainable = _trainable(setup)
    experiment = folder / EXPERIMENT
    if tune.Tuner.can_restore(str(experiment)):
        torn = snapshots.set_aside_torn(experiment)
        if torn:
            progress(
                f"tune: the snapshot of {experiment} that the interrupted run was writing is "
                f"torn; set aside as *{snapshots.TORN}"
            )
        if snapshots.has_snapshot(experiment):
            log.info("resuming the study in %s", experiment)
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
            return tuner.fit()
        progress("tune: no earlier snapshot is left; a new experiment resumes the Optuna journal")
    cells = spec.cells()
    journal = folder / "optuna.journal"
    mode = spec.search_mode
    metric = f"val {spec.objective.metric}"  # the name optuna-dashboard gives trial values
    searcher = CellSearcher(
        [CellSearch(c.id, _searched_space(spec, c), c.trials, c.train.seed, metric) for c in cells],
        journal,
        mode,
        spec.max_epochs,
        spec.search.sampler,
        spec.search.seed,
        spec.final.seeds,
    )
    s = spec.scheduler
    scheduler = scheduler_for(
        [c.id for c in cells], s.type, mode, spec.max_epochs, s.grace_period, s.reduction_factor
    )
    progress_lines = StudyProgress(journal, {c.id: c.trials for c in cells}, spec, progress)
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1,
            max_concurrent_trials=spec.resources.max_concurrent_trials,
            reuse_actors=_reuse_actors(setup),
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=str(folder),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[
                JsonLoggerCallback(),
                progress_lines,
                watch,
                *tracking_callbacks(spec, progress),
            ],
        ),
    )
    return tuner.fit()


# ---------------------------------------------------------------------------------------------
# Results


def _write_results(
    spec: StudySpec,
    setup: TrialSetup,
    grid: ResultGrid,
    journal: optuna.storages.BaseStorage,
    folder: Path,
) -> pd.DataFrame:
    """Write the rows of every search trial and final run to ``results.parquet``; the final rows.

    Search rows come from the Optuna journal (``_search_rows``), final rows from Tune's
    results: each holds the validation metrics of the epoch selected and the test metrics of
    that epoch.
    """
    final: list[dict[str, Any]] = []
    for result in grid:
        if result.config.get("phase") == "final" and "test" in (result.metrics or {}):
            final += results.rows(spec, _final_record(setup, result))
    search = _search_rows(spec, setup, journal)
    results.write(folder / "results.parquet", pd.DataFrame(search + final))
    return pd.DataFrame(final)


def _search_rows(
    spec: StudySpec, setup: TrialSetup, journal: optuna.storages.BaseStorage
) -> list[dict[str, Any]]:
    """The rows of every search trial that reported, with its Optuna state.

    They are read from the journal, which the searcher writes before Tune's experiment state
    reaches storage, so a study resumed after ``kill -9`` has the rows of every trial Optuna
    counts. In worst-case mode they are phase ``worst_case`` and carry the rates drawn.
    """
    phase = "worst_case" if spec.mode == "worst_case" else "search"
    rows: list[dict[str, Any]] = []
    for cell in setup.cells.values():
        for trial in cell_trials(journal, cell.id):
            run = trial.user_attrs.get(RUN_ATTR)
            if run is None or not trial.state.is_finished():
                continue
            record = RunRecord(
                cell=cell,
                phase=phase,
                run=run["trial_id"],
                seed=cell.train.seed,
                values=worst_case.without_rates(trial.params),
                epochs=run["epoch"],
                seconds=run["seconds"],
                val=run["val"],
                state=trial.state.name,
                rates=setup.rates(cell, trial.params),
            )
            rows += results.rows(spec, record)
    return rows


def _final_record(setup: TrialSetup, result: Any) -> RunRecord:
    """The run record of a final run's last result (its test metrics)."""
    metrics, config = result.metrics, result.config
    cell = setup.cells[config["cell"]]
    return RunRecord(
        cell=cell,
        phase="final",
        run=str(metrics["trial_id"]),
        seed=int(config["seed"]),
        values=worst_case.without_rates(config["values"]),
        epochs=int(metrics["epoch"]),
        seconds=float(metrics["time_total_s"]),
        val=metrics["best_val"],
        test=metrics["test"],
        rates=setup.rates(cell, config["values"]),
    )


def _check_search_done(
    setup: TrialSetup, journal: optuna.storages.BaseStorage, folder: Path
) -> None:
    """Raise unless every cell has its budget of COMPLETE or PRUNED trials.

    Raises:
        SearchIncompleteError: naming the cells short of trials; a rerun resumes.
    """
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    short, failing = [], []
    for cell in setup.cells.values():
        found = cell_trials(journal, cell.id)
        n = sum(t.state in done for t in found)
        if n < cell.trials:
            short.append(f"{cell.id} {n}/{cell.trials}")
        if sum(t.state == TrialState.FAIL for t in found) >= MAX_FAILED:
            failing.append(cell.id)
    if failing:
        firsts = first_failures(folder / EXPERIMENT)
        causes = "; ".join(
            _failing_cell(cell, firsts.get(cell), folder / EXPERIMENT) for cell in failing
        )
        raise SearchIncompleteError(
            f"the search stopped: {causes}; fix the cause and rerun the same command"
        )
    if short:
        raise SearchIncompleteError(
            f"the search stopped before every cell had its trials ({', '.join(short)}); rerun "
            "the same command to resume it (failed trials are in the Tune experiment's folders)"
        )


def _failing_cell(cell: str, first: TrialFailure | None, experiment: Path) -> str:
    """``N trials of CELL failed, first with: CAUSE (traceback: FILE)``."""
    where = (
        f"first with: {first.cause} (traceback: {first.error_file})"
        if first is not None
        else f"their error.txt files are in {experiment}"
    )
    return f"{MAX_FAILED} trials of {cell} failed, {where}"


def _check_finals_done(
    spec: StudySpec,
    setup: TrialSetup,
    final: pd.DataFrame,
    journal: optuna.storages.BaseStorage,
    folder: Path,
) -> None:
    """Raise unless every cell with a COMPLETE trial has its final runs.

    Raises:
        SearchIncompleteError: how many final runs are missing; a rerun resumes them.
    """
    expected = spec.final.seeds * sum(
        any(t.state == TrialState.COMPLETE for t in cell_trials(journal, cell))
        for cell in setup.cells
    )
    found = final["run"].nunique() if len(final) else 0
    if found < expected:
        raise SearchIncompleteError(
            f"{expected - found} of {expected} final runs did not finish (see "
            f"{folder / EXPERIMENT}); rerun the same command to resume them"
        )
