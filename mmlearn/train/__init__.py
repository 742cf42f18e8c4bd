"""Training on DeepSpeed: the one loop, evaluation over missing patterns, and checkpoints.

Import from the modules (``mmlearn.train.engine.fit``, ``mmlearn.train.config.TrainConfig``,
...): this package imports nothing, so reading a training config does not load DeepSpeed.
Only ``_deepspeed`` imports DeepSpeed, selecting the CPU accelerator first when there is no
CUDA device.
"""
