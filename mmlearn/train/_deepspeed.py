"""The one place that imports DeepSpeed.

DeepSpeed picks its accelerator when it is first imported. Without a CUDA device we ask for the
CPU accelerator explicitly (infra-notes.md §3) unless the user already chose one through
``DS_ACCELERATOR``. Every other module of ``mmlearn.train`` imports ``deepspeed`` from here, so
the choice is made before DeepSpeed loads, as long as nothing imported DeepSpeed earlier.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

import deepspeed  # noqa: E402
from deepspeed.runtime.engine import DeepSpeedEngine  # noqa: E402

__all__ = ["DeepSpeedEngine", "deepspeed"]
