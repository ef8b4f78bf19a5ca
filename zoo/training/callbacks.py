"""Callbacks for what a person watches: plain epoch lines for logs, and TensorBoard images."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from .module import last_batch_of_epoch
from .runlog import say


class EpochSummary(pl.Callback):
    """One plain line per epoch, for logs where a live progress bar would be noise (CI, files)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Called after the epoch's validation, so both train/ and val/ figures are current.
        if not trainer.is_global_zero:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))}
        shown = "  ".join(f"{name}={float(value):.4f}" for name, value in sorted(metrics.items()))
        of_epochs = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        say(f"epoch {trainer.current_epoch + 1}{of_epochs}  {shown}")


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt every N training steps and at every epoch end, never at an epoch's last batch.

    Lightning 2.6 resumes a checkpoint written at the last batch of an epoch, before the epoch has
    ended, one epoch short: the restored loop finds the epoch's batches done and counts the epoch
    again (a SIGKILL test caught it). ModelCheckpoint writes such a file whenever the step interval
    meets an epoch's end, and replaces it only after validation. Here that step is left to the
    epoch-end save, which this class makes every epoch, not only when the interval lands there."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if last_batch_of_epoch(trainer, batch_idx):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (
            self.save_last
            and self._last_global_step_saved != trainer.global_step
            and self._should_save_on_train_epoch_end(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def confusion_rates(matrix: torch.Tensor) -> torch.Tensor:
    """Each row of a confusion matrix divided by its count: the share of a true class per prediction."""
    counts = matrix.float()
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def confusion_image(matrix: torch.Tensor, cell: int = 12) -> torch.Tensor:
    """A 3 x H x W heat map of a confusion matrix, rows normalised, drawn with torch alone."""
    rates = confusion_rates(matrix)
    # White for 0, dark blue for 1: a colour ramp people read as "more".
    ramp_low, ramp_high = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.03, 0.19, 0.42])
    image = ramp_low.view(3, 1, 1) + (ramp_high - ramp_low).view(3, 1, 1) * rates.cpu().unsqueeze(0)
    return image.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)


class TensorBoardImages(pl.Callback):
    """A grid of training inputs once, and the validation confusion matrix each epoch."""

    def __init__(self, grid_images: int = 64) -> None:
        self.grid_images = grid_images
        self._grid_logged = False

    @staticmethod
    def _writer(trainer: pl.Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    @staticmethod
    def _step(trainer: pl.Trainer) -> int:
        # The step Lightning logs this moment's scalars at (its LearningRateMonitor reads the same),
        # so an image sits beside the validation figures it belongs to.
        return trainer.fit_loop.epoch_loop._batches_that_stepped

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # A resumed run already holds its grid.
        if self._grid_logged or not trainer.is_global_zero or trainer.global_step > 0:
            return
        self._grid_logged = True
        writer = self._writer(trainer)
        if writer is None:
            return
        images = batch[0][: self.grid_images].detach().cpu()
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        writer.add_image("train/inputs", make_grid(images, nrow=8, padding=1), self._step(trainer))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        matrix = pl_module.val_confusion.compute()  # reduced across processes by torchmetrics
        writer = self._writer(trainer)
        if writer is not None and trainer.is_global_zero:
            writer.add_image("val/confusion_matrix", confusion_image(matrix), self._step(trainer))
