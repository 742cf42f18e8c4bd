"""Fractional GPUs: Ray runs as many trials on a GPU as ``study check`` says, never more.

``ray.init(num_gpus=1)`` declares one GPU without a device, so the placement arithmetic runs
on this CPU: trials of 0.25 GPU (as the runner requests them, ``runner._trainable``) run 4 at
once. Each trial takes its threads and device from what Ray gave it
(``use_assigned_resources``), and a gauge actor records how many run at the same time; a trial
stays until 4 have been seen together, and 3 s longer, so that a fifth would be seen too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray import tune

from mmlearn.study.sections import ResourcesSpec
from mmlearn.study.trial import use_assigned_resources

RESOURCES = ResourcesSpec(
    workers=1, cpus_per_worker=1, gpus_per_worker=0.25, max_concurrent_trials=8
)


@ray.remote(num_cpus=0)
class Gauge:
    """How many trials are inside ``enter``/``leave`` now, and at most."""

    def __init__(self) -> None:
        self.now = self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1

    def peak(self) -> int:
        return self.most


def trial(config: dict) -> dict:
    gauge = ray.get_actor("gauge")
    cpus, gpus = use_assigned_resources(default_cpus=99)
    ray.get(gauge.enter.remote())
    deadline = time.monotonic() + 60  # trials start one by one on a busy machine
    while ray.get(gauge.peak.remote()) < RESOURCES.trials_per_gpu and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3.0)  # time for a fifth trial to start, if Ray placed one
    ray.get(gauge.leave.remote())
    return {"cpus": cpus, "gpus": ",".join(gpus)}


@pytest.fixture
def one_declared_gpu():
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_quarter_gpu_trials_run_four_at_once_never_five(
    one_declared_gpu: None, tmp_path: Path
) -> None:
    assert RESOURCES.trials_per_gpu == 4
    assert RESOURCES.trials_per_node(cpus=8, gpus=1) == 4
    gauge = Gauge.options(name="gauge").remote()
    r = RESOURCES
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker}),
        param_space={"i": tune.grid_search(list(range(8)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=r.max_concurrent_trials),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert ray.get(gauge.peak.remote()) == 4
    assert {(res.metrics["cpus"], res.metrics["gpus"]) for res in results} == {(1.0, "0")}
