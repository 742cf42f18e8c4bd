"""Training on DeepSpeed: the one loop, evaluation over missing patterns, and checkpoints.

This is the only package that imports DeepSpeed (through ``_deepspeed``, which selects the CPU
accelerator first when there is no CUDA device).
"""

from mmlearn.train.checkpoint import (
    Progress,
    load_best_state,
    load_checkpoint,
    read_progress,
    save_checkpoint,
)
from mmlearn.train.config import TrainConfig
from mmlearn.train.distributed import World, current_world, process_group, run_distributed
from mmlearn.train.engine import FitResult, NonFiniteLossError, fit
from mmlearn.train.evaluation import evaluate
from mmlearn.train.schedule import lr_factor, stage_spans

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "Progress",
    "TrainConfig",
    "World",
    "current_world",
    "evaluate",
    "fit",
    "load_best_state",
    "load_checkpoint",
    "lr_factor",
    "process_group",
    "read_progress",
    "run_distributed",
    "save_checkpoint",
    "stage_spans",
]
