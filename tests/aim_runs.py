"""Write a study's results into an Aim repository with the Aim SDK, in the tracking layout.

The report's ``--from-aim`` tests read these runs back: one Aim run per (phase, cell, run) of
a ``results.parquet`` frame, ``run["mmlearn"]`` and ``run["outcome"]`` as
``mmlearn.tracking.aim_layout`` writes them, every pattern's metrics with the context
``{"split": ..., "pattern": ...}`` and, as real trials track them, a learning rate (context
``{"group": ...}``) and a context-free method internal, which carry no ``split``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from aim import Run


def write_aim_runs(
    rows: pd.DataFrame,
    repo: Path,
    study: str,
    modalities: Sequence[str],
    resources: Mapping[str, Any],
) -> None:
    """Write one Aim run per (phase, cell, run) of ``rows`` into ``repo``."""
    metrics = sorted(c.split(".", 1)[1] for c in rows.columns if c.startswith("val."))
    for (phase, cell, run_id), group in rows.groupby(["phase", "cell", "run"]):
        first = {k: v.item() if hasattr(v, "item") else v for k, v in group.iloc[0].items()}
        run = Run(repo=str(repo), experiment=study, system_tracking_interval=None,
                  capture_terminal_logs=False, log_system_params=False)  # fmt: skip
        run.name = f"{cell} {phase} {run_id}"
        values = {
            k.removeprefix("hp."): json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
            for k, v in first.items()
            if k.startswith("hp.") and not (isinstance(v, float) and math.isnan(v))
        }
        hparams = {k: v for k, v in values.items() if not k.startswith("train.")}
        train = {k.removeprefix("train."): v for k, v in values.items() if k.startswith("train.")}
        run["mmlearn"] = {
            "study": study, "cell": cell, "method": first["method"],
            "condition": first["condition"],
            "rates": {m: first[f"rate.{m}"] for m in modalities},
            "protocol": "per_epoch", "phase": phase, "seed": int(first["seed"]),
            "trial_id": run_id, "number": None, "hparams": hparams, "train": train,
            "resources": dict(resources),
        }  # fmt: skip
        epochs = int(first["epochs"])
        run.track(1e-3, name="lr", step=epochs, context={"group": "0"})
        run.track(0.5, name="eta", step=epochs, context={})
        splits = ("val", "test") if phase == "final" else ("val",)
        for split, metric in ((s, m) for s in splits for m in metrics):
            column = f"{split}.{metric}"
            for pattern, value in zip(group["pattern"], group[column], strict=True):
                context = {"split": split, "pattern": pattern}
                run.track(float(value), name=metric, step=epochs, context=context)
            mean = float(group[column].mean())
            run.track(mean, name=metric, step=epochs, context={"split": split, "pattern": "mean"})
        for tag in (study, cell, phase):
            run.add_tag(tag)
        status = {"PRUNED": "pruned", "FAIL": "failed"}.get(first["state"], "completed")
        run["outcome"] = {"status": status, "reason": None, "epochs": epochs,
                          "wall_seconds": first["wall_seconds"], "gpu_hours": 0.0}  # fmt: skip
        run.close()
