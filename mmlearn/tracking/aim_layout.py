"""The Aim layout of a study: what one trial's run holds, as plain data.

One Aim run per Tune trial (search trial or final run), in experiment ``<study>``, named
``"<cell> <phase> <trial_id>"`` and tagged with the study, the cell and the phase.

- ``run["mmlearn"]``: the trial's fully resolved configuration (``run_params``).
- Metrics (``epoch_points``), step = epoch: every validation metric as ``<metric>`` with context
  ``{"split": "val", "pattern": <pattern> | "mean"}``; a final run's test metrics once, at the
  best epoch, with ``"split": "test"``; the training loss as ``loss`` and its parts as
  ``<part>`` with ``{"split": "train"}``; learning rates as ``lr`` with ``{"group": <group>}``;
  method internals ``a/b`` as ``a`` with ``{"of": b}`` (a plain name, e.g. ``eta``, alone).
- ``run["outcome"]`` at the end (``outcome``): status, reason, epochs, wall time, GPU-hours.

Readers (the report, the dashboard queries in README.md) rely on these names.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mmlearn
from mmlearn.models.registry import make_hparams
from mmlearn.study import worst_case
from mmlearn.study.cells import Cell
from mmlearn.study.sections import ResourcesSpec
from mmlearn.study.spec import StudySpec

Status = Literal["completed", "pruned", "failed"]


@dataclass(frozen=True)
class Point:
    """One value of one metric sequence: Aim keys a sequence by (name, context)."""

    name: str
    value: float
    step: int
    context: Mapping[str, str]


def run_name(config: Mapping[str, Any], trial_id: str) -> str:
    """``"<cell> <phase> <trial_id>"`` of a trial's ``config``."""
    return f"{config['cell']} {config['phase']} {trial_id}"


def run_tags(spec: StudySpec, config: Mapping[str, Any]) -> tuple[str, str, str]:
    """The study name, the cell id and the phase."""
    return spec.name, config["cell"], config["phase"]


def run_params(
    spec: StudySpec, cell: Cell, config: Mapping[str, Any], trial_id: str, commit: str | None
) -> dict[str, Any]:
    """The resolved configuration of one trial, nested as ``run["mmlearn"]`` holds it.

    Args:
        spec: the study.
        cell: the trial's cell.
        config: the Tune config: ``phase``, ``cell``, ``values`` (searched), ``seed`` and, for
            search trials, ``number`` (the Optuna trial).
        trial_id: the Tune trial id.
        commit: the git commit of the code, None outside a checkout.

    Returns:
        Plain data (lists, not tuples): study, cell, method, condition, rates (every modality;
        the drawn ones in worst-case mode), protocol, phase, seed, trial_id, number, hparams
        (every method hyperparameter, defaults included), data, train (every training setting
        of this trial), resources, version and commit.
    """
    condition, values = cell.condition, config["values"]
    if condition is not None:
        rates = {m: float(condition.rates.get(m, 0.0)) for m in cell.modalities}
    else:  # worst-case mode: the rates are searched
        assert spec.worst_case is not None
        rates = worst_case.rates_of(values, spec.worst_case, cell.modalities)
        values = worst_case.without_rates(values)
    hyperparameters, train = cell.configure(values)
    epochs = spec.max_epochs if config["phase"] == "search" else cell.train.epochs
    train = dataclasses.replace(train, epochs=epochs, seed=config["seed"])
    data = spec.data
    params = {
        "study": spec.name,
        "cell": cell.id,
        "method": cell.method,
        "condition": condition.name if condition is not None else None,
        "rates": rates,
        "protocol": cell.mode,
        "phase": config["phase"],
        "seed": config["seed"],
        "trial_id": trial_id,
        "number": config.get("number"),
        "hparams": dataclasses.asdict(make_hparams(cell.method, hyperparameters)),
        "data": {
            "source": data.source,
            "options": dict(data.options),
            "path": str(data.path) if data.path is not None else None,
            "modalities": list(data.names),
            "task": data.task,
        },
        "train": dataclasses.asdict(train),
        "resources": spec.resources.model_dump(),
        "version": mmlearn.__version__,
        "commit": commit,
    }
    return _plain(params)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, recursively (Aim stores lists)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def git_commit(folder: Path) -> str | None:
    """``git rev-parse HEAD`` of ``folder``, or None (no git, not a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def epoch_points(result: Mapping[str, Any]) -> list[Point]:
    """The metric values of one epoch's Tune result (keys of the study's result contract).

    A final run's last result also carries ``test``: its metrics are tracked at the best epoch,
    whose weights they were measured with.
    """
    step = int(result["epoch"])
    train = {"split": "train"}
    points = _split_points(result["val"], "val", step)
    points.append(Point("loss", float(result["loss"]), step, train))
    points += [
        Point(part, float(v), step, train) for part, v in result["train"].items() if part != "loss"
    ]
    points += [Point("lr", float(v), step, {"group": g}) for g, v in result["lr"].items()]
    for key, value in result["internals"].items():
        name, _, of = key.partition("/")
        points.append(Point(name, float(value), step, {"of": of} if of else {}))
    if "test" in result:
        points += _split_points(result["test"], "test", int(result["best_epoch"]))
    return points


def _split_points(metrics: Mapping[str, Any], split: str, step: int) -> list[Point]:
    """Every metric of ``{"mean": {...}, "patterns": {pattern: {...}}}`` of one split."""
    groups = {"mean": metrics["mean"], **metrics["patterns"]}
    return [
        Point(metric, float(value), step, {"split": split, "pattern": pattern})
        for pattern, values in groups.items()
        for metric, value in values.items()
    ]


def finished_status(last: Mapping[str, Any]) -> tuple[Status, str | None]:
    """Completed if the trial reached its last epoch, else pruned (stopped early), with why."""
    if int(last["epoch"]) >= int(last["epochs"]):
        return "completed", None
    return "pruned", f"stopped early after epoch {last['epoch']} of {last['epochs']}"


def outcome(
    status: Status, reason: str | None, last: Mapping[str, Any], resources: ResourcesSpec
) -> dict[str, Any]:
    """``run["outcome"]``: the status, why (pruned, failed), epochs run, wall time, GPU-hours.

    Args:
        status: how the trial ended.
        reason: why it was pruned or failed; None when completed.
        last: the trial's last Tune result; empty if it never reported.
        resources: what each trial held (GPU-hours = wall time x workers x GPUs per worker).
    """
    wall = float(last["time_total_s"]) if last else 0.0
    return {
        "status": status,
        "reason": reason,
        "epochs": int(last["epoch"]) if last else 0,
        "wall_seconds": wall,
        "gpu_hours": wall / 3600 * resources.workers * resources.gpus_per_worker,
    }
