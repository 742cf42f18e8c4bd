"""The schema of study files: frozen, typed sections whose fields all carry a description.

A study file is plain data (style rule 5): registry names, numbers and paths. Validation runs
in two phases, as pydantic runs it: every section checks itself (types, ranges, the space
syntax, method and source names, hyperparameter keys and values), and once every section is
well formed, the study checks what spans sections (modality names in rates, the missing
protocols of every cell, the ASHA budget against ``train.epochs``, worst-case settings). Every
problem keeps its key path; ``load_study`` prints one line per problem.

Derived, not declared: the cells (methods x conditions, or one per method in worst-case mode)
and each cell's effective search space.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from mmlearn.data.missing import MissingProtocol, Mode
from mmlearn.data.resolve import resolve_store
from mmlearn.data.source import SOURCES, SPLITS, get_source
from mmlearn.data.sources.mfeat import VIEWS
from mmlearn.data.spec import TargetSpec
from mmlearn.data.store import MANIFEST, FeatureStore, open_store
from mmlearn.errors import ConfigError, DataError
from mmlearn.metrics.patterns import METRIC_MODES, metric_names
from mmlearn.models.registry import (
    default_search_space,
    hparams_class,
    make_hparams,
    names,
    train_protocol,
)
from mmlearn.space import Dimension, parse_dimension
from mmlearn.study._errors import Loc, Problem, did_you_mean, raise_problems, unknown_key
from mmlearn.train.config import TrainConfig

TRAIN_PREFIX = "train."
"""Keys of ``fixed`` and ``space`` that start with this name a training setting."""

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_STUDY_WIDE = {
    "epochs": "every cell trains for the same epochs (budget-matched cells); set train.epochs",
    "seed": "seeds belong to the study: train.seed for the search, final.seeds for the final runs",
    "selection_metric": "the study selects epochs and trials by objective.metric",
}
_EXACT_COUNT_MODES = ("per_epoch", "per_sample_fixed")
_BETTER = {"max": "larger", "min": "smaller"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_AIM_URL = re.compile(r"aim://[^:/\s]+:\d+")
FOLD = "{fold}"
"""The placeholder of ``data.path`` that each of ``data.folds`` replaces."""
AIM_REPO_ENV = "MMLEARN_AIM_REPO"
"""Environment variable that, when set, replaces the study's Aim repository."""


# ---------------------------------------------------------------------------------------------
# Field types


def _as_tuple(value: Any) -> Any:
    """YAML lists as tuples, so that sections stay immutable; other values unchanged."""
    return tuple(value) if isinstance(value, list) else value


def _expand_env(value: Any) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` replaced from the environment (path fields only)."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.groups()
        found = os.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            raise ValueError(
                f"environment variable {name} is not set; set it, or write "
                f"${{{name}:-default}} to fall back to a default"
            )
        return found

    return _ENV.sub(substitute, value)


def _path(value: Any) -> Path:
    expanded = _expand_env(value)
    if not isinstance(expanded, str) or not expanded:
        raise ValueError(f"must be a non-empty path, but got {value!r}")
    return Path(expanded)


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits, '_', '-' and '.' "
            f"(it names folders and cells), but got {value!r}"
        )
    return value


def _rate(value: float) -> float:
    if not (math.isfinite(value) and 0 <= value < 1):
        hint = "; a rate of 1 would mean the modality is never seen" if value >= 1 else ""
        raise ValueError(f"a missing rate must be in [0, 1), but got {value!r}{hint}")
    return value


def _rate_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    _rate(low)
    _rate(high)
    if low > high:
        raise ValueError(f"a rate range needs low <= high, but got low={low}, high={high}")
    return value


def _non_empty(value: Any) -> Any:
    """Reject an empty list or mapping before its items are validated.

    (pydantic's own ``min_length`` counts the items that passed, so a list of bad items would
    be reported as empty.)
    """
    if isinstance(value, list | tuple | dict) and not value:
        raise ValueError("must not be empty")
    return value


def _aim_repo(value: str) -> str:
    if value.startswith("aim://") and not _AIM_URL.fullmatch(value):
        raise ValueError(f"an Aim server is written aim://HOST:PORT, but got {value!r}")
    return value


def _method_entry(value: Any) -> Any:
    """A bare method name stands for ``{name: NAME}``."""
    return {"name": value} if isinstance(value, str) else value


PathField = Annotated[Path, BeforeValidator(_path)]
Slug = Annotated[str, AfterValidator(_slug)]
Names = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
NonEmpty = BeforeValidator(_non_empty)
Rate = Annotated[float, AfterValidator(_rate)]
RateRange = Annotated[tuple[float, float], BeforeValidator(_as_tuple), AfterValidator(_rate_range)]


class _Section(BaseModel):
    """A section of a study file: unknown keys are errors, values keep their YAML types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------------------------------------
# Sections


def _mfeat_views(options: Any) -> tuple[str, ...]:
    unknown = [v for v in options.views if v not in VIEWS]
    if unknown:
        raise ConfigError(f"unknown mfeat view(s) {unknown}; the views are {sorted(VIEWS)}")
    return tuple(options.views)


_SOURCE_MODALITIES: dict[str, Callable[[Any], tuple[str, ...]]] = {
    "mfeat": _mfeat_views,
    "synthetic": lambda options: tuple(options.dims()),
    **{
        name: lambda options: ("text", "audio", "vision")
        for name in ("mmsa", "mult_pkl", "sdk_csd", "mmin_h5")
    },
}
"""Modality names of a source from its options alone, so that a check reads no data."""


class DataSpec(_Section):
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
    folds: Annotated[tuple[int, ...], BeforeValidator(_as_tuple), NonEmpty] | None = Field(
        None,
        description="cross-validation folds, one store each: path holds {fold} (e.g. "
        "data/iemocap/fold{fold}), and every cell runs once per fold",
    )
    prepare: Annotated[str, BeforeValidator(_expand_env)] | None = Field(
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
            known = sorted(SOURCES)
            problems.append(
                (
                    ("source",),
                    f"unknown data source {self.source!r}{did_you_mean(self.source, known)} "
                    f"(known: {', '.join(known)})",
                )
            )
            return None
        try:
            options = source.parse_options(self.options)
            modalities = _SOURCE_MODALITIES.get(source.name)
            return modalities(options) if modalities else None
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
        files = (MANIFEST, *(f"{split}.arrow" for split in SPLITS))
        lacking = {
            f: [name for name in files if not (self._fold_path(f) / name).is_file()] for f in folds
        }
        missing = {f: names for f, names in lacking.items() if names}
        if missing:
            first, names = next(iter(missing.items()))
            path = self._fold_path(first)
            others = (
                f" (the stores of folds {', '.join(map(str, missing))} are incomplete)"
                if len(missing) > 1
                else ""
            )
            command = (
                self.prepare.replace(FOLD, str(first))
                if self.prepare
                else f"mmlearn data prepare SOURCE INPUT --out {path}"
            )
            raise DataError(
                f"data.path {path} lacks {', '.join(names)}{others}: prepare the store there "
                f"with `{command}` (mmlearn data prepare -h lists the sources), or point "
                "data.path at a prepared store"
            )
        return open_store(self._fold_path(folds[0]))


class ConditionSpec(_Section):
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


class MethodSpec(_Section):
    """A method of the study, with its fixed hyperparameters and search-space overrides.

    Keys of ``fixed`` and ``space`` are the method's hyperparameters, or ``train.<setting>``
    for a training setting of this method only (not epochs, seed or selection_metric, which
    every cell shares).
    """

    name: str = Field(description="a registered method (redcore, dmrnet, ume_mma, mmin, ...)")
    fixed: dict[str, Any] = Field(
        default_factory=dict,
        description="hyperparameters fixed for every trial; they leave the search space",
    )
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the method's default search space: {loguniform|uniform|int|"
        "choice: [...]}, or a fixed value",
    )

    @model_validator(mode="after")
    def _check(self) -> MethodSpec:
        if self.name not in names():
            problems = [
                (
                    ("name",),
                    f"unknown method {self.name!r}{did_you_mean(self.name, names())} "
                    f"(known: {', '.join(names())})",
                )
            ]
        else:
            problems = self._key_problems()
        raise_problems("methods", problems)
        return self

    def _key_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for section in ("fixed", "space"):
            for key, value in getattr(self, section).items():
                loc: Loc = (section, key)
                problem = self._key_problem(key)
                if problem is None and section == "space" and key in self.fixed:
                    problem = "also in fixed; a hyperparameter is either fixed or searched"
                if problem is None:
                    problem = self._value_problem(key, value, searched=section == "space")
                if problem is not None:
                    problems.append((loc, problem))
        if not problems:
            try:
                make_hparams(self.name, self.hyperparameters(self.fixed))
            except ConfigError as e:
                problems.append((("fixed",), str(e)))
        return problems

    def _key_problem(self, key: str) -> str | None:
        if key.startswith(TRAIN_PREFIX):
            setting = key.removeprefix(TRAIN_PREFIX)
            if setting in _STUDY_WIDE:
                return f"cannot be set per method: {_STUDY_WIDE[setting]}"
            allowed = [f"{TRAIN_PREFIX}{f}" for f in TRAIN_FIELDS if f not in _STUDY_WIDE]
            return None if setting in TRAIN_FIELDS else unknown_key(key, allowed)
        fields = [f.name for f in dataclasses.fields(hparams_class(self.name))]
        if key in fields:
            return None
        if key in TRAIN_FIELDS:
            return f"{key!r} is a training setting, not a hyperparameter; write 'train.{key}'"
        return (
            f"unknown hyperparameter of {self.name}{did_you_mean(key, fields)} "
            f"(allowed: {', '.join(fields)}, or {TRAIN_PREFIX}<setting>)"
        )

    def _value_problem(self, key: str, value: Any, searched: bool) -> str | None:
        """Why ``value`` (or, in ``space``, a draw from it) is not valid for ``key``, or None."""
        try:
            dimension = parse_dimension(value) if searched else None
        except ValueError as e:
            return str(e)
        for probe in dimension.probe_values() if dimension else (value,):
            problem = (
                _train_value_problem(key.removeprefix(TRAIN_PREFIX), probe)
                if key.startswith(TRAIN_PREFIX)
                else self._hparam_value_problem(key, probe)
            )
            if problem is not None:
                return f"{dimension.kind} value {probe!r}: {problem}" if dimension else problem
        return None

    def _hparam_value_problem(self, key: str, value: Any) -> str | None:
        try:
            make_hparams(self.name, {key: value})
        except ConfigError as e:
            prefix = f"{self.name}: invalid {hparams_class(self.name).__name__}: "
            return str(e).removeprefix(prefix).removeprefix(f"{key}: ")
        return None

    @staticmethod
    def hyperparameters(values: Mapping[str, Any]) -> dict[str, Any]:
        """The method's own keys of ``values`` (those that are not ``train.<setting>``)."""
        return {k: v for k, v in values.items() if not k.startswith(TRAIN_PREFIX)}

    @staticmethod
    def train_settings(values: Mapping[str, Any]) -> dict[str, Any]:
        """The ``train.<setting>`` keys of ``values``, without the prefix."""
        return {
            k.removeprefix(TRAIN_PREFIX): v for k, v in values.items() if k.startswith(TRAIN_PREFIX)
        }


def _train_value_problem(setting: str, value: Any) -> str | None:
    """Why ``value`` is not valid for training setting ``setting``, or None."""
    try:
        TrainConfig.from_dict({setting: value})
    except ConfigError as e:
        return str(e).removeprefix(f"{TRAIN_PREFIX}{setting}: ")
    return None


def _train_config(value: Any) -> Any:
    """The ``train`` section as a TrainConfig, every bad key reported on its own."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of training settings, but got {value!r}")
    problems: list[Problem] = []
    for key, item in value.items():
        if key not in TRAIN_FIELDS:
            allowed = [f for f in TRAIN_FIELDS if f != "selection_metric"]
            problems.append(((key,), unknown_key(str(key), allowed)))
        elif key == "selection_metric":
            problems.append(((key,), f"set by the study: {_STUDY_WIDE[key]}"))
        elif (problem := _train_value_problem(key, item)) is not None:
            problems.append(((key,), problem))
    raise_problems("train", problems)
    try:
        return TrainConfig.from_dict(value)
    except ConfigError as e:
        raise ValueError(str(e)) from e


class SearchSpec(_Section):
    """How each cell's hyperparameters are searched: one Optuna study per cell."""

    sampler: Literal["tpe", "random", "gp"] = Field("tpe", description="the Optuna sampler")
    trials_per_cell: int = Field(
        20, ge=1, description="trials of every cell (budget-matched cells)"
    )
    seed: int = Field(0, ge=0, description="seed of the samplers")


class SchedulerSpec(_Section):
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


class ResourcesSpec(_Section):
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


class FinalSpec(_Section):
    """The final phase: each cell's best configuration re-run with several seeds, tested once."""

    seeds: int = Field(5, ge=1, description="seeds 0 ... seeds-1 of every cell's final runs")


class ObjectiveSpec(_Section):
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


class TrackingSpec(_Section):
    """Where trials are tracked."""

    aim: Annotated[str, BeforeValidator(_expand_env), AfterValidator(_aim_repo)] | None = Field(
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
            return _aim_repo(override)
        except ValueError as e:
            raise ConfigError(f"{AIM_REPO_ENV}: {e}") from e


class WorstCaseSpec(_Section):
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


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


# ---------------------------------------------------------------------------------------------
# The study


@dataclass(frozen=True)
class Cell:
    """One cell of a study: what one Optuna study and one ASHA bracket cover.

    Attributes:
        id: ``method@condition``, or ``method@worst_case``, with ``#fold<k>`` appended when the
            data have folds; also a folder name.
        method: the registered method.
        condition: the training condition; None in worst-case mode, where rates are searched.
        mode: the training mask mode (``mmlearn.data.missing``).
        modalities: the data's modalities, in order.
        hyperparameters: the method's fixed hyperparameters (overrides of its defaults).
        train: training settings, with the method's ``train.*`` values and the objective.
        space: searched key -> dimension; ``train.<setting>`` keys search training settings.
        trials: trials of this cell.
        fold: the cross-validation fold; None when the data have no folds.
        store: the absolute path of the feature store this cell trains on (``data.path``, its
            fold filled in); None when the data are a source, prepared by the runner.
    """

    id: str
    method: str
    condition: ConditionSpec | None
    mode: str
    modalities: tuple[str, ...]
    hyperparameters: Mapping[str, Any]
    train: TrainConfig
    space: Mapping[str, Dimension]
    trials: int
    fold: int | None = None
    store: str | None = None

    def configure(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
        """The method hyperparameters and training settings of a trial that drew ``values``."""
        train = dataclasses.replace(self.train, **MethodSpec.train_settings(values))
        return {**self.hyperparameters, **MethodSpec.hyperparameters(values)}, train

    def missing_protocol(
        self, seed: int, rates: Mapping[str, float] | None = None
    ) -> MissingProtocol:
        """The training masks of this cell; ``rates`` are the drawn ones in worst-case mode."""
        condition = self.condition
        return MissingProtocol(
            self.modalities,
            self.mode,  # type: ignore[arg-type]
            condition.rates if condition is not None else dict(rates or {}),
            condition.allow_empty if condition is not None else True,
            seed,
        )


class StudySpec(_Section):
    """A hyperparameter study: methods x conditions, searched, then re-run with final seeds."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # merged with _Section's

    name: Slug = Field(description="the study's name; its results go to storage/name")
    mode: Literal["standard", "worst_case"] = Field(
        "standard",
        description="standard: search hyperparameters per cell; worst_case: search the missing "
        "rates that hurt each method most",
    )
    data: DataSpec = Field(description="the data set and its modalities")
    train: Annotated[TrainConfig, BeforeValidator(_train_config)] = Field(
        default_factory=TrainConfig,
        description="training settings of every cell (mmlearn.train.config.TrainConfig)",
    )
    conditions: Annotated[tuple[ConditionSpec, ...], BeforeValidator(_as_tuple)] = Field(
        (), description="training conditions (standard mode); names must be unique"
    )
    methods: Annotated[
        tuple[Annotated[MethodSpec, BeforeValidator(_method_entry)], ...],
        BeforeValidator(_as_tuple),
        NonEmpty,
    ] = Field(description="methods: a name, or {name, fixed, space}")
    search: SearchSpec = Field(default_factory=SearchSpec, description="the search per cell")
    scheduler: SchedulerSpec = Field(
        default_factory=SchedulerSpec, description="early stopping within a cell"
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="what a trial takes"
    )
    final: FinalSpec = Field(default_factory=FinalSpec, description="the final, tested runs")
    objective: ObjectiveSpec = Field(
        default_factory=ObjectiveSpec, description="the validation metric the search optimises"
    )
    storage: PathField = Field(
        Path("runs"), description="results folder (${VAR} expanded); the study writes storage/name"
    )
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="experiment tracking")
    worst_case: WorstCaseSpec | None = Field(
        None, description="the rate search of mode: worst_case"
    )

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        problems = [
            *self._method_problems(),
            *self._condition_problems(),
            *self._worst_case_problems(),
            *self._schedule_problems(),
        ]
        target = self.data.target
        if target is not None and self.objective.metric not in metric_names(target):
            problems.append(
                (
                    ("objective", "metric"),
                    f"target {target.name!r} ({target.kind}) has no {self.objective.metric!r}; "
                    f"it has {', '.join(metric_names(target))}",
                )
            )
        raise_problems("study", problems)
        return self

    def _method_problems(self) -> list[Problem]:
        seen: dict[str, int] = {}
        problems: list[Problem] = []
        for i, method in enumerate(self.methods):
            if method.name in seen:
                problems.append(
                    (
                        ("methods", i, "name"),
                        f"{method.name!r} is listed twice (also methods[{seen[method.name]}])",
                    )
                )
            seen.setdefault(method.name, i)
            if self.mode == "worst_case" and method.space:
                problems.append(
                    (
                        ("methods", i, "space"),
                        "worst_case mode keeps hyperparameters fixed; move these keys to fixed",
                    )
                )
        return problems

    def _condition_problems(self) -> list[Problem]:
        if self.mode == "worst_case":
            return (
                [(("conditions",), "worst_case mode searches the rates; remove conditions")]
                if self.conditions
                else []
            )
        if not self.conditions:
            return [(("conditions",), "standard mode needs at least one condition")]
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for i, condition in enumerate(self.conditions):
            if condition.name in seen:
                problems.append(
                    (
                        ("conditions", i, "name"),
                        f"duplicate condition name {condition.name!r} (also conditions"
                        f"[{seen[condition.name]}]); cell ids must be unique",
                    )
                )
            seen.setdefault(condition.name, i)
            problems += [
                (("conditions", i, *loc), message)
                for loc, message in self._rate_problems(condition)
            ]
        return problems

    def _rate_problems(self, condition: ConditionSpec) -> list[Problem]:
        modalities = self.data.names
        unknown = [
            (("rates", name), self._unknown_modality(name))
            for name in condition.rates
            if name not in modalities
        ]
        if unknown:
            return unknown
        problems: list[Problem] = []
        where: Loc = ("protocol",) if condition.protocol else ("rates",)
        modes = sorted({condition.mode_for(m.name) for m in self.methods})
        for mode in modes:
            try:
                MissingProtocol(modalities, mode, condition.rates, condition.allow_empty)  # type: ignore[arg-type]
            except ConfigError as e:
                problems.append((where, str(e)))
        total, most = sum(condition.rates.values()), len(modalities) - 1
        exact = any(mode in _EXACT_COUNT_MODES for mode in modes)
        if exact and not condition.allow_empty and total > most:
            problems.append(
                (
                    ("allow_empty",),
                    f"false needs rates summing to <= {most} (the modalities less one) so that "
                    f"every sample keeps a modality, but they sum to {total:g}; lower the rates "
                    "or allow empty samples",
                )
            )
        return problems

    def _unknown_modality(self, name: str) -> str:
        modalities = self.data.names
        return (
            f"unknown modality {name!r}{did_you_mean(name, modalities)} "
            f"(the study's data have {', '.join(modalities)})"
        )

    def _worst_case_problems(self) -> list[Problem]:
        spec = self.worst_case
        if spec is None:
            if self.mode == "worst_case":
                return [(("worst_case",), "required by mode: worst_case")]
            return []
        if self.mode != "worst_case":
            return [(("worst_case",), "only applies with mode: worst_case")]
        problems: list[Problem] = [
            (("worst_case", "rates", name), self._unknown_modality(name))
            for name in spec.rates or {}
            if name not in self.data.names
        ]
        modalities = len(self.data.names)
        if spec.budget is not None and spec.budget >= modalities:
            problems.append(
                (
                    ("worst_case", "budget"),
                    f"must be < {modalities} (the number of modalities), since every rate is < 1,"
                    f" but got {spec.budget}",
                )
            )
        known = [m.name for m in self.methods]
        problems += [
            (
                ("worst_case", "methods", i),
                f"{name!r} is not among the study's methods{did_you_mean(name, known)} "
                f"({', '.join(known)})",
            )
            for i, name in enumerate(spec.methods or ())
            if name not in known
        ]
        return problems

    def _schedule_problems(self) -> list[Problem]:
        scheduler, epochs = self.scheduler, self.train.epochs
        if scheduler.type == "none":
            return []
        if scheduler.max_epochs is not None and scheduler.max_epochs > epochs:
            return [
                (
                    ("scheduler", "max_epochs"),
                    f"must be <= train.epochs ({epochs}), but got {scheduler.max_epochs}",
                )
            ]
        if scheduler.grace_period > self.max_epochs:
            return [
                (
                    ("scheduler", "grace_period"),
                    f"must be <= the epochs a trial may reach ({self.max_epochs}), "
                    f"but got {scheduler.grace_period}",
                )
            ]
        return []

    # -- derived ------------------------------------------------------------------------------

    @property
    def max_epochs(self) -> int:
        """The epochs a trial may reach: ASHA's max_t (default ``train.epochs``)."""
        return self.scheduler.max_epochs or self.train.epochs

    @property
    def search_mode(self) -> Literal["max", "min"]:
        """The direction of every cell's search: the objective's, reversed in worst-case mode."""
        direction = self.objective.direction
        if self.mode == "standard":
            return direction
        return "min" if direction == "max" else "max"

    def cells(self) -> tuple[Cell, ...]:
        """Every cell with its effective search space: methods, then conditions, then folds.

        The space of a cell is the method's default space, overridden by the study's ``space``
        (fixed values there join ``fixed``), less the keys of ``fixed``. In worst-case mode the
        hyperparameters are the fixed ones and the space is empty: the rates are searched.
        With ``data.folds`` every cell is repeated once per fold, on that fold's store.
        """
        folds = self.data.fold_ids()
        if self.mode == "worst_case":
            assert self.worst_case is not None
            chosen = self.worst_case.methods or [m.name for m in self.methods]
            trials = self.worst_case.trials or self.search.trials_per_cell
            return tuple(
                self._cell(m, None, self.worst_case.protocol, trials, fold)
                for m in self.methods
                if m.name in chosen
                for fold in folds
            )
        return tuple(
            self._cell(m, c, c.mode_for(m.name), self.search.trials_per_cell, fold)
            for m in self.methods
            for c in self.conditions
            for fold in folds
        )

    def _cell(
        self,
        method: MethodSpec,
        condition: ConditionSpec | None,
        mode: str,
        trials: int,
        fold: int | None,
    ) -> Cell:
        fixed = dict(method.fixed)
        space: dict[str, Dimension] = {}
        if condition is not None:
            entries = {**default_search_space(method.name), **method.space}
            for key, value in entries.items():
                dimension = parse_dimension(value)
                if key in method.fixed:
                    continue
                if dimension is None:
                    fixed[key] = value
                else:
                    space[key] = dimension
        train = dataclasses.replace(
            self.train,
            **MethodSpec.train_settings(fixed),
            selection_metric=self.objective.metric,
        )
        store = self.data.store_path(fold)
        return Cell(
            id=f"{method.name}@{condition.name if condition else 'worst_case'}"
            + ("" if fold is None else f"#fold{fold}"),
            method=method.name,
            condition=condition,
            mode=mode,
            modalities=self.data.names,
            hyperparameters=MethodSpec.hyperparameters(fixed),
            train=train,
            space=space,
            trials=trials,
            fold=fold,
            store=None if store is None else str(store.resolve()),
        )

    def summary(self) -> str:
        """A few lines: the study, its cells, trials per cell and in all, and the final runs."""
        cells = self.cells()
        trials = sum(c.trials for c in cells)
        data = f"source {self.data.source}" if self.data.source else f"store {self.data.path}"
        folds = self.data.folds or ()
        per_fold = f" x {_count(folds, 'fold')}" if folds else ""
        if self.mode == "standard":
            layout = (
                f"{_count(self.methods, 'method')} x {_count(self.conditions, 'condition')}"
                f"{per_fold}"
            )
        else:
            methods = {c.method for c in cells}
            layout = f"{_count(methods, 'method')}{per_fold}, rates searched"
        asha = self.scheduler.type == "asha"
        scheduler = f"ASHA to {self.max_epochs} epochs" if asha else "no early stopping"
        r = self.resources
        return "\n".join(
            [
                f"  study      {self.name} ({self.mode} mode)",
                f"  data       {data}: {', '.join(self.data.names)}",
                f"  cells      {len(cells)} = {layout}",
                f"  search     {cells[0].trials} trials per cell, {trials} in all "
                f"({self.search.sampler}, {scheduler}, {self.search_mode} {self.objective.metric})",
                f"  final      {len(cells) * self.final.seeds} runs = {_count(cells, 'cell')} x "
                f"{_count(range(self.final.seeds), 'seed')}",
                f"  resources  {r.workers} worker(s) x ({r.cpus_per_worker:g} CPU, "
                f"{r.gpus_per_worker:g} GPU) per trial, {r.max_concurrent_trials} trial(s) at once",
                f"  packing    {r.packing()}",
            ]
        )
