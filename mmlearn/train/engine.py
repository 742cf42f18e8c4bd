"""The training loop: the only code that calls backward, steps, clips and checkpoints.

``fit`` runs every stage of a ``MissingModalityModel`` on DeepSpeed. Methods own their loss
(``model.loss``) and hooks (``on_step_end``, ``on_epoch_end``); the loop owns the rest. The
same ``fit`` runs in one process or on every rank of a process group (Ray Train, torchrun,
``run_distributed``).

Per epoch: train on the protocol's masks, validate on every non-empty pattern, select on the
mean over patterns of the selection metric, optionally checkpoint, then hand the epoch report
to ``on_epoch`` (where a Ray Tune trial reports and saves).

Only epochs of a method's final stage are selected: before it the model is not yet the method
(MMIN's teacher has no trained student, UME-MMA's unimodal stage is plain UME), so restoring
such an epoch would test another model under the method's name.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mmlearn.data.loader import SplitLoader
from mmlearn.data.missing import MissingProtocol
from mmlearn.data.store import FeatureStore, StoreSplit
from mmlearn.errors import ConfigError, MmlearnError
from mmlearn.metrics.patterns import METRIC_MODES, default_selection_metric, metric_names
from mmlearn.models.base import LossOutput, MissingModalityModel
from mmlearn.train._deepspeed import DeepSpeedEngine, deepspeed
from mmlearn.train.checkpoint import Progress, load_checkpoint, read_progress, save_checkpoint
from mmlearn.train.config import TrainConfig
from mmlearn.train.distributed import World, process_group
from mmlearn.train.evaluation import evaluate
from mmlearn.train.placement import model_placement, on_device
from mmlearn.train.schedule import StageSpan, StepwiseLR, stage_spans

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]


class NonFiniteLossError(MmlearnError):
    """The training loss became NaN or infinite; training stopped at that step."""


@dataclass
class FitResult:
    """What a fit returns.

    Attributes:
        best_epoch: the selected epoch (1-based), the best of the final stage.
        best_score: its selection score (mean over patterns of ``selection_metric``).
        selection_metric: the metric that selected it.
        best_state: the model's state_dict at the best epoch (CPU copies); the model itself is
            left at the last epoch.
        history: one report per epoch, as passed to ``on_epoch``.
    """

    best_epoch: int
    best_score: float
    selection_metric: str
    best_state: dict[str, Any]
    history: list[dict[str, Any]]


def fit(
    model: MissingModalityModel,
    data: FeatureStore | Mapping[str, StoreSplit],
    protocol: MissingProtocol,
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
) -> FitResult:
    """Train ``model`` through all of its stages and select its best final-stage epoch.

    Stages get ``config.epochs`` shared by their ``epoch_share``. Before each stage the loop
    calls ``model.set_stage``; when that changes ``model.param_groups(config.lr)`` (which
    parameters are trainable, or a group's settings), the AdamW optimizer over those groups, its
    LR scheduler and the DeepSpeed engine are built anew; otherwise they carry over.
    The learning rate follows ``config.lr_schedule`` over the epochs of the whole fit.

    Every rank of an initialised process group must call ``fit`` with the same arguments; without
    a group, a one-process group exists for the duration of the call. Torch's global RNG is
    seeded from ``(config.seed, rank)`` (or restored from the checkpoint when resuming).

    Args:
        model: the method to train; its ``spec`` names the modalities and target.
        data: an opened store, or a mapping with ``train`` and ``val`` splits.
        protocol: how modalities go missing during training.
        config: the training configuration.
        on_epoch: called on every rank after every epoch with that epoch's report: ``epoch``
            (1-based), ``epochs``, ``stage``, ``train`` (this rank's mean loss and loss parts),
            ``lr`` (per parameter group), ``val`` (see ``evaluate``), ``score``, ``best_epoch``,
            ``best_score``, ``internals`` (``model.internals()``), ``train_seconds`` (the
            training steps), ``seconds`` (training and validation) and ``checkpoint`` (the
            directory written for this epoch, or None). ``score`` is the epoch's own
            validation score in every stage; ``best_epoch`` and ``best_score`` are those of
            the best final-stage epoch so far, None before the final stage.
        checkpoint_dir: if given, a checkpoint is written to ``<dir>/epoch-NNNN`` after every
            epoch, before ``on_epoch``; the previous epoch's one is removed after ``on_epoch``
            returns.
        resume_from: a checkpoint directory written by an earlier call with the same arguments;
            training continues after its last epoch as if it had never stopped.

    Returns:
        The best epoch of the final stage, its score and state, and every epoch's report.

    Raises:
        ConfigError: the configuration does not fit the model or data.
        NonFiniteLossError: the loss became NaN or infinite (on any rank).
    """
    with process_group() as world:
        run = _FitRun(model, data, protocol, config, world, on_epoch, checkpoint_dir)
        return run.run(resume_from)


def best_so_far(report: Mapping[str, Any]) -> str:
    """``best 0.8123 @ epoch 7`` of an epoch report, or that no final-stage epoch is done yet."""
    if report["best_epoch"] is None:
        return "no final-stage epoch yet"
    return f"best {report['best_score']:.4f} @ epoch {report['best_epoch']}"


def _splits(data: FeatureStore | Mapping[str, StoreSplit]) -> tuple[StoreSplit, StoreSplit]:
    if isinstance(data, FeatureStore):
        return data.split("train"), data.split("val")
    missing = [s for s in ("train", "val") if s not in data]
    if missing:
        raise ConfigError(f"fit needs the splits train and val, but {missing} are missing.")
    return data["train"], data["val"]


def _deepspeed_config(config: TrainConfig, world: World) -> dict[str, Any]:
    """The DeepSpeed config: micro-batch, global clipping, ZeRO stage and precision.

    Under bf16 every floating tensor of the model follows the training precision, buffers
    included: DeepSpeed >= 0.19.8 casts only parameters unless ``data_types.buffer_dtype`` is set
    (``deepspeed/runtime/engine.py``, ``_cast_module_mixed_precision``), and a batch norm whose
    weight is bf16 but whose running statistics stay fp32 fails in ``F.batch_norm`` ("expected
    scalar type BFloat16 but found Float"). Older releases cast the whole module, as this does.

    Nothing in it may wait for the device during a step (docs/benchmarks.md, "gpu"): the
    throughput timer is on by default and synchronises the device at every forward and step
    (deepspeed/utils/config.py, ``timers.throughput``), so it is off. With bf16 at ZeRO >= 1
    the ZeRO optimizer's gradient overflow check reads a flag per step; the loop already stops
    on a non-finite loss, so it is off too (``bf16.check_grad_overflow``; ZeRO 0 has no such
    option: there DeepSpeed's unfused bf16 wrapper tests every gradient tensor on the host).
    """
    bf16 = config.precision == "bf16"
    return {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": config.batch_size * world.world_size,
        "gradient_clipping": config.grad_clip,
        "zero_optimization": {"stage": config.zero_stage},
        "bf16": {"enabled": bf16, "check_grad_overflow": False},
        "data_types": {"buffer_dtype": "bf16" if bf16 else None},
        "timers": {"throughput": {"enabled": False}},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def _signature(groups: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What identifies an optimizer's groups: their parameters and every other setting."""
    return tuple(
        (
            tuple(id(p) for p in g["params"]),
            tuple(sorted((k, repr(v)) for k, v in g.items() if k != "params")),
        )
        for g in groups
    )


def _cpu_state(model: MissingModalityModel) -> dict[str, Any]:
    """A detached CPU copy of the model's state_dict (extra state deep-copied)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in model.state_dict().items()
    }


class _FitRun:
    """The state of one fit; ``run`` is the loop."""

    def __init__(
        self,
        model: MissingModalityModel,
        data: FeatureStore | Mapping[str, StoreSplit],
        protocol: MissingProtocol,
        config: TrainConfig,
        world: World,
        on_epoch: EpochCallback | None,
        checkpoint_dir: str | Path | None,
    ) -> None:
        self.model = model
        self.spec = model.spec
        self.protocol = protocol
        self.config = config
        self.world = world
        self.on_epoch = on_epoch
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.train_split, self.val_split = _splits(data)
        self.metric = config.selection_metric or default_selection_metric(self.spec.target)
        if self.metric not in metric_names(self.spec.target):
            raise ConfigError(
                f"train.selection_metric: must be one of {metric_names(self.spec.target)} for "
                f"target {self.spec.target.name!r}, but got {self.metric!r}."
            )
        self.larger_is_better = METRIC_MODES[self.metric] == "max"
        self.spans = stage_spans(model.stages(), config.epochs)
        self.loader = SplitLoader(
            self.train_split,
            self.spec,
            config.batch_size,
            rank=world.rank,
            world_size=world.world_size,
            seed=config.seed,
        )
        self.engine: DeepSpeedEngine | None = None
        self.signature: tuple[Any, ...] = ()
        self.best_state: dict[str, Any] = {}
        self.progress = Progress(epochs_done=0, engine_first_epoch=0, world_size=world.world_size)

    # -- stages and engines ------------------------------------------------------------------

    def _span(self, epoch: int) -> StageSpan:
        return next(s for s in self.spans if s.first <= epoch < s.stop)

    def _enter_stage(self, span: StageSpan, epoch: int) -> None:
        """Set the model's stage; rebuild the engine if its parameter groups changed."""
        if self.engine is not None and self.model.stage == span.name:
            return
        self.model.set_stage(span.name)
        groups = self._param_groups()
        if self.engine is not None and _signature(groups) == self.signature:
            log.info("stage %s keeps the optimizer of the previous stage", span.name)
            return
        self._build_engine(groups, epoch)

    def _param_groups(self) -> list[dict[str, Any]]:
        """The model's non-empty parameter groups for its current stage."""
        groups = [
            {**g, "params": list(g["params"])} for g in self.model.param_groups(self.config.lr)
        ]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ConfigError(
                f"stage {self.model.stage!r} of {type(self.model).__name__} leaves no "
                "parameter trainable."
            )
        return groups

    def _build_engine(self, groups: list[dict[str, Any]], first_epoch: int) -> None:
        """A new AdamW over ``groups``, its LR scheduler and a DeepSpeed engine around both."""
        if self.engine is not None:
            self.engine.destroy()
        self.signature = _signature(groups)  # before the optimizer adds its defaults to groups
        optimizer = torch.optim.AdamW(
            groups,
            lr=self.config.lr,
            betas=self.config.betas,
            eps=self.config.eps,
            weight_decay=self.config.weight_decay,
            foreach=True,  # one kernel per group instead of one per tensor
        )
        rule = StepwiseLR(self.config, first_epoch, self.loader.steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
        self.engine, *_ = deepspeed.initialize(
            model=self.model,
            model_parameters=groups,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=_deepspeed_config(self.config, self.world),
        )
        self.progress.engine_first_epoch = first_epoch
        log.info(
            "DeepSpeed engine for stage %s from epoch %d: %d parameter groups, ZeRO %d, %s",
            self.model.stage,
            first_epoch + 1,
            len(groups),
            self.config.zero_stage,
            self.config.precision,
        )

    def _resume(self, path: Path) -> None:
        progress = read_progress(path)
        if progress.world_size != self.world.world_size:
            raise ConfigError(
                f"checkpoint {path} was written by {progress.world_size} ranks; resuming needs "
                f"the same world size, but this run has {self.world.world_size}."
            )
        if progress.epochs_done > self.config.epochs:
            raise ConfigError(
                f"train.epochs: must be >= the {progress.epochs_done} epochs already done in "
                f"checkpoint {path}, but got {self.config.epochs}."
            )
        self.model.set_stage(self._span(progress.epochs_done - 1).name)
        self._build_engine(self._param_groups(), progress.engine_first_epoch)
        assert self.engine is not None
        self.best_state = load_checkpoint(path, self.engine)
        self.progress = progress
        log.info("resumed from %s after epoch %d", path, progress.epochs_done)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, resume_from: str | Path | None) -> FitResult:
        torch.manual_seed(self.config.seed * 1_000_003 + self.world.rank)
        previous_checkpoint: Path | None = None
        try:
            if resume_from is not None:
                self._resume(Path(resume_from))
            for epoch in range(self.progress.epochs_done, self.config.epochs):
                span = self._span(epoch)
                self._enter_stage(span, epoch)
                started = time.perf_counter()
                lrs = self._learning_rates()
                train = self._train_epoch(epoch, span)
                self.model.on_epoch_end(epoch + 1, self.config.epochs)
                trained = time.perf_counter()
                report = self._validate(epoch, span, train, lrs)
                report["train_seconds"] = trained - started
                report["seconds"] = time.perf_counter() - started
                checkpoint = self._checkpoint(epoch, report)
                if self.on_epoch is not None:
                    self.on_epoch(report)
                if previous_checkpoint is not None and self.world.rank == 0:
                    shutil.rmtree(previous_checkpoint, ignore_errors=True)
                previous_checkpoint = checkpoint
        finally:
            if self.engine is not None:
                self.engine.destroy()
        assert self.progress.best_epoch is not None and self.progress.best_score is not None
        return FitResult(
            best_epoch=self.progress.best_epoch,
            best_score=self.progress.best_score,
            selection_metric=self.metric,
            best_state=self.best_state,
            history=self.progress.history,
        )

    def _learning_rates(self) -> dict[str, float]:
        assert self.engine is not None
        return {
            g.get("name", f"group{i}"): float(g["lr"])
            for i, g in enumerate(self.engine.optimizer.param_groups)
        }

    def _train_epoch(self, epoch: int, span: StageSpan) -> dict[str, float]:
        """One epoch of steps; returns this rank's mean loss and loss parts.

        A step reads one number back from the device (the finite check); the loss and its
        parts are summed on the device and read once per epoch.
        """
        engine = self.engine
        assert engine is not None
        device, dtype = model_placement(self.model)
        engine.train()
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        batches = on_device(self.loader.train(self.protocol, epoch), device, dtype)
        for step, batch in enumerate(batches):
            out = engine(batch)
            loss: LossOutput = self.model.loss(out, batch)
            self._check_finite(loss, epoch, step, span)
            engine.backward(loss.total)
            engine.step()
            self.model.on_step_end(out, batch)
            for name, value in {"loss": loss.total.detach(), **loss.parts}.items():
                sums[name] = sums[name] + value.float() if name in sums else value.float()
            steps += 1
        means = (torch.stack(list(sums.values())) / steps).tolist()  # the epoch's one read
        return dict(zip(sums, means, strict=True))

    def _check_finite(self, loss: LossOutput, epoch: int, step: int, span: StageSpan) -> None:
        """Raise on every rank if the loss is not finite on any rank (so no rank hangs)."""
        bad = (~torch.isfinite(loss.total.detach())).float().reshape(1)  # (1,)
        if self.world.world_size > 1:
            dist.all_reduce(bad)
        if bad.item() > 0:  # the step's one read from the device
            value = loss.total.item()
            where = "" if not math.isfinite(value) else " on another rank"
            raise NonFiniteLossError(
                f"training loss is not finite{where} (this rank: {value}) at epoch {epoch + 1}, "
                f"step {step + 1} of stage {span.name!r}; training stopped. Lower the learning "
                f"rate or check the data."
            )

    def _validate(
        self, epoch: int, span: StageSpan, train: dict[str, float], lrs: dict[str, float]
    ) -> dict[str, Any]:
        """Validate, update the selection and the progress; returns the epoch report."""
        val = evaluate(self.model, self.val_split, self.spec, self.config.batch_size)
        score = val["mean"][self.metric]
        best = self.progress.best_score
        selectable = span == self.spans[-1]
        if selectable and (
            best is None or (score > best if self.larger_is_better else score < best)
        ):
            self.progress.best_epoch, self.progress.best_score = epoch + 1, score
            self.best_state = _cpu_state(self.model)
        self.progress.epochs_done = epoch + 1
        report = {
            "epoch": epoch + 1,
            "epochs": self.config.epochs,
            "stage": span.name,
            "train": train,
            "lr": lrs,
            "val": val,
            "selection_metric": self.metric,
            "score": score,
            "best_epoch": self.progress.best_epoch,
            "best_score": self.progress.best_score,
            "internals": dict(self.model.internals()),
        }
        self.progress.history.append(report)
        log.info(
            "epoch %d/%d (%s): loss %.4f, val %s %.4f (%s)",
            epoch + 1,
            self.config.epochs,
            span.name,
            train["loss"],
            self.metric,
            score,
            best_so_far(report),
        )
        return report

    def _checkpoint(self, epoch: int, report: dict[str, Any]) -> Path | None:
        """Write this epoch's checkpoint if asked; records its path in the report."""
        path = None
        if self.checkpoint_dir is not None:
            assert self.engine is not None
            path = self.checkpoint_dir / f"epoch-{epoch + 1:04d}"
            report["checkpoint"] = str(path)
            save_checkpoint(path, self.engine, self.progress, self.best_state)
        else:
            report["checkpoint"] = None
        return path
