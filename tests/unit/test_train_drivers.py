"""The Ray Train settings of multi-worker trials: what their drivers pass on, what they start."""

from __future__ import annotations

import subprocess
import sys

import ray.train
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

from mmlearn.study.drivers import train_env
from mmlearn.study.ray_private import TorchTrainerWithoutDatasets


def test_a_local_ray_goes_without_the_preemption_watcher() -> None:
    assert train_env(on_cluster=False) == {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        "RAY_TRAIN_METRICS_ENABLED": "0",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    }


def test_a_cluster_keeps_the_preemption_watcher() -> None:
    env = train_env(on_cluster=True)
    assert "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in env
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2"


def _noop(config: dict) -> None:
    """A train function that is never run."""


def _callbacks(**datasets: object) -> list[object]:
    trainer = TorchTrainerWithoutDatasets(
        _noop, scaling_config=ray.train.ScalingConfig(num_workers=2), datasets=datasets or None
    )
    return trainer._create_default_callbacks()


def test_trainer_without_datasets_starts_no_dataset_manager() -> None:
    callbacks = _callbacks()
    assert not any(isinstance(c, DatasetsCallback) for c in callbacks)
    assert callbacks  # the backend set-up and placement-group cleaner stay


def test_trainer_with_datasets_keeps_them() -> None:
    callbacks = _callbacks(train=[1, 2, 3])
    assert any(isinstance(c, DatasetsCallback) for c in callbacks)


def test_a_group_whose_fit_failed_before_deepspeed_started_is_torn_down_cleanly() -> None:
    """In a fresh process DeepSpeed has no backend yet: leaving the block on an error must
    destroy the group without DeepSpeed's teardown raising over that error."""
    code = (
        "import torch.distributed as dist\n"
        "from mmlearn.train.distributed import process_group\n"
        "try:\n"
        "    with process_group():\n"
        "        raise KeyError('the fit failed')\n"
        "except KeyError as e:\n"
        "    print('raised', e, 'group left', dist.is_initialized())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised 'the fit failed' group left False"
