"""Run a study: one Ray Tune search over every cell, then the final seeds of each cell's best.

``run_study(path)`` is what ``mmlearn study run FILE`` calls. The search is one ``Tuner`` whose
searcher keeps one Optuna study per cell (``STORAGE/NAME/optuna.journal``) and whose scheduler
runs ASHA per cell. The final phase re-trains each cell's best COMPLETE configuration with
``final.seeds`` seeds as Ray tasks and evaluates test once per seed. Everything lands in
``STORAGE/NAME/results.parquet``. Rerunning the same command resumes both phases: the Tune
experiment is restored (finished trials are not re-run) and finished final runs are skipped.
"""

from __future__ import annotations

import logging
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

from mmlearn.errors import ConfigError, MmlearnError
from mmlearn.study import results
from mmlearn.study.load import load_study
from mmlearn.study.results import RunRecord
from mmlearn.study.search import CellSearch, CellSearcher, journal_storage, scheduler_for
from mmlearn.study.spec import Cell, StudySpec
from mmlearn.study.trial import TrialSetup, final_run, search_trial

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
        cpus: (free, total) CPUs of the Ray cluster once the study had finished.
    """

    folder: Path
    results: Path
    journal: Path
    experiment: Path
    table: str
    cpus: tuple[float, float]

    def summary(self) -> str:
        """The final table and where the outputs are."""
        return "\n".join(
            [
                self.table,
                f"results     {self.results}",
                f"optuna      {self.journal}  (optuna-dashboard {self.journal})",
                f"tune        {self.experiment}",
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
        Where the outputs are, the final table and the cluster's free CPUs at the end.

    Raises:
        ConfigError: an invalid study file, or a setting the runner does not support yet.
        DataError: the data are missing.
        SearchIncompleteError: the search stopped early (e.g. Ctrl-C); no final runs started.
    """
    spec = load_study(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress lines say what matters
    if spec.mode == "worst_case":
        raise ConfigError(
            f"{path}: mode: worst_case is not run yet (worst-case runs arrive later); "
            "`mmlearn study check` validates the file"
        )
    if spec.resources.workers > 1:
        raise ConfigError(
            f"{path}: resources.workers: {spec.resources.workers} workers per trial are not yet "
            "supported by the runner; use workers: 1"
        )
    store = spec.data.open()
    folder = (spec.storage / spec.name).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    cells = spec.cells()
    setup = TrialSetup(
        cells={c.id: c for c in cells},
        store=str(Path(store.path).resolve()),
        task=spec.data.task,
        modalities=spec.data.names,
        cpus=spec.resources.cpus_per_worker,
        search_epochs=spec.max_epochs,
    )
    started = _start_ray()
    try:
        grid = _search(spec, setup, folder, progress)
        _check_search_done(setup, folder / "optuna.journal")
        search_rows = _search_rows(spec, setup, grid, folder / "optuna.journal")
        final = _final(spec, setup, folder, search_rows, progress)
        cpus = _cpus_at_rest()
    finally:
        if started:
            ray.shutdown()
    return StudyOutcome(
        folder=folder,
        results=folder / "results.parquet",
        journal=folder / "optuna.journal",
        experiment=folder / "search",
        table=results.final_table(final, spec.objective.metric),
        cpus=cpus,
    )


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
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            **quiet,
        )
    return True


def _cpus_at_rest(wait_s: float = 15.0) -> tuple[float, float]:
    """(free, total) CPUs once the cluster has released what the study took (or ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        total = ray.cluster_resources().get("CPU", 0.0)
        if free >= total or time.monotonic() > deadline:
            return free, total
        time.sleep(0.5)


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


def _search(spec: StudySpec, setup: TrialSetup, folder: Path, progress: Progress) -> ResultGrid:
    """Run (or resume) the study's one Tuner over every cell."""
    r = spec.resources
    trainable = tune.with_resources(
        tune.with_parameters(search_trial, setup=setup),
        {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker},
    )
    experiment = folder / "search"
    # A trial checkpoints every epoch, which forces a snapshot each time; that is intended.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if tune.Tuner.can_restore(str(experiment)):
        log.info("resuming the search in %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
        return tuner.fit()
    cells = spec.cells()
    journal = folder / "optuna.journal"
    mode = spec.search_mode
    searcher = CellSearcher(
        [CellSearch(c.id, c.space, c.trials) for c in cells],
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
            max_concurrent_trials=r.max_concurrent_trials,
            reuse_actors=True,  # a trial's process keeps torch and DeepSpeed imported
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=str(folder),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_SearchProgress(journal, {c.id: c.trials for c in cells}, mode, progress)],
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
    short = [
        f"{cell.id} {n}/{cell.trials}"
        for cell in setup.cells.values()
        if (n := sum(t.state in done for t in _trials(storage, cell.id))) < cell.trials
    ]
    if short:
        raise SearchIncompleteError(
            f"the search stopped before every cell had its trials ({', '.join(short)}); rerun "
            "the same command to resume it (failed trials are in the Tune experiment's folders)"
        )


def _search_rows(
    spec: StudySpec, setup: TrialSetup, grid: ResultGrid, journal: Path
) -> list[dict[str, Any]]:
    """Rows of every search trial that reported, from its last validation metrics."""
    storage = journal_storage(journal)
    states = {
        cell: {t.number: t.state.name for t in _trials(storage, cell)} for cell in setup.cells
    }
    out: list[dict[str, Any]] = []
    for result in grid:
        metrics = result.metrics or {}
        if "val" not in metrics:
            continue
        cell = setup.cells[result.config["cell"]]
        record = RunRecord(
            cell=cell,
            phase="search",
            run=str(metrics["trial_id"]),
            seed=cell.train.seed,
            values=result.config["values"],
            epochs=int(metrics["epoch"]),
            seconds=float(metrics["time_total_s"]),
            val=metrics["val"],
            state=states[cell.id].get(result.config["number"]),
        )
        out += results.rows(spec, record)
    return out


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


def _final(
    spec: StudySpec,
    setup: TrialSetup,
    folder: Path,
    search_rows: list[dict[str, Any]],
    progress: Progress,
) -> pd.DataFrame:
    """Run the final seeds not yet in the results; returns every final row."""
    path = folder / "results.parquet"
    final = results.read_final(path)
    done = set(zip(final["cell"], final["seed"], strict=True)) if not final.empty else set()
    best = _best_values(folder / "optuna.journal", setup.cells)
    pending = [
        (cell, seed)
        for cell in best
        for seed in range(spec.final.seeds)
        if (cell, seed) not in done
    ]
    search = pd.DataFrame(search_rows)
    results.write(path, pd.concat([search, final], ignore_index=True))
    if not pending:
        return final
    r = spec.resources
    task = ray.remote(num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker, max_retries=0)(
        final_run
    )
    shared = ray.put(setup)
    queue, running = list(pending), []
    total = len(best) * spec.final.seeds
    while queue or running:
        while queue and len(running) < r.max_concurrent_trials:
            cell, seed = queue.pop(0)
            running.append(task.remote(shared, cell, best[cell], seed))
        ready, running = ray.wait(running, num_returns=1)
        out = ray.get(ready[0])
        record = RunRecord(
            cell=setup.cells[out["cell"]],
            phase="final",
            run=f"final-{out['seed']}",
            seed=out["seed"],
            values=best[out["cell"]],
            epochs=out["epochs"],
            seconds=out["seconds"],
            val=out["val"],
            test=out["test"],
        )
        final = pd.concat([final, pd.DataFrame(results.rows(spec, record))], ignore_index=True)
        results.write(path, pd.concat([search, final], ignore_index=True))
        score = out["test"]["mean"][spec.objective.metric]
        progress(
            f"final {len(final) // len(record.val['patterns'])}/{total} runs | {out['cell']} "
            f"seed {out['seed']}: test {spec.objective.metric} {score:.4f}"
        )
    return final
