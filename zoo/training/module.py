"""The LightningModule that trains, validates and tests any zoo classifier.

It builds its network from a model name and plain constructor arguments, so a checkpoint alone is
enough to rebuild it (`ImageClassifier.load_from_checkpoint`). Normalisation lives here, on the
training device, with the data's mean and std saved beside the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ..models import create_model

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


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
        if compile:
            # In place, so parameter names (and therefore checkpoints) stay those of the plain model.
            self.net.compile()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = list(data["class_names"])
        num_classes = len(self.class_names)
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(data["mean"]).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(data["std"]).view(shape), persistent=False)

        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.top5 = num_classes > 5
        if self.top5:
            self.val_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro")
            self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        # Set on the device without a host sync; NonFiniteLossGuard reads it where a checkpoint may follow.
        self.register_buffer("nonfinite_loss_seen", torch.tensor(False), persistent=False)

    # --- inputs -------------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return ((images - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for raw images (uint8, or float in [0, 1])."""
        return self.net(self.normalize(images))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Soft (N x C) targets come from mixup/cutmix; cross_entropy takes both forms.
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits, aux_logits = self.net.forward_train(self.normalize(images))
        loss = self.loss(logits, targets)
        for aux in aux_logits:
            loss = loss + self.net.aux_loss_weight * self.loss(aux, targets)
        self.nonfinite_loss_seen |= ~torch.isfinite(loss.detach())
        hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
        self.train_acc(logits.detach(), hard_targets)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self(images)
        self.log("val/loss", self.loss(logits, targets), on_epoch=True, prog_bar=True, sync_dist=True)
        self.val_acc(logits, targets)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        if self.top5:
            self.val_acc_top5(logits, targets)
            self.log("val/acc_top5", self.val_acc_top5, on_epoch=True)
        self.val_confusion.update(logits, targets)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self(images)
        self.log("test/loss", self.loss(logits, targets), on_epoch=True, sync_dist=True)
        self.test_acc(logits, targets)
        self.log("test/acc", self.test_acc, on_epoch=True)
        if self.top5:
            self.test_acc_top5(logits, targets)
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
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def parameter_groups(self) -> list[dict]:
        """One group of every trainable parameter; fine-tuning overrides this to split backbone and head."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]
