"""Checkpoints hold the RNG of the rank's current device only (mmlearn/train/checkpoint.py).

A CPU generator stands for the current CUDA device's: the logic under test is which state is
saved and where it is restored, not CUDA itself.
"""

from __future__ import annotations

import torch

from mmlearn.train.checkpoint import _rng_state, _set_rng_state, device_generator


def draws(gen: torch.Generator) -> list[float]:
    return torch.rand(4, generator=gen).tolist()


def test_one_device_state_is_saved_and_restored_into_the_current_device() -> None:
    device = torch.Generator().manual_seed(1)
    draws(device)
    state = _rng_state(device)
    assert isinstance(state["device"], torch.Tensor)  # one state, not one per visible GPU
    expected = draws(device)
    elsewhere = torch.Generator().manual_seed(99)  # the current device of another placement
    _set_rng_state(state, elsewhere)
    assert draws(elsewhere) == expected


def test_checkpoints_cross_between_cpu_and_gpu_machines() -> None:
    device = torch.Generator().manual_seed(5)
    seeded = draws(torch.Generator().manual_seed(5))
    _set_rng_state(_rng_state(None), device)  # written without a GPU, resumed on one
    assert draws(device) == seeded  # left as seeded
    _set_rng_state(_rng_state(torch.Generator()), None)  # written on a GPU, resumed without


def test_no_device_generator_without_cuda() -> None:
    assert (device_generator() is None) == (not torch.cuda.is_available())
