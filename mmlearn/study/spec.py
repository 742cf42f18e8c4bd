"""The schema of study files: frozen, typed sections whose fields all carry a description.

A study file is plain data (style rule 5): registry names, numbers and paths. Validation runs
in two phases, as pydantic runs it: every section checks itself (``mmlearn.study.sections``,
``mmlearn.study.method_section``: types, ranges, the space syntax, method and source names,
hyperparameter keys and values), and once every section is well formed, the study checks what
spans sections (this module: modality names in rates, the missing protocols of every cell, the
ASHA budget against ``train.epochs``, worst-case settings). Every problem keeps its key path;
``load_study`` prints one line per problem. The cells are derived (``mmlearn.study.cells``).
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from mmlearn.data.missing import MissingProtocol
from mmlearn.errors import ConfigError, Loc, Problem, did_you_mean
from mmlearn.metrics.patterns import metric_names
from mmlearn.study._errors import raise_problems
from mmlearn.study.cells import Cell, plan_cells
from mmlearn.study.fields import NonEmpty, PathField, Section, Slug, as_tuple
from mmlearn.study.method_section import MethodSpec, method_entry, train_section
from mmlearn.study.sections import (
    ConditionSpec,
    DataSpec,
    FinalSpec,
    ObjectiveSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearchSpec,
    TrackingSpec,
    WorstCaseSpec,
)
from mmlearn.train.config import TrainConfig

_EXACT_COUNT_MODES = ("per_epoch", "per_sample_fixed")


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


class StudySpec(Section):
    """A hyperparameter study: methods x conditions, searched, then re-run with final seeds."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # merged with _Section's

    name: Slug = Field(description="the study's name; its results go to storage/name")
    mode: Literal["standard", "worst_case"] = Field(
        "standard",
        description="standard: search hyperparameters per cell; worst_case: search the missing "
        "rates that hurt each method most",
    )
    data: DataSpec = Field(description="the data set and its modalities")
    train: Annotated[TrainConfig, BeforeValidator(train_section)] = Field(
        default_factory=TrainConfig,
        description="training settings of every cell (mmlearn.train.config.TrainConfig)",
    )
    conditions: Annotated[tuple[ConditionSpec, ...], BeforeValidator(as_tuple)] = Field(
        (), description="training conditions (standard mode); names must be unique"
    )
    methods: Annotated[
        tuple[Annotated[MethodSpec, BeforeValidator(method_entry)], ...],
        BeforeValidator(as_tuple),
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
        """Every cell of the study (``mmlearn.study.cells.plan_cells``)."""
        return plan_cells(self)

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
                f"{self.final.seeds} seed{'' if self.final.seeds == 1 else 's'}",
                f"  resources  {r.workers} worker(s) x ({r.cpus_per_worker:g} CPU, "
                f"{r.gpus_per_worker:g} GPU) per trial, {r.max_concurrent_trials} trial(s) at once",
                f"  packing    {r.packing()}",
            ]
        )
