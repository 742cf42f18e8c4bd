"""What the report reads from a study's Optuna journal: the trials and the importances.

One Optuna study per cell (study name = cell id). A trial's epochs are the intermediate values
it reported (one per epoch); its value is what the search compared (for a PRUNED trial, Optuna
keeps its last intermediate value); its origin is the user attribute ``origin`` (``defaults``
for the trial that runs the method's default configuration; None for a sampled trial).
Hyperparameter importance uses Optuna's PED-ANOVA evaluator on the COMPLETE trials of a cell,
over the parameters whose values differ among them, once a cell has ``MIN_COMPLETE`` of them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

TRIAL_COLUMNS = ("cell", "number", "state", "epochs", "value", "origin")
"""The columns of the trials frame: one row per finished search trial."""
DEFAULTS = "defaults"
"""The ``origin`` of the trial that runs a method's default configuration."""
MIN_COMPLETE = 8
"""COMPLETE trials a cell needs before its importances are shown: PED-ANOVA compares the
parameter densities of a cell's best trials with those of all its trials (Watanabe et al. 2023,
IJCAI), and with fewer trials one or two of them decide the whole ranking."""
EVALUATOR = "Optuna's PED-ANOVA"
"""The importance evaluator, named in the report."""


@dataclass(frozen=True)
class Importance:
    """Hyperparameter importance of one cell.

    Attributes:
        cell: the cell id.
        values: parameter -> importance (they sum to 1), most important first; empty with a
            ``note`` when it cannot be computed.
        note: why there are no values, or None.
    """

    cell: str
    values: Mapping[str, float]
    note: str | None = None


def _studies(path: Path, cells: Sequence[str]) -> dict[str, optuna.Study | None]:
    """Each cell's study in the journal at ``path``; None for a cell without one."""
    if not path.is_file():
        return dict.fromkeys(cells)
    storage = JournalStorage(JournalFileBackend(str(path)))
    known = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    return {
        cell: optuna.load_study(study_name=cell, storage=storage) if cell in known else None
        for cell in cells
    }


def read_trials(path: Path, cells: Sequence[str]) -> pd.DataFrame:
    """One row per finished trial of ``cells``: cell, number, state, epochs, value.

    Args:
        path: the Optuna journal (missing: no trials).
        cells: cell ids, in study order.
    """
    rows = [
        {
            "cell": cell,
            "number": t.number,
            "state": t.state.name,
            "epochs": len(t.intermediate_values),
            "value": t.value if t.value is not None else math.nan,
            "origin": t.user_attrs.get("origin"),
        }
        for cell, study in _studies(path, cells).items()
        if study is not None
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
    ]
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def importances(path: Path, cells: Sequence[str]) -> list[Importance]:
    """Hyperparameter importance of every cell, or a note saying why there is none.

    Needs ``MIN_COMPLETE`` COMPLETE trials and a parameter whose value differs between them.
    """
    out = []
    for cell, study in _studies(path, cells).items():
        complete = study.get_trials(states=(TrialState.COMPLETE,)) if study else []
        names = sorted({name for t in complete for name in t.params})
        varying = [n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1]
        if study is None or len(complete) < MIN_COMPLETE:
            note = (
                f"not shown: {len(complete)} COMPLETE trials, importance needs at least "
                f"{MIN_COMPLETE} ({MIN_COMPLETE - len(complete)} more; raise "
                "search.trials_per_cell)"
            )
            out.append(Importance(cell, {}, note))
            continue
        if not varying:
            out.append(Importance(cell, {}, "not shown: no parameter differs between trials"))
            continue
        with warnings.catch_warnings():  # Optuna warns that few trials make it approximate
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), params=varying
            )
        out.append(Importance(cell, dict(values)))
    return out
