"""Run a study: one Ray Tune search over every cell, then the final seeds of each cell's best.

``run_study(path)`` is what ``mmlearn study run FILE`` calls. The search is one ``Tuner`` whose
searcher keeps one Optuna study per cell (``STORAGE/NAME/optuna.journal``) and whose scheduler
runs ASHA per cell. The final phase is a second Tune experiment that re-trains each cell's
best COMPLETE configuration with ``final.seeds`` seeds and evaluates test once per run (in
worst-case mode the best is the worst: the rates that hurt the method most). A trial with
``workers > 1`` drives a Ray Train ``TorchTrainer`` (see ``mmlearn.study.trial``). Everything
lands in ``STORAGE/NAME/results.parquet``. Rerunning the same command resumes both phases: each
Tune experiment is restored (finished trials are not re-run; interrupted ones continue from
their last checkpoint).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
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
from mmlearn.report import write_report
from mmlearn.space import Dimension
from mmlearn.study import results, worst_case
from mmlearn.study.drivers import DRIVER_RESOURCE, DRIVER_SLOTS, train_env
from mmlearn.study.load import load_study
from mmlearn.study.results import RunRecord
from mmlearn.study.search import (
    MAX_FAILED,
    CellSearch,
    CellSearcher,
    FixedRuns,
    journal_storage,
    scheduler_for,
)
from mmlearn.study.spec import Cell, StudySpec
from mmlearn.study.trial import TrialSetup, run_trial
from mmlearn.tracking import tracking_callbacks

log = logging.getLogger(__name__)


class SearchIncompleteError(MmlearnError):
    """The search stopped (interrupted, or trials kept failing) before every cell was done."""


Progress = Callable[[str], None]
"""Where progress lines go (the CLI prints them); must be picklable (Tune saves it)."""


@dataclass(frozen=True)
class StudyOutcome:
    """What a study run produced.

    Attributes:
        folder: ``STORAGE/NAME``, where every output is.
        results: the results Parquet file.
        journal: the Optuna journal (one study per cell).
        experiment: the Tune experiment of the search.
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
        SearchIncompleteError: the search stopped early (e.g. Ctrl-C); no final runs started.
    """
    spec = load_study(path)
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
    started = _start_ray()
    try:
        _check_cluster(spec, path)
        grid = _search(spec, setup, folder, progress)
        _check_search_done(setup, folder / "optuna.journal")
        search_rows = _search_rows(spec, setup, grid, folder / "optuna.journal")
        final = _final(spec, setup, folder, search_rows, progress)
        at_rest = _resources_at_rest()
    finally:
        if started:
            ray.shutdown()
    report = write_report(folder, progress, spec=spec)
    return StudyOutcome(
        folder=folder,
        results=folder / "results.parquet",
        journal=folder / "optuna.journal",
        experiment=folder / "search",
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
    driver CPU on every result, so only the JSON logger runs (``_run_config``). A trial
    checkpoints every epoch, which forces an experiment snapshot each time; that is intended,
    so Tune need not warn about it.
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _start_ray() -> bool:
    """Connect to ``RAY_ADDRESS``, or start a local Ray sized to the machine; True if started."""
    if ray.is_initialized():
        return False
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
    return True


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
        time.sleep(0.5)


def _per_node(resource: str) -> bool:
    """Ray's bookkeeping resources (node ids, object store): not what trials hold."""
    return resource.startswith("node:") or resource in ("object_store_memory", "memory")


# ---------------------------------------------------------------------------------------------
# Search


class _SearchProgress(tune.Callback):
    """One line per finished trial: trials done per cell and each cell's best so far."""

    def __init__(
        self, journal: Path, budgets: Mapping[str, int], mode: str, progress: Progress
    ) -> None:
        self.journal = journal
        self.budgets = dict(budgets)
        self.mode = mode
        self.progress = progress

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.progress(self.line())

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.progress(f"trial {trial.trial_id} failed; see {trial.local_path}")

    def line(self) -> str:
        """``search D/N trials | cell d/n best s | ...`` from the Optuna journal."""
        storage = journal_storage(self.journal)
        done, parts = 0, []
        for cell, budget in self.budgets.items():
            trials = _trials(storage, cell)
            finished = [t for t in trials if t.state.is_finished()]
            complete = [t.value for t in finished if t.state == TrialState.COMPLETE]
            pick = max if self.mode == "max" else min
            best = f"{pick(complete):.4f}" if complete else "-"
            done += len(finished)
            parts.append(f"{cell} {len(finished)}/{budget} best {best}")
        return f"search {done}/{sum(self.budgets.values())} trials | " + " | ".join(parts)


def _trials(storage: optuna.storages.BaseStorage, cell: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of the cell's study, none if it does not exist yet."""
    try:
        return optuna.load_study(study_name=cell, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def _trainable(setup: TrialSetup) -> Any:
    """``run_trial`` with the study's setup, asking for what one trial holds.

    An in-process trial holds its worker's CPUs and GPUs; a Train driver holds one driver slot
    only, and its ``TorchTrainer`` asks Ray for the workers' own resources.
    """
    fn = tune.with_parameters(run_trial, setup=setup)
    if setup.workers == 1:
        return tune.with_resources(fn, {"cpu": setup.cpus, "gpu": setup.gpus})
    return tune.with_resources(fn, {"cpu": 0, DRIVER_RESOURCE: 1})


def _reuse_actors(setup: TrialSetup) -> bool:
    """Reuse in-process trials' processes (they keep torch and DeepSpeed imported). Not a
    Train driver's: when ASHA stops a trial, Tune cannot reset a driver that is inside
    ``TorchTrainer.fit`` for the next trial, drops it, and waits for it forever."""
    return setup.workers == 1


def _run_config(name: str, folder: Path, callbacks: list[tune.Callback]) -> tune.RunConfig:
    """Where an experiment of the study lives; a trial that crashes is retried once."""
    return tune.RunConfig(
        name=name,
        storage_path=str(folder),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=1),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[JsonLoggerCallback(), *callbacks],
    )


def _searched_space(spec: StudySpec, cell: Cell) -> Mapping[str, Dimension]:
    """The keys a cell's Optuna study searches: the method's space, or the rates."""
    if spec.mode == "worst_case":
        assert spec.worst_case is not None
        return worst_case.rate_space(spec.worst_case, spec.data.names)
    return cell.space


def _search(spec: StudySpec, setup: TrialSetup, folder: Path, progress: Progress) -> ResultGrid:
    """Run (or resume) the study's one Tuner over every cell."""
    trainable = _trainable(setup)
    experiment = folder / "search"
    if tune.Tuner.can_restore(str(experiment)):
        log.info("resuming the search in %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
        return tuner.fit()
    cells = spec.cells()
    journal = folder / "optuna.journal"
    mode = spec.search_mode
    searcher = CellSearcher(
        [CellSearch(c.id, _searched_space(spec, c), c.trials, c.train.seed) for c in cells],
        journal,
        mode,
        spec.max_epochs,
        spec.search.sampler,
        spec.search.seed,
    )
    s = spec.scheduler
    scheduler = scheduler_for(
        [c.id for c in cells], s.type, mode, spec.max_epochs, s.grace_period, s.reduction_factor
    )
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
        run_config=_run_config(
            "search",
            folder,
            [
                _SearchProgress(journal, {c.id: c.trials for c in cells}, mode, progress),
                *tracking_callbacks(spec, progress),
            ],
        ),
    )
    return tuner.fit()


def _check_search_done(setup: TrialSetup, journal: Path) -> None:
    """Raise unless every cell has its budget of COMPLETE or PRUNED trials.

    Raises:
        SearchIncompleteError: naming the cells short of trials; a rerun resumes.
    """
    storage = journal_storage(journal)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    short, failing = [], []
    for cell in setup.cells.values():
        found = _trials(storage, cell.id)
        n = sum(t.state in done for t in found)
        if n < cell.trials:
            short.append(f"{cell.id} {n}/{cell.trials}")
        if sum(t.state == TrialState.FAIL for t in found) >= MAX_FAILED:
            failing.append(cell.id)
    if failing:
        raise SearchIncompleteError(
            f"{MAX_FAILED} trials of {', '.join(failing)} failed, so the search stopped; read "
            f"their error.txt in {journal.parent / 'search'}, fix the cause and rerun"
        )
    if short:
        raise SearchIncompleteError(
            f"the search stopped before every cell had its trials ({', '.join(short)}); rerun "
            "the same command to resume it (failed trials are in the Tune experiment's folders)"
        )


def _search_rows(
    spec: StudySpec, setup: TrialSetup, grid: ResultGrid, journal: Path
) -> list[dict[str, Any]]:
    """Rows of every search trial that reported, from its last validation metrics.

    In worst-case mode the rows are phase ``worst_case`` and carry the rates the trial drew.
    """
    storage = journal_storage(journal)
    states = {
        cell: {t.number: t.state.name for t in _trials(storage, cell)} for cell in setup.cells
    }
    phase = "worst_case" if spec.mode == "worst_case" else "search"
    out: list[dict[str, Any]] = []
    for result in grid:
        if "val" not in (result.metrics or {}):
            continue
        record = _record(setup, result, phase)
        record = dataclasses.replace(
            record, state=states[record.cell.id].get(result.config["number"])
        )
        out += results.rows(spec, record)
    return out


def _record(setup: TrialSetup, result: Any, phase: str) -> RunRecord:
    """The run record of a trial's last result (a final run's holds its test metrics)."""
    metrics, config = result.metrics, result.config
    cell = setup.cells[config["cell"]]
    final = phase == "final"
    return RunRecord(
        cell=cell,
        phase=phase,
        run=str(metrics["trial_id"]),
        seed=int(config["seed"]),
        values=worst_case.without_rates(config["values"]),
        epochs=int(metrics["epoch"]),
        seconds=float(metrics["time_total_s"]),
        val=metrics["best_val"] if final else metrics["val"],
        test=metrics["test"] if final else None,
        rates=setup.rates(cell, config["values"]),
    )


# ---------------------------------------------------------------------------------------------
# Final phase


def _best_values(journal: Path, cells: Mapping[str, Cell]) -> dict[str, dict[str, Any]]:
    """Each cell's best COMPLETE configuration; cells without one are left out (logged)."""
    storage = journal_storage(journal)
    best = {}
    for cell in cells:
        study = optuna.load_study(study_name=cell, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("%s: no trial reached the full budget; no final runs", cell)
            continue
        best[cell] = dict(study.best_trial.params)
    return best


class _FinalProgress(tune.Callback):
    """One line per finished final run: runs done and the run's test score."""

    def __init__(self, total: int, metric: str, progress: Progress) -> None:
        self.total = total
        self.metric = metric
        self.progress = progress
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.done += 1
        result = trial.last_result or {}
        score = result.get("test", {}).get("mean", {}).get(self.metric, math.nan)
        self.progress(
            f"final {self.done}/{self.total} runs | {trial.config['cell']} seed "
            f"{trial.config['seed']}: test {self.metric} {score:.4f}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: D102
        self.progress(f"final run {trial.trial_id} failed; see {trial.local_path}")


def _final(
    spec: StudySpec,
    setup: TrialSetup,
    folder: Path,
    search_rows: list[dict[str, Any]],
    progress: Progress,
) -> pd.DataFrame:
    """Run (or resume) the final Tune experiment; returns its rows (every row is written)."""
    path = folder / "results.parquet"
    search = pd.DataFrame(search_rows)
    results.write(path, search)
    best = _best_values(folder / "optuna.journal", setup.cells)
    runs = [
        {"phase": "final", "cell": cell, "values": values, "seed": seed}
        for cell, values in best.items()
        for seed in range(spec.final.seeds)
    ]
    if not runs:
        return pd.DataFrame()
    trainable = _trainable(setup)
    experiment = folder / "final"
    if tune.Tuner.can_restore(str(experiment)):
        log.info("resuming the final runs in %s", experiment)
        grid = tune.Tuner.restore(str(experiment), trainable, resume_errored=True).fit()
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={},
            tune_config=tune.TuneConfig(
                search_alg=FixedRuns(runs),
                num_samples=len(runs),
                max_concurrent_trials=spec.resources.max_concurrent_trials,
                reuse_actors=_reuse_actors(setup),
            ),
            run_config=_run_config(
                "final",
                folder,
                [
                    _FinalProgress(len(runs), spec.objective.metric, progress),
                    *tracking_callbacks(spec, progress),
                ],
            ),
        )
        grid = tuner.fit()
    rows: list[dict[str, Any]] = []
    for result in grid:
        if "test" not in (result.metrics or {}):
            continue
        record = _record(setup, result, "final")
        rows += results.rows(spec, record)
    final = pd.DataFrame(rows)
    results.write(path, pd.concat([search, final], ignore_index=True))
    missing = len(runs) - len({r["run"] for r in rows})
    if missing:
        raise SearchIncompleteError(
            f"{missing} of {len(runs)} final runs did not finish (see {experiment}); rerun the "
            "same command to resume them"
        )
    return final
