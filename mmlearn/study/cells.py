"""The plan of a study: its cells, each with its effective search space and training settings.

Derived, not declared: the cells are the methods x conditions (one per method in worst-case
mode), repeated once per fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmlearn.data.missing import MissingProtocol
from mmlearn.models.registry import default_search_space
from mmlearn.space import Dimension, parse_dimension
from mmlearn.study.method_section import MethodSpec
from mmlearn.study.sections import ConditionSpec
from mmlearn.train.config import TrainConfig

if TYPE_CHECKING:
    from mmlearn.study.spec import StudySpec


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


def plan_cells(spec: StudySpec) -> tuple[Cell, ...]:
    """Every cell with its effective search space: methods, then conditions, then folds.

    The space of a cell is the method's default space, overridden by the study's ``space``
    (fixed values there join ``fixed``), less the keys of ``fixed``. In worst-case mode the
    hyperparameters are the fixed ones and the space is empty: the rates are searched.
    With ``data.folds`` every cell is repeated once per fold, on that fold's store.
    """
    folds = spec.data.fold_ids()
    if spec.mode == "worst_case":
        assert spec.worst_case is not None
        chosen = spec.worst_case.methods or [m.name for m in spec.methods]
        trials = spec.worst_case.trials or spec.search.trials_per_cell
        return tuple(
            _cell(spec, m, None, spec.worst_case.protocol, trials, fold)
            for m in spec.methods
            if m.name in chosen
            for fold in folds
        )
    return tuple(
        _cell(spec, m, c, c.mode_for(m.name), spec.search.trials_per_cell, fold)
        for m in spec.methods
        for c in spec.conditions
        for fold in folds
    )


def _cell(
    spec: StudySpec,
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
        spec.train,
        **MethodSpec.train_settings(fixed),
        selection_metric=spec.objective.metric,
    )
    store = spec.data.store_path(fold)
    return Cell(
        id=f"{method.name}@{condition.name if condition else 'worst_case'}"
        + ("" if fold is None else f"#fold{fold}"),
        method=method.name,
        condition=condition,
        mode=mode,
        modalities=spec.data.names,
        hyperparameters=MethodSpec.hyperparameters(fixed),
        train=train,
        space=space,
        trials=trials,
        fold=fold,
        store=None if store is None else str(store.resolve()),
    )
