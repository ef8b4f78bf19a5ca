"""The LightningModule that trains, validates and tests any zoo classifier.

It builds its network from a model name and plain constructor arguments, so a checkpoint alone is
enough to rebuild it (`zoo.training.checkpoint.module_from_checkpoint`). Normalisation lives here, on the
training device, with the data's mean and std saved beside the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ..data.batches import PADDING
from ..models import create_model
from ..models._head import ClassifierModel
from .errors import UserError
from .fused import IMPLEMENTATION_KEYS, adopt_this_runs_implementation
from .quoting import train_on_command

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def _as_plain(value: Any) -> Any:
    """An optimizer setting as a comparable value: betas are a list in a config, a tuple in torch."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return list(value) if isinstance(value, (tuple, list)) else value


def _train_on_afresh(checkpoint: str, what: str, data: list[str] | None = None) -> str:
    """The advice for a resume that is refused: the way on from its weights, in a run of its own, on
    the run's `data` overrides (None: those of the Hydra job under way). Without them the fine-tune
    trained on finetune.py's default data set, not the images the run was trained on."""
    return f"train on from its weights with a fresh {what}: {train_on_command(checkpoint, data)}"


# The checkpoint entry that holds the running training loss and accuracy of the epoch under way.
TRAIN_TALLY_KEY = "train_epoch_tally"
OPTIMIZER_KIND_KEY = "optimizer_kind"
SCHEDULER_KIND_KEY = "scheduler_kind"
# The scheduler kind of a checkpoint from before SCHEDULER_KIND_KEY that holds a schedule, or of a
# factory that is not a class: not known, so not compared.
_UNTOLD = "(not recorded)"


def gathered_from_every_process(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` of every process, stacked in rank order. Not LightningModule.all_gather: it goes
    through torch.distributed.nn.functional.all_gather, which torch 2.14 deprecates with a
    FutureWarning that each process printed at the run's first checkpoint."""
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def last_batch_of_epoch(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the training batch `batch_idx` is the epoch's last one."""
    # is_last_batch: the loader ran out; num_training_batches: limit_train_batches, overfit_batches.
    return trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches


class ImageClassifier(pl.LightningModule):
    def __init__(
        self,
        model: dict,
        data: dict,
        data_config: dict | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        source: dict | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        """`model` is {"name": ..., **constructor kwargs}; `data` is a DataSpec.to_dict(); `data_config`
        is the data section of the run's config (evaluate.py rebuilds the data from it); `source`
        records where fine-tuned weights came from. All plain types, saved in every checkpoint.
        `channels_last` and `compile` are speed options that leave the math (and the state dict) as is."""
        super().__init__()
        # The factories are code, not data: they are rebuilt from config, never stored in a checkpoint.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        model_kwargs = dict(model)
        self.net = create_model(model_kwargs.pop("name"), **model_kwargs)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        self._forward_train = self.net.forward_train
        if compile:
            # In place, so parameter names (and therefore checkpoints) stay those of the plain model.
            self.net.compile()
            if type(self.net).forward_train is not ClassifierModel.forward_train:
                # A training forward of the network's own (GoogLeNet's, with its auxiliary heads) does
                # not pass through the __call__ that net.compile() compiles.
                self._forward_train = torch.compile(self.net.forward_train)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = list(data["class_names"])
        num_classes = len(self.class_names)
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(data["mean"]).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(data["std"]).view(shape), persistent=False)

        # Training loss x samples and correct predictions, summed on the device every step and read
        # once per epoch (training_step): a few kernels a step, where torchmetrics' accuracy runs a
        # dozen and its argument check (torch.unique) waits for the device. A NaN or infinite loss
        # stays in the loss sum until the epoch ends, which is what NonFiniteLossGuard reads.
        # Not a buffer: DDP copies rank 0's buffers into every process at each forward, and each
        # process's sums were rank 0's with its own last step added (see _apply for the device).
        self.train_sums = torch.zeros(2)
        self.train_seen = 0
        self._train_tally_logged = False
        # validate_args off: the metrics' input check (torch.unique over the targets) waits for the
        # GPU at every evaluation step, and the inputs here are this module's own logits and the data
        # module's labels, in range by construction.
        checks = {"validate_args": False}
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", **checks)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", **checks)
        self.top5 = num_classes > 5
        if self.top5:
            self.val_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro", **checks)
            self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro", **checks)
        self.val_confusion = MulticlassConfusionMatrix(num_classes, **checks)
        # nan_strategy="disable": a NaN loss stays NaN (the default drops it, with a warning, and a
        # diverged model would show a finite loss), and no isnan check waits for the GPU every step.
        self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(2))

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records the hook it is running in _current_fx_name some forty times a training
        # step; nn.Module.__setattr__, which first looks for parameters, buffers and submodules of
        # that name, costs about 3 us of Python each time on a slow CPU.
        if name == "_current_fx_name":
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def _apply(self, fn: Callable, recurse: bool = True) -> ImageClassifier:
        # The sums follow the buffers' device but keep float32, where trainer.precision=16-true and
        # bf16-true cast the buffers: an epoch's sums in float16 passed 65504 (an "infinite loss" that
        # NonFiniteLossGuard stopped the run for) or in bfloat16 kept 8 bits (counts past 256 rounded).
        super()._apply(fn, recurse)
        self.train_sums = self.train_sums.to(self.mean.device)
        return self

    # --- inputs -------------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        # The network's own dtype: float32, or half or bfloat16 under trainer.precision=16-true or
        # bf16-true, where Lightning casts the weights and buffers but not a uint8 batch made float.
        dtype = self.mean.dtype
        images = images.to(dtype).div_(255) if images.dtype == torch.uint8 else images.to(dtype)
        return ((images - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for raw images (uint8, or float in [0, 1])."""
        return self.net(self.normalize(images))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective. Soft (N x C) targets come from mixup/cutmix; cross_entropy takes both."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    @staticmethod
    def eval_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        # Plain cross-entropy, as evaluate.py reports it: label smoothing is a training device, and a
        # smoothed val/test loss would differ from evaluate.py's for the same checkpoint and data.
        return F.cross_entropy(logits, targets, reduction=reduction)

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits, aux_logits = self._forward_train(self.normalize(images))
        loss = self.loss(logits, targets)
        for aux in aux_logits:
            loss = loss + self.net.aux_loss_weight * self.loss(aux, targets)
        hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
        # add_ on the buffer's rows: two kernels a step, no host sync, no new tensors kept.
        self.train_sums[0].add_(loss.detach(), alpha=len(targets))
        self.train_sums[1].add_((logits.detach().argmax(dim=1) == hard_targets).sum())
        self.train_seen += len(targets)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Logged once per epoch, not per step: each self.log call costs about as much Python as a
        # whole LeNet-5 step. After the batch, not in training_step: a stop that a callback asks for
        # here (trainer.max_time's Timer) ends the epoch early, and its figures are logged too.
        trainer = self._trainer  # None when a step is called by hand, outside a Trainer
        if trainer is None or self._train_tally_logged:
            return
        # global_step counts this batch's optimizer step by now.
        steps_done = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
        # A stop that min_epochs or min_steps holds off leaves should_stop set while the run goes on:
        # the epoch ends here only when the trainer may stop now.
        stopping = trainer.should_stop and trainer.fit_loop._can_stop_early
        if stopping or steps_done or last_batch_of_epoch(trainer, batch_idx):
            self._log_train_tally()

    def on_train_epoch_end(self) -> None:
        self.log_pending_train_tally()

    def log_pending_train_tally(self) -> None:
        """Logs the epoch's training tally if no batch did: an epoch stopped after a validation in its
        middle (early stopping at val_check_interval). Lightning runs most callbacks' on_train_epoch_end
        before this module's, so one that shows the epoch's figures there (EpochSummary,
        TerminalProgressBar) calls it first; on every process, as its figures are synced."""
        if not self._train_tally_logged and self.train_seen:
            self._log_train_tally()

    def _log_train_tally(self) -> None:
        # Every process sees as many samples (samplers pad), so the mean over processes (sync_dist)
        # of their means is the epoch's mean.
        loss_mean, accuracy = (self.train_sums / self.train_seen).unbind()
        options = {"on_step": False, "on_epoch": True, "sync_dist": True, "batch_size": 1}
        self.log("train/loss", loss_mean, prog_bar=True, **options)
        self.log("train/acc", accuracy, **options)
        self._train_tally_logged = True

    def on_train_epoch_start(self) -> None:
        # A fresh tally each epoch, also when the previous one ended early (max_steps, a resume).
        self.train_sums.zero_()
        self.train_seen = 0
        self._train_tally_logged = False

    # The epoch's running tally travels in the checkpoint: a run resumed mid-epoch does not call
    # on_train_epoch_start, and would otherwise report that epoch over the batches after the resume.
    # One row per process, each taking its own back: with rank 0's alone in the file, every process
    # resumed with rank 0's, and the resumed epoch's figures counted rank 0's first batches twice.
    # The optimizer's class is saved too: its state alone does not tell Adam from AdamW. So is the
    # scheduler's (None without one): Lightning loads a cosine's state into a StepLR without a word.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = self.train_sums.detach()
        seen = torch.tensor([self.train_seen], device=sums.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            # Every process builds the checkpoint (Lightning's dump_checkpoint), rank 0 writes it.
            sums, seen = gathered_from_every_process(sums), gathered_from_every_process(seen)
        checkpoint[TRAIN_TALLY_KEY] = {"sums": sums.reshape(-1, 2).cpu(), "seen": seen.reshape(-1).tolist()}
        if self._trainer is not None and self.trainer.optimizers:
            checkpoint[OPTIMIZER_KIND_KEY] = type(self.trainer.optimizers[0]).__name__
            checkpoint[SCHEDULER_KIND_KEY] = built_scheduler_kind(self.trainer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        tally = checkpoint.get(TRAIN_TALLY_KEY)
        if tally is not None:
            sums = tally["sums"].reshape(-1, 2)
            seen = tally["seen"] if isinstance(tally["seen"], list) else [tally["seen"]]  # one process's
            world_size = self._trainer.world_size if self._trainer is not None else 1
            if len(seen) == world_size:
                self.train_sums.copy_(sums[self.global_rank])
                self.train_seen = int(seen[self.global_rank])
            else:  # another number of processes, or a file from before: each resumes with the mean share
                self.train_sums.copy_(sums.mean(dim=0))
                self.train_seen = round(sum(seen) / len(seen))
        self._remember_saved_optimization(checkpoint)
        adopt_this_runs_implementation(checkpoint, self.optimizer_factory)

    def _remember_saved_optimization(self, checkpoint: dict[str, Any]) -> None:
        """What a resumed run's optimizer and scheduler will be restored to, to compare with this run's
        settings before Lightning restores them."""
        self._saved_optimization = saved_optimization(checkpoint)

    def nonfinite_loss_seen(self) -> bool:
        """Whether a training loss this epoch was NaN or infinite (one host sync; call it sparingly)."""
        return not bool(torch.isfinite(self.train_sums[0]))

    def _evaluated(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of an evaluation batch, without the images repeated only to pad this
        process's share of the split (labelled PADDING by the data modules): counted, they would
        weigh twice in every figure of a run over several processes."""
        images, targets = batch
        logits = self(images)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:  # one process has no padding, and no sync here
            counted = targets != PADDING
            logits, targets = logits[counted], targets[counted]
        return logits, targets

    def _update_mean_loss(self, mean: MeanMetric, logits: torch.Tensor, targets: torch.Tensor) -> None:
        # Each image's loss, summed and counted across processes by torchmetrics: the split's mean,
        # however unevenly it is shared out (Lightning's sync_dist averages the processes' means).
        # Per image, not a batch mean with a weight: under nan_strategy="disable" torchmetrics 1.9
        # ignores the weight.
        mean.update(self.eval_loss(logits, targets, reduction="none").detach().float())

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits, targets = self._evaluated(batch)
        self._update_mean_loss(self.val_loss, logits, targets)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        # update, not forward: forward also computes a per-batch value that nothing reads.
        self.val_acc.update(logits, targets)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        if self.top5:
            self.val_acc_top5.update(logits, targets)
            self.log("val/acc_top5", self.val_acc_top5, on_epoch=True)
        self.val_confusion.update(logits, targets)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits, targets = self._evaluated(batch)
        self._update_mean_loss(self.test_loss, logits, targets)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.test_acc.update(logits, targets)
        self.log("test/acc", self.test_acc, on_epoch=True)
        if self.top5:
            self.test_acc_top5.update(logits, targets)
            self.log("test/acc_top5", self.test_acc_top5, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("ImageClassifier was built without an optimizer factory; it can only evaluate")
        optimizer = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        extra = {}
        if getattr(self.scheduler_factory, "keywords", {}).get("total_steps", 0) is None:
            # OneCycle needs the run's step count, known only once the data and trainer exist.
            steps = self._count_stepping_batches()
            if steps == float("inf"):
                raise UserError(
                    "scheduler=onecycle needs the run's step count, and trainer.max_epochs=-1 leaves it "
                    "open; set trainer.max_steps=N or scheduler.factory.total_steps=N"
                )
            extra["total_steps"] = int(steps)
        scheduler = self.scheduler_factory(optimizer=optimizer, **extra)
        self._planned_schedule = {**getattr(self.scheduler_factory, "keywords", {}), **extra}
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def _count_stepping_batches(self) -> int | float:
        trainer = self.trainer
        set_up_before = trainer.train_dataloader is not None
        steps = trainer.estimated_stepping_batches
        if not set_up_before and trainer.ckpt_path is not None:
            # Lightning set up the training loader to count its batches before the resumed checkpoint
            # was restored, then kept it without giving it the checkpoint's place in the epoch: a run
            # resumed mid-epoch trained on that epoch's first batches again. Set up afresh once fit
            # runs, after the restore, it takes that place, as without a step count.
            trainer.fit_loop._combined_loader = None
        return steps

    def refuse_a_changed_optimization(self, checkpoint_path: str, checkpoint: dict[str, Any]) -> None:
        """refuse_another_optimization for this run's optimizer, schedule and parameter groups; called
        before the run writes anything to its folder."""
        self._remember_saved_optimization(checkpoint)
        refuse_another_optimization(
            checkpoint_path,
            checkpoint,
            self.optimizer_factory,
            self.scheduler_factory,
            self.parameter_groups(),
        )

    def on_fit_start(self) -> None:
        # Again for Trainer.fit called directly, and for a horizon configure_optimizers works out from
        # the data and trainer (OneCycle's total_steps), known only now; the optimizer and scheduler
        # are not yet replaced by the checkpoint's.
        saved = getattr(self, "_saved_optimization", None)
        if self.trainer.ckpt_path is not None and saved is not None:
            refuse_a_replaced_optimization(
                self.trainer.ckpt_path,
                saved,
                self.optimizer_factory,
                self.scheduler_factory,
                self.parameter_groups(),
                built_scheduler_kind(self.trainer),
                getattr(self, "_planned_schedule", {}),
            )

    def parameter_groups(self) -> list[dict]:
        """One group of every trainable parameter; fine-tuning overrides this to split backbone and head."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


class SavedOptimization(NamedTuple):
    """What a resume from a checkpoint restores the optimizer and scheduler to."""

    optimizer_kind: str | None  # None: a checkpoint from before the class was saved
    groups: list[dict]  # the optimizer's parameter groups, without their state
    schedule: dict | None  # the scheduler's state
    scheduler_kind: str | None  # see saved_scheduler_kind


def saved_optimization(checkpoint: dict[str, Any]) -> SavedOptimization:
    optimizers = checkpoint.get("optimizer_states") or []
    schedulers = checkpoint.get("lr_schedulers") or []
    return SavedOptimization(
        optimizer_kind=checkpoint.get(OPTIMIZER_KIND_KEY),
        groups=list((optimizers[0].get("param_groups") if optimizers else None) or []),
        schedule=schedulers[0] if schedulers else None,
        scheduler_kind=saved_scheduler_kind(checkpoint),
    )


def saved_scheduler_kind(checkpoint: dict[str, Any]) -> str | None:
    """The class of the schedule a resume from `checkpoint` restores, None when it holds none. A
    checkpoint from before the class was saved holds none when its list of schedules is empty; one
    with a schedule, or with no training state at all, is _UNTOLD."""
    if SCHEDULER_KIND_KEY in checkpoint:
        return checkpoint[SCHEDULER_KIND_KEY]
    return None if checkpoint.get("lr_schedulers") == [] else _UNTOLD


def scheduler_kind(scheduler_factory: SchedulerFactory | None) -> str | None:
    """The class `scheduler_factory` builds, None for no scheduler; _UNTOLD for a function that builds
    one, whose class is known only once it has (on_fit_start compares it then)."""
    if scheduler_factory is None:
        return None
    built = getattr(scheduler_factory, "func", scheduler_factory)
    return built.__name__ if isinstance(built, type) else _UNTOLD


def built_scheduler_kind(trainer: pl.Trainer) -> str | None:
    """The class of the scheduler `trainer` built from configure_optimizers, None without one."""
    configs = trainer.lr_scheduler_configs
    return type(configs[0].scheduler).__name__ if configs else None


def refuse_another_scheduler(
    checkpoint: str, saved_kind: str | None, kind: str | None, data: list[str] | None = None
) -> None:
    """Refuse to resume `checkpoint` with another kind of scheduler than it holds the state of.
    Lightning loads the saved state into whatever this run builds (a cosine's T_max and rate into a
    StepLR: neither schedule), builds a fresh one from the checkpoint's rate when it saved none, and
    drops it for a run without one, at the rate it had reached (0 at a cosine's end). Checked before
    the optimizer's settings, which a schedule moves."""
    if _UNTOLD in (saved_kind, kind) or saved_kind == kind:
        return
    held = f"the state of scheduler {saved_kind}" if saved_kind else "no scheduler's state (scheduler=none)"
    raise UserError(
        f"{checkpoint} holds {held}, and this run builds {kind or 'no scheduler (scheduler=none)'}; resume "
        f"with the schedule the run began with, or {_train_on_afresh(checkpoint, 'schedule', data)}"
    )


def refuse_another_optimization(
    checkpoint_path: str,
    checkpoint: dict[str, Any],
    optimizer_factory: OptimizerFactory | None,
    scheduler_factory: SchedulerFactory | None,
    groups: list[dict],
    data: list[str] | None = None,
) -> None:
    """Refuse to resume `checkpoint` with another optimizer, optimizer setting, scheduler or schedule
    than it holds. Lightning would load its state into whatever this run builds: an optimizer of another
    kind fails at its first step (SGD finds no momentum in Adam's groups), a changed value
    (optimizer.lr, weight_decay, a cosine T_max that follows trainer.max_epochs) is silently
    replaced by the checkpoint's. `groups` are the run's parameter groups, of which only the names
    and rates are read: the command line's check, before Hydra makes a run folder, has no module.
    `data`: the command's data overrides, which the advised fine-tune takes on (None: the job's)."""
    settings = getattr(scheduler_factory, "keywords", {})
    refuse_a_replaced_optimization(
        checkpoint_path,
        saved_optimization(checkpoint),
        optimizer_factory,
        scheduler_factory,
        groups,
        scheduler_kind(scheduler_factory),
        {k: v for k, v in settings.items() if v is not None},
        data,
    )


def refuse_a_replaced_optimization(
    checkpoint: str,
    saved: SavedOptimization,
    optimizer_factory: OptimizerFactory | None,
    scheduler_factory: SchedulerFactory | None,
    groups: list[dict],
    kind: str | None,
    planned: dict[str, Any],
    data: list[str] | None = None,
) -> None:
    """refuse_another_optimization against what the run builds: the scheduler `kind` and the `planned`
    schedule's settings, from its factory before a trainer exists, or as built once fit starts."""
    refuse_another_scheduler(checkpoint, saved.scheduler_kind, kind, data)
    refuse_a_replaced_optimizer(
        checkpoint, saved.optimizer_kind, saved.groups, optimizer_factory, scheduler_factory, groups, data
    )
    refuse_a_replaced_schedule(checkpoint, saved.schedule, scheduler_factory, planned, data)


def refuse_a_replaced_optimizer(
    checkpoint: str,
    saved_kind: str | None,
    saved_groups: list[dict] | None,
    optimizer_factory: OptimizerFactory | None,
    scheduler_factory: SchedulerFactory | None,
    groups: list[dict],
    data: list[str] | None = None,
) -> None:
    if not saved_groups or optimizer_factory is None:
        return
    restored = saved_groups[0]
    fresh_optimizer = optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))])
    fresh, kind = fresh_optimizer.param_groups[0], type(fresh_optimizer).__name__
    # The implementation flags are left out: an older torch saved groups without some of them.
    if (saved_kind or kind) != kind or set(fresh) - set(restored) - set(IMPLEMENTATION_KEYS):
        raise UserError(
            f"{checkpoint} holds the state of optimizer {saved_kind or '(another kind)'}, and this run "
            f"builds {kind}; resume with the optimizer the run began with, or "
            f"{_train_on_afresh(checkpoint, 'one', data)}"
        )
    # A schedule moves lr (its start kept as initial_lr), and OneCycle momentum and betas too.
    moved = {"momentum", "betas"} if "max_momentum" in restored else set()
    if "max_lr" in restored:
        moved.add("lr")
    for key in getattr(optimizer_factory, "keywords", {}):
        if key in moved or key not in fresh or key in IMPLEMENTATION_KEYS:
            continue
        kept = restored.get("initial_lr", restored["lr"]) if key == "lr" else restored.get(key)
        wanted = fresh[key]
        if _as_plain(kept) != _as_plain(wanted):
            raise UserError(
                f"{checkpoint} continues its {kind} optimizer with {key}={_as_plain(kept)}, but this "
                f"run's settings give {key}={_as_plain(wanted)}; a resumed run keeps its checkpoint's "
                "optimizer state. Resume with the settings the run began with, or "
                f"{_train_on_afresh(checkpoint, 'optimizer', data)}"
            )
    _refuse_changed_group_rates(checkpoint, kind, fresh["lr"], saved_groups, scheduler_factory, groups, data)


def _refuse_changed_group_rates(
    checkpoint: str,
    kind: str,
    base_lr: float,
    saved_groups: list[dict],
    scheduler_factory: SchedulerFactory | None,
    groups: list[dict],
    data: list[str] | None = None,
) -> None:
    """A group's own rate (fine-tuning's backbone, at finetune.backbone_lr_scale of the head's),
    or its own peak under a one-cycle schedule, is the checkpoint's on resume, whatever the
    settings now say."""
    peaks = getattr(scheduler_factory, "keywords", {}).get("max_lr")
    for index, (group, saved) in enumerate(zip(groups, saved_groups, strict=False)):
        if "max_lr" in saved:
            key, kept = "max_lr", saved["max_lr"]
            wanted = peaks[index] if isinstance(peaks, (list, tuple)) and index < len(peaks) else peaks
        else:
            key, kept, wanted = "lr", saved.get("initial_lr", saved.get("lr")), group.get("lr", base_lr)
        if not isinstance(kept, (int, float)) or not isinstance(wanted, (int, float)):
            continue
        if not math.isclose(kept, wanted, rel_tol=1e-6):
            name = group.get("name", f"group {index}")
            hint = " (did finetune.backbone_lr_scale change?)" if name == "backbone" else ""
            raise UserError(
                f"{checkpoint} continues its {kind} optimizer with {key}={kept:g} for its {name} "
                f"parameters, but this run's settings give {key}={wanted:g}{hint}; a resumed run keeps "
                "its checkpoint's optimizer state. Resume with the settings the run began with, or "
                f"{_train_on_afresh(checkpoint, 'optimizer', data)}"
            )


def refuse_a_replaced_schedule(
    checkpoint: str,
    restored: dict | None,
    scheduler_factory: SchedulerFactory | None,
    planned: dict[str, Any],
    data: list[str] | None = None,
) -> None:
    # Past its old end a cosine learning rate climbs again, and OneCycle fails.
    if not planned or not restored or scheduler_factory is None:
        return
    for key, wanted in planned.items():
        kept = restored.get(key)
        if isinstance(wanted, bool) or not isinstance(wanted, (int, float)) or kept in (None, wanted):
            continue
        hint = (
            " (did trainer.max_epochs or trainer.max_steps change?)"
            if key in ("T_max", "total_steps")
            else ""
        )
        name = getattr(scheduler_factory, "func", type(scheduler_factory)).__name__
        raise UserError(
            f"{checkpoint} continues a {name} schedule with {key}={kept}, "
            f"but this run's settings give {key}={wanted}{hint}; a resumed run keeps its checkpoint's "
            "schedule. Resume with the settings the run began with, or "
            f"{_train_on_afresh(checkpoint, 'schedule', data)}"
        )
