"""The sections of a study file other than its methods: data, conditions, search, scheduler,
resources, final runs, objective, tracking and the worst-case rate search.

Every section checks itself (types, ranges, names); rules that span sections are the study's
(``mmlearn.study.spec``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, model_validator

from mmlearn.data.missing import Mode
from mmlearn.data.resolve import open_prepared_store, resolve_store
from mmlearn.data.source import get_source, list_sources
from mmlearn.data.spec import TargetSpec
from mmlearn.data.store import MANIFEST, FeatureStore, open_store
from mmlearn.errors import ConfigError, DataError, Problem, did_you_mean
from mmlearn.metrics.patterns import METRIC_MODES
from mmlearn.models.registry import train_protocol
from mmlearn.study._errors import raise_problems
from mmlearn.study.fields import (
    Names,
    NonEmpty,
    PathField,
    Rate,
    RateRange,
    Section,
    Slug,
    aim_repo,
    as_tuple,
    expand_env,
)

FOLD = "{fold}"
"""The placeholder of ``data.path`` that each of ``data.folds`` replaces."""
AIM_REPO_ENV = "MMLEARN_AIM_REPO"
"""Environment variable that, when set, replaces the study's Aim repository."""
_BETTER = {"max": "larger", "min": "smaller"}


class DataSpec(Section):
    """Where the data come from and which modalities a study uses."""

    source: str | None = Field(
        None, description="a registered data source (mfeat, synthetic), prepared once into runs/"
    )
    path: PathField | None = Field(
        None,
        description="a prepared feature store; ${VAR} and ${VAR:-default} are expanded. The "
        "store need not exist for a check; its manifest is read when it does",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="options of the source (mmlearn data prepare SOURCE -h)"
    )
    modalities: Names | None = Field(
        None,
        description="modalities to use, in this order; null uses all of the data's. Required "
        "when the store at path does not exist yet",
    )
    task: str | None = Field(None, description="target to train on; null uses the data's default")
    folds: Annotated[tuple[int, ...], BeforeValidator(as_tuple), NonEmpty] | None = Field(
        None,
        description="cross-validation folds, one store each: path holds {fold} (e.g. "
        "data/iemocap/fold{fold}), and every cell runs once per fold",
    )
    prepare: Annotated[str, BeforeValidator(expand_env)] | None = Field(
        None,
        description="the command that writes the store at path ({fold} and ${VAR} replaced), "
        "named in the error when the store is missing",
    )
    _names: tuple[str, ...] = PrivateAttr(default=())
    _target: TargetSpec | None = PrivateAttr(default=None)

    @property
    def names(self) -> tuple[str, ...]:
        """The modalities the study uses, in order."""
        return self._names

    @property
    def target(self) -> TargetSpec | None:
        """The trained target, when the store exists and so it is known without training."""
        return self._target

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        problems: list[Problem] = []
        available = None
        if (self.source is None) == (self.path is None):
            problems.append(
                ((), "give exactly one of source (a source name) or path (a prepared store)")
            )
        elif self.source is not None:
            available = self._source_modalities(problems)
            problems += [
                ((key,), f"only applies to path; {reason}")
                for key, reason in (
                    ("folds", "a source has no folds (a store per fold, path holding {fold})"),
                    ("prepare", "a source is prepared by the runner"),
                )
                if getattr(self, key) is not None
            ]
        else:
            problems += self._fold_problems()
            available = self._store_modalities(problems)
        if not problems:
            self._names = self._chosen(available, problems)
        raise_problems("data", problems)
        return self

    def _source_modalities(self, problems: list[Problem]) -> tuple[str, ...] | None:
        assert self.source is not None
        try:
            source = get_source(self.source)
        except ConfigError:
            known = [s.name for s in list_sources()]
            problems.append(
                (
                    ("source",),
                    f"unknown data source {self.source!r}{did_you_mean(self.source, known)} "
                    f"(known: {', '.join(known)})",
                )
            )
            return None
        try:
            return source.modalities(source.parse_options(self.options))
        except ConfigError as e:
            problems.append((("options",), str(e)))
            return None

    def _fold_problems(self) -> list[Problem]:
        templated = FOLD in str(self.path)
        if self.folds is None:
            return (
                [(("path",), f"holds {FOLD} but no folds are listed; add folds: [1, 2, ...]")]
                if templated
                else []
            )
        problems: list[Problem] = []
        if not templated:
            problems.append(
                (("path",), f"must hold {FOLD} (e.g. data/iemocap/fold{FOLD}) to name each fold")
            )
        seen: set[int] = set()
        for i, fold in enumerate(self.folds):
            if fold < 0:
                problems.append((("folds", i), f"must be >= 0, but got {fold}"))
            elif fold in seen:
                problems.append((("folds", i), f"fold {fold} is listed twice"))
            seen.add(fold)
        return problems

    def fold_ids(self) -> tuple[int | None, ...]:
        """The folds, or ``(None,)`` for data without folds."""
        return self.folds or (None,)

    def store_path(self, fold: int | None = None) -> Path | None:
        """The store of ``fold`` (``path`` with {fold} filled in); None for source data."""
        return None if self.path is None else self._fold_path(fold)

    def _fold_path(self, fold: int | None) -> Path:
        assert self.path is not None
        return self.path if fold is None else Path(str(self.path).replace(FOLD, str(fold)))

    def _store_modalities(self, problems: list[Problem]) -> tuple[str, ...] | None:
        assert self.path is not None
        if self.options:
            problems.append(
                (("options",), "a prepared store takes no options; they were fixed by prepare")
            )
        present = [
            path for path in map(self._fold_path, self.fold_ids()) if (path / MANIFEST).is_file()
        ]
        if not present:
            return None
        try:
            store = open_store(present[0])
        except DataError as e:
            problems.append((("path",), str(e)))
            return None
        try:
            self._target = store.spec(self.task).target
        except DataError as e:
            problems.append((("task",), str(e)))
        return store.names

    def _chosen(
        self, available: tuple[str, ...] | None, problems: list[Problem]
    ) -> tuple[str, ...]:
        if self.modalities is None:
            if available is None:
                where = f"the store at {self.path}" if self.path else f"source {self.source!r}"
                problems.append(
                    (
                        ("modalities",),
                        f"required, because {where} does not exist yet and so cannot say which "
                        "modalities it has; list them, e.g. [audio, vision, text]",
                    )
                )
                return ()
            return available
        for i, name in enumerate(self.modalities):
            if available is not None and name not in available:
                problems.append(
                    (
                        ("modalities", i),
                        f"unknown modality {name!r}{did_you_mean(name, available)} "
                        f"(the data have {', '.join(available)})",
                    )
                )
            elif name in self.modalities[:i]:
                problems.append((("modalities", i), f"modality {name!r} is listed twice"))
        if len(self.modalities) < 2:
            problems.append(
                (("modalities",), f"needs >= 2 modalities, but got {list(self.modalities)}")
            )
        return self.modalities

    def open(self, fold: int | None = None) -> FeatureStore:
        """Open the data: the store at ``path``, or ``source`` prepared once into ``runs/``.

        Args:
            fold: the fold whose store to open. None with folds checks that every fold's store
                is there and opens the first.

        Raises:
            DataError: a store is missing files, named in one line with how to provide them.
        """
        if self.source is not None:
            return resolve_store(self.source, self.options)
        folds = self.fold_ids() if fold is None else (fold,)
        stores = {f: self._fold_path(f) for f in folds}
        prepare = {f: self.prepare.replace(FOLD, str(f)) for f in folds} if self.prepare else {}
        return open_prepared_store(stores, prepare, where="data.path")


class ConditionSpec(Section):
    """One training condition: per-modality missing rates and the mask protocol.

    Evaluation is not part of a condition: it always covers every non-empty pattern.
    """

    name: Slug = Field(description="the condition's name, the part after '@' in cell ids")
    rates: dict[str, Rate] = Field(
        default_factory=dict,
        description="modality -> missing rate in [0, 1) of the training data; unnamed: 0",
    )
    protocol: Mode | None = Field(
        None,
        description="the training mask mode (mmlearn.data.missing); null uses per_epoch when "
        "rates are given, else each method's own protocol",
    )
    allow_empty: bool = Field(
        True,
        description="per_epoch / per_sample_fixed: keep samples with every modality masked "
        "(RedCore's official sampler), or repair them",
    )

    def mode_for(self, method: str) -> str:
        """The training mask mode of ``method`` under this condition."""
        if self.protocol is not None:
            return self.protocol
        return "per_epoch" if self.rates else train_protocol(method)


class SearchSpec(Section):
    """How each cell's hyperparameters are searched: one Optuna study per cell."""

    sampler: Literal["tpe", "random", "gp"] = Field("tpe", description="the Optuna sampler")
    trials_per_cell: int = Field(
        20, ge=1, description="trials of every cell (budget-matched cells)"
    )
    seed: int = Field(0, ge=0, description="seed of the samplers")


class SchedulerSpec(Section):
    """Early stopping within a cell: ASHA, or none."""

    type: Literal["asha", "none"] = Field("asha", description="asha, or none")
    max_epochs: int | None = Field(
        None, ge=1, description="ASHA's max_t; null uses train.epochs; at most train.epochs"
    )
    grace_period: int = Field(1, ge=1, description="epochs before ASHA may stop a trial")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA's reduction factor (> 1)")

    @model_validator(mode="after")
    def _check(self) -> SchedulerSpec:
        problems: list[Problem] = []
        if self.type == "none":
            problems = [
                ((key,), "only applies to type: asha")
                for key in ("max_epochs", "grace_period", "reduction_factor")
                if key in self.model_fields_set
            ]
        raise_problems("scheduler", problems)
        return self


def _whole_above_one(value: float) -> bool:
    return value <= 1 or float(value).is_integer()


class ResourcesSpec(Section):
    """What one trial takes, and how many trials run at once."""

    workers: int = Field(
        1, ge=1, description="processes per trial: 1 trains in the trial; more use Ray Train"
    )
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs of each worker")
    gpus_per_worker: float = Field(
        0.0,
        ge=0,
        description="GPUs of each worker; fractions only for one-worker trials",
    )
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at the same time")

    @model_validator(mode="after")
    def _check(self) -> ResourcesSpec:
        problems: list[Problem] = [
            ((key,), f"Ray needs a whole number above 1, but got {getattr(self, key)}")
            for key in ("cpus_per_worker", "gpus_per_worker")
            if not _whole_above_one(getattr(self, key))
        ]
        if self.workers > 1 and 0 < self.gpus_per_worker < 1:
            problems.append(
                (
                    ("gpus_per_worker",),
                    f"must be a whole number when workers > 1 (two workers of one trial on one "
                    f"GPU crash NCCL), but got {self.gpus_per_worker} with workers="
                    f"{self.workers}; use whole GPUs, or workers: 1 to share a GPU",
                )
            )
        raise_problems("resources", problems)
        return self

    @property
    def trials_per_gpu(self) -> int:
        """One-worker trials that share one GPU at once (1 for trials of whole GPUs, 0 without).

        Ray places a trial of g < 1 GPU on a GPU that has g left, so floor(1 / g) share one.
        """
        if self.gpus_per_worker == 0:
            return 0
        if self.gpus_per_worker >= 1:
            return 1
        return math.floor(1 / self.gpus_per_worker + 1e-9)

    def trials_per_node(self, cpus: float, gpus: float) -> int:
        """Trials at once on a node of ``cpus`` CPUs and ``gpus`` GPUs (whole workers per trial).

        Multi-worker trials may also span nodes; this counts the ones a node holds alone.
        """
        by_cpu = math.floor(cpus / self.cpus_per_worker + 1e-9)
        workers = by_cpu
        if self.gpus_per_worker:
            workers = min(by_cpu, math.floor(gpus / self.gpus_per_worker + 1e-9))
        return workers // self.workers

    def packing(self) -> str:
        """How trials share GPUs, in words: per GPU, and per GPU node."""
        cpus = self.cpus_per_worker * self.workers
        if self.gpus_per_worker == 0:
            return f"no GPU; a node runs its CPUs / {cpus:g} trials at once"
        if self.trials_per_gpu > 1:
            return (
                f"{self.trials_per_gpu} trials share a GPU ({self.gpus_per_worker:g} GPU each); "
                f"a GPU node runs min({self.trials_per_gpu} x its GPUs, its CPUs / {cpus:g}) "
                "trials at once"
            )
        gpus = self.gpus_per_worker * self.workers
        return (
            f"{gpus:g} GPU(s) per trial; a GPU node runs min(its GPUs / {gpus:g}, its CPUs / "
            f"{cpus:g}) trials at once"
        )


class FinalSpec(Section):
    """The final phase: each cell's best configuration re-run with several seeds, tested once."""

    seeds: int = Field(5, ge=1, description="seeds 0 ... seeds-1 of every cell's final runs")


class ObjectiveSpec(Section):
    """What the search optimises: a validation metric averaged over every missing pattern."""

    metric: str = Field("macro_f1", description="a metric of mmlearn.metrics (macro_f1, mae, ...)")
    mode: Literal["max", "min"] | None = Field(
        None, description="max or min; null (or the same value) follows the metric"
    )

    @property
    def direction(self) -> Literal["max", "min"]:
        """Whether a larger (max) or a smaller (min) score is better."""
        return METRIC_MODES[self.metric]

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        problems: list[Problem] = []
        if self.metric not in METRIC_MODES:
            problems.append(
                (
                    ("metric",),
                    f"unknown metric {self.metric!r}{did_you_mean(self.metric, METRIC_MODES)} "
                    f"(known: {', '.join(METRIC_MODES)})",
                )
            )
        elif self.mode is not None and self.mode != self.direction:
            problems.append(
                (
                    ("mode",),
                    f"{self.metric} is better when {_BETTER[self.direction]}, so mode must be "
                    f"{self.direction!r} or left out, but got {self.mode!r}",
                )
            )
        raise_problems("objective", problems)
        return self


class TrackingSpec(Section):
    """Where trials are tracked."""

    aim: Annotated[str, BeforeValidator(expand_env), AfterValidator(aim_repo)] | None = Field(
        "runs/aim",
        description="Aim repository: a path (${VAR} expanded), aim://HOST:PORT, or null (off); "
        f"${AIM_REPO_ENV}, when set, replaces a path or address given here",
    )

    @property
    def repo(self) -> str | None:
        """The Aim repository trials go to: ``$MMLEARN_AIM_REPO`` if set, else ``aim``.

        The variable moves tracking elsewhere (a cluster's ``aim://`` server); it does not turn
        on tracking that the study file turned off with ``aim: null``.

        Raises:
            ConfigError: the variable holds a malformed ``aim://`` address.
        """
        override = os.environ.get(AIM_REPO_ENV)
        if self.aim is None or not override:
            return self.aim
        try:
            return aim_repo(override)
        except ValueError as e:
            raise ConfigError(f"{AIM_REPO_ENV}: {e}") from e


class WorstCaseSpec(Section):
    """Worst-case mode: search the missing rates that hurt each method most.

    For each method, with its hyperparameters fixed, an Optuna search draws per-modality rates
    (within ``rates`` ranges, or summing to ``budget``) and minimises the validation score.
    """

    rates: Annotated[dict[str, RateRange], NonEmpty] | None = Field(
        None,
        description="modality -> [low, high] range of its rate, within [0, 1); unnamed: 0",
    )
    budget: float | None = Field(
        None,
        gt=0,
        description="the drawn rates sum to this total, each in [0, 1) (instead of rates)",
    )
    methods: Annotated[Names, NonEmpty] | None = Field(
        None, description="methods to search; null: all of the study's"
    )
    trials: int | None = Field(
        None, ge=1, description="trials per method; null uses search.trials_per_cell"
    )
    protocol: Literal["per_epoch", "per_sample_fixed", "independent_drop"] = Field(
        "per_epoch", description="the mask mode the drawn rates drive"
    )
    applies_to: Literal["train", "train_and_test"] = Field(
        "train_and_test",
        description="train: the rates mask training only, validation averages over every "
        "pattern; train_and_test: validation patterns are also weighted by their probability "
        "under the rates (RedCore's equal training and test rates)",
    )

    @model_validator(mode="after")
    def _check(self) -> WorstCaseSpec:
        problems: list[Problem] = []
        if (self.rates is None) == (self.budget is None):
            problems.append(((), "give exactly one of rates (ranges) or budget (a total rate)"))
        raise_problems("worst_case", problems)
        return self
