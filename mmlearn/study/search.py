"""The trials of a study in Ray Tune: one Optuna study and one ASHA bracket per cell, then
each cell's final runs, all in one Tune experiment.

``CellSearcher`` is a Tune ``Searcher`` that owns one Optuna study per cell, all in one journal
file, and hands out trials so that every cell gets exactly its budget. Trials stopped early by
the scheduler are told to Optuna as PRUNED (their intermediate values were reported every
epoch), full-budget trials as COMPLETE, errors as FAIL. As soon as a cell's search is over it
hands out that cell's final runs (its best configuration with each final seed), so that they
fill the slots other cells' last search trials leave free. ``CellScheduler`` routes every
search trial to the ASHA scheduler of its own cell, so that trials are compared within a cell
only, and lets final runs run to the end.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from mmlearn.space import Dimension

log = logging.getLogger(__name__)

METRIC = "score"
"""The reported metric that the search and the schedulers compare: the objective's mean over
patterns on validation."""

EPOCH = "training_iteration"
"""Tune's count of reports; a trial reports once per epoch."""

MAX_FAILED = 3
"""Failed trials after which a cell gets no more trials (a crash that repeats is not retried
forever); the study then stops with an error that names the cell."""

RUN_ATTR = "run"
"""The Optuna user attribute that holds what ``results.parquet`` keeps of a finished search
trial (``run_summary``) and what Optuna is told of it (``state``, ``value``). The searcher sets
it just before the tell, so every finished trial in the journal has it, even when a killed
driver left Tune's experiment state on storage behind (Tune uploads that state in the
background); a trial the driver died between the two is told on restart."""

_VAL_PATTERNS = "val/patterns/"
"""Prefix of the per-pattern validation metrics in Tune's flattened results."""


def run_summary(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a search trial's row needs of its last flattened Tune result: the Tune trial id,
    the epoch, wall seconds and the validation metrics per pattern; None without them."""
    patterns: dict[str, dict[str, Any]] = {}
    for key, value in result.items():
        if key.startswith(_VAL_PATTERNS):
            pattern, metric = key[len(_VAL_PATTERNS) :].rsplit("/", 1)
            patterns.setdefault(pattern, {})[metric] = value
    if not patterns:
        return None
    return {
        "trial_id": str(result["trial_id"]),
        "epoch": int(result["epoch"]),
        "seconds": float(result["time_total_s"]),
        "val": {"patterns": patterns},
    }


@dataclass(frozen=True)
class CellSearch:
    """What the searcher needs of one cell.

    Attributes:
        id: the cell id, also the Optuna study name.
        space: searched key -> dimension.
        trials: the cell's trial budget.
        seed: the training seed of its trials.
        metric: the name of the value its trials report, which optuna-dashboard shows.
    """

    id: str
    space: Mapping[str, Dimension]
    trials: int
    seed: int = 0
    metric: str = METRIC


def journal_storage(path: Path) -> JournalStorage:
    """The Optuna journal storage at ``path`` (created with its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by study-file name (tpe, random, gp), seeded."""
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)


def open_study(
    storage: JournalStorage,
    cell_id: str,
    mode: Literal["max", "min"],
    sampler: str,
    seed: int,
    metric: str = METRIC,
) -> optuna.Study:
    """The cell's Optuna study in ``storage``, created when missing; its value named ``metric``.

    The sampler's seed also depends on the trials already in the study, so that a resumed
    study does not draw the same points again.
    """
    direction = "maximize" if mode == "max" else "minimize"
    study = optuna.create_study(
        storage=storage, study_name=cell_id, direction=direction, load_if_exists=True
    )
    if study.metric_names != [metric]:
        with warnings.catch_warnings():  # Optuna marks it experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    study.sampler = make_sampler(sampler, seed + len(study.get_trials(deepcopy=False)))
    return study


class CellSearcher(Searcher):
    """Tune searcher of a study: each cell's search trials, then each cell's final runs.

    The next search trial goes to the cell with the fewest trials so far (trials that failed do
    not count, so they are replaced, up to ``MAX_FAILED`` failures per cell). Once every cell
    has its search trials handed out, the searcher hands out the final runs of the cells whose
    search is over (their budget of trials finished COMPLETE or PRUNED): the best COMPLETE
    configuration (in worst-case mode the rates that hurt most) with seeds ``0 ..
    final_seeds - 1``. A cell without a COMPLETE trial gets no final runs (logged).

    Configs are ``{"phase": "search", "cell": id, "values": {key: value}, "seed": s,
    "number": n}`` (``n``: the Optuna trial number) for search trials and ``{"phase": "final",
    "cell": id, "values": {key: value}, "seed": s}`` for final runs.

    Args:
        cells: the cells, in study order.
        journal: the Optuna journal file.
        mode: ``max`` or ``min`` (of ``score``).
        max_epochs: the epochs a full-budget trial reaches.
        sampler: tpe, random or gp.
        seed: base seed of the samplers.
        final_seeds: final runs per cell.
    """

    def __init__(
        self,
        cells: Sequence[CellSearch],
        journal: Path,
        mode: Literal["max", "min"],
        max_epochs: int,
        sampler: str,
        seed: int,
        final_seeds: int,
    ) -> None:
        super().__init__(metric=METRIC, mode=mode)
        self.cells = {c.id: c for c in cells}
        self.journal = journal
        self.direction = mode
        self.max_epochs = max_epochs
        self.sampler = sampler
        self.seed = seed
        self.final_seeds = final_seeds
        # Tune trial id -> (cell id, Optuna trial id, last epoch reported to Optuna)
        self.live: dict[str, tuple[str, int, int]] = {}
        # cell id -> final runs handed out (cells without a COMPLETE trial: final_seeds)
        self.finals: dict[str, int] = {}
        # Tune trial id -> its last result this session (what a failed trial's row holds)
        self._latest: dict[str, Mapping[str, Any]] = {}
        self._studies: dict[str, optuna.Study] | None = None
        self._storage: JournalStorage | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_studies"] = state["_storage"] = None  # reopened from the journal
        state["_latest"] = {}
        return state

    @property
    def storage(self) -> JournalStorage:
        """The Optuna journal, opened on first use."""
        if self._storage is None:
            self._storage = journal_storage(self.journal)
        return self._storage

    @property
    def studies(self) -> dict[str, optuna.Study]:
        """The cells' Optuna studies, opened on first use; stale RUNNING trials marked FAIL.

        A RUNNING trial is stale when no live Tune trial owns it (a crashed driver left it).
        """
        if self._studies is None:
            self._studies = {
                cell_id: open_study(
                    self.storage, cell_id, self.direction, self.sampler, seed, cell.metric
                )
                for seed, (cell_id, cell) in enumerate(self.cells.items(), start=self.seed * 1000)
            }
            owned = {optuna_id for _, optuna_id, _ in self.live.values()}
            for study in self._studies.values():
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    if t._trial_id in owned:
                        continue
                    run = t.user_attrs.get(RUN_ATTR)
                    if run is not None:  # its end was recorded, the driver died before the tell
                        study.tell(t.number, run["value"], state=TrialState[run["state"]])
                        continue
                    log.warning(
                        "%s: trial %d was left RUNNING; marked FAIL", study.study_name, t.number
                    )
                    study.tell(t.number, state=TrialState.FAIL)
        return self._studies

    def _tally(self) -> dict[str, Counter[TrialState]]:
        """Each cell's trials by state, read once from the journal."""
        return {
            cell_id: Counter(t.state for t in study.get_trials(deepcopy=False))
            for cell_id, study in self.studies.items()
        }

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next search trial, else the next final run, None to wait, or FINISHED.

        A search trial goes to an open cell: fewer trials than its budget (every state but
        FAIL counts) and fewer than ``MAX_FAILED`` failures.
        """
        tally = self._tally()
        counts = {cell_id: n.total() - n[TrialState.FAIL] for cell_id, n in tally.items()}
        open_cells = [
            c
            for c in self.cells.values()
            if counts[c.id] < c.trials and tally[c.id][TrialState.FAIL] < MAX_FAILED
        ]
        if open_cells:
            return self._search_trial(trial_id, min(open_cells, key=lambda c: counts[c.id]))
        final = self._final_run(tally)
        if final is not None:
            return final
        return Searcher.FINISHED if not self.live else None

    def _search_trial(self, trial_id: str, cell: CellSearch) -> dict[str, Any]:
        """Ask the cell's Optuna study for a trial; its config."""
        trial = self.studies[cell.id].ask()
        values = {key: dim.suggest(trial, key) for key, dim in cell.space.items()}
        self.live[trial_id] = (cell.id, trial._trial_id, 0)
        return {
            "phase": "search",
            "cell": cell.id,
            "values": values,
            "seed": cell.seed,
            "number": trial.number,
        }

    def _final_run(self, tally: Mapping[str, Counter[TrialState]]) -> dict[str, Any] | None:
        """The next final run of a cell whose search is over (its budget of trials finished
        COMPLETE or PRUNED); None if there is none yet."""
        for cell_id, cell in self.cells.items():
            handed = self.finals.get(cell_id, 0)
            n = tally[cell_id]
            if (
                handed >= self.final_seeds
                or n[TrialState.COMPLETE] + n[TrialState.PRUNED] < cell.trials
            ):
                continue
            if not n[TrialState.COMPLETE]:
                log.warning("%s: no trial reached the full budget; no final runs", cell_id)
                self.finals[cell_id] = self.final_seeds
                continue
            self.finals[cell_id] = handed + 1
            values = dict(self.studies[cell_id].best_trial.params)
            return {"phase": "final", "cell": cell_id, "values": values, "seed": handed}
        return None

    def _trial(self, trial_id: str) -> optuna.Trial | None:
        """The live Optuna trial of a Tune trial, or None when Optuna has finished it (or the
        trial is a final run).

        A trial may be finished in Optuna but not in Tune: a failed trial that Tune resumes, or
        one told after Tune's last experiment snapshot before a crash.
        """
        if trial_id not in self.live:
            return None
        cell_id, optuna_id, _ = self.live[trial_id]
        study = self.studies[cell_id]
        if self.storage.get_trial(optuna_id).state.is_finished():
            del self.live[trial_id]
            return None
        return optuna.Trial(study, optuna_id)

    def _report(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Report the result's score as the intermediate value of its epoch, once."""
        trial = self._trial(trial_id)
        if trial is None or METRIC not in result or not math.isfinite(result[METRIC]):
            return
        cell_id, optuna_id, reported = self.live[trial_id]
        epoch = int(result[EPOCH])
        if epoch > reported:
            trial.report(float(result[METRIC]), epoch)
            self.live[trial_id] = (cell_id, optuna_id, epoch)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report the epoch's score to Optuna as an intermediate value."""
        self._latest[trial_id] = result
        self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell Optuna: FAIL on error, PRUNED if stopped early, else COMPLETE with the score.

        Tune hands a result that stops a trial (ASHA's decision, or the last epoch) to
        ``on_trial_complete`` only, so its intermediate value is reported here first. The
        trial's last result (for an error: its last this session) is kept in the journal as
        ``RUN_ATTR`` before Optuna is told.
        """
        latest = self._latest.pop(trial_id, None)
        trial = self._trial(trial_id)
        if trial is None:
            return
        if result and not error:
            self._report(trial_id, result)
        cell_id, _, _ = self.live.pop(trial_id)
        state, value = self._outcome(result, error)
        summary = run_summary(result or latest or {})
        if summary is not None:
            trial.set_user_attr(RUN_ATTR, {**summary, "state": state.name, "value": value})
        self.studies[cell_id].tell(trial, value, state=state)

    def _outcome(
        self, result: Mapping[str, Any] | None, error: bool
    ) -> tuple[TrialState, float | None]:
        """The state and value Optuna is told of a trial that ended with ``result``."""
        if error or not result or not math.isfinite(result.get(METRIC, math.nan)):
            return TrialState.FAIL, None
        if result[EPOCH] < self.max_epochs:
            return TrialState.PRUNED, None
        return TrialState.COMPLETE, float(result[METRIC])

    def save(self, checkpoint_path: str) -> None:
        """Save the live-trial map and the final runs handed out; the studies live in the
        journal."""
        _write_state(checkpoint_path, {"live": self.live, "finals": self.finals})

    def restore(self, checkpoint_path: str) -> None:
        """Restore what ``save`` saved; the studies are reopened from the journal."""
        state = _read_state(checkpoint_path)
        self.live = {k: tuple(v) for k, v in state["live"].items()}
        self.finals = dict(state["finals"])
        self._studies = None


def _write_state(path: str, state: Any) -> None:
    """Write a searcher's state as JSON (plain data: nothing to unpickle on resume)."""
    Path(path).write_text(json.dumps(state))


def _read_state(path: str) -> Any:
    """Read a searcher's state written by ``_write_state``."""
    return json.loads(Path(path).read_text())


class CellScheduler(FIFOScheduler):
    """Routes every search trial to its own cell's ASHA scheduler (cells are not comparable);
    final runs always continue.

    Args:
        cells: the cell ids.
        mode: ``max`` or ``min`` (of ``score``).
        max_t: the epochs a trial may reach.
        grace_period: epochs before ASHA may stop a trial.
        reduction_factor: ASHA's reduction factor.
    """

    def __init__(
        self,
        cells: Sequence[str],
        mode: Literal["max", "min"],
        max_t: int,
        grace_period: int,
        reduction_factor: float,
    ) -> None:
        super().__init__()
        self._metric = METRIC
        self.per_cell = {
            cell: AsyncHyperBandScheduler(
                time_attr=EPOCH,
                metric=METRIC,
                mode=mode,
                max_t=max_t,
                grace_period=grace_period,
                reduction_factor=reduction_factor,
            )
            for cell in cells
        }
        self.final_runs = FIFOScheduler()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Metric and mode are the scheduler's own; Tune's must be unset."""
        return metric is None and mode is None

    def _of(self, trial: Trial) -> TrialScheduler:
        if trial.config["phase"] == "final":
            return self.final_runs
        return self.per_cell[trial.config["cell"]]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:  # noqa: D102
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:  # noqa: D102
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:  # noqa: D102
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:  # noqa: D102
        self._of(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:  # noqa: D102
        self._of(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:  # noqa: D102
        return "\n".join(f"{cell}: {s.debug_string()}" for cell, s in self.per_cell.items())


def scheduler_for(
    cells: Sequence[str],
    kind: str,
    mode: Literal["max", "min"],
    max_t: int,
    grace_period: int,
    reduction_factor: float,
) -> TrialScheduler:
    """ASHA per cell for ``kind == "asha"``, else FIFO."""
    if kind == "asha":
        return CellScheduler(cells, mode, max_t, grace_period, reduction_factor)
    return FIFOScheduler()
