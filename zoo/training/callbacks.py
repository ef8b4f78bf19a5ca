"""Callbacks for what a person watches (a progress bar at a terminal, plain epoch lines for logs,
TensorBoard images) and for the run's record of its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from .module import last_batch_of_epoch
from .outputs import save_resolved_config
from .pictures import add_picture, input_grid
from .resume import stopped_by_patience
from .runlog import record, say


class RecordResolvedConfig(pl.Callback):
    """A resumed run's config.yaml, written once fit has accepted the resume (a one-cycle horizon is
    checked only inside fit): as training starts, or at the end of a fit with no training left to do
    (its checkpoint was at the last epoch's end)."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir, self.saved = cfg, run_dir, False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.saved:
            self._save(trainer, pl_module)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            save_resolved_config(self.cfg, self.run_dir, model=pl_module.hparams.get("model"))
        self.saved = True


def _log_pending_train_tally(pl_module: pl.LightningModule) -> None:
    # A callback's on_train_epoch_end runs after the epoch's validation, so both train/ and val/
    # figures are current; but before the module's own hook, which logs the figures of an epoch
    # stopped after a mid-epoch validation: without this, such an epoch showed the epoch before's.
    log_pending = getattr(pl_module, "log_pending_train_tally", None)
    if log_pending is not None:
        log_pending()


class TerminalProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, whose last picture of an epoch shows that epoch's training figures."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On every process, though the bar shows on the first alone: the figures are synced.
        _log_pending_train_tally(pl_module)
        super().on_train_epoch_end(trainer, pl_module)


class EpochSummary(pl.Callback):
    """One plain line per epoch, for logs where a live progress bar would be noise (CI, files). With
    `console=False` (a terminal, where the bar shows the figures) it goes to the run's log file alone,
    which otherwise kept no epoch's figures."""

    def __init__(self, console: bool = True) -> None:
        self.console = console
        self._validated = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _log_pending_train_tally(pl_module)
        if not trainer.is_global_zero:
            return
        # Lightning keeps the last validation's figures until the next one: an epoch that did not
        # validate (trainer.check_val_every_n_epoch, a step limit reached mid-epoch) showed the
        # epoch before's as its own.
        shown_prefixes = ("train/", "val/") if self._validated else ("train/",)
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(shown_prefixes)}
        shown = "  ".join(f"{name}={float(value):.4f}" for name, value in sorted(metrics.items()))
        of_epochs = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        line = f"epoch {trainer.current_epoch + 1}{of_epochs}  {shown}"
        if self.console:
            say(line)
        else:
            record(line)


class _FollowsAMovedRun(ModelCheckpoint):
    """A run folder moved (or copied) and then resumed. Lightning keeps a checkpoint callback's state
    only when its folder is unchanged; otherwise it forgets the best score, so the next validation
    replaces best.ckpt with whatever it finds, yet keeps best_model_path: the old folder's file, gone
    or another run's, which the final test would read. Paths into the old folder whose files came
    along are taken into the new one, and the state is kept."""

    _PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            state_dict = _moved_into(state_dict, Path(old), Path(new), self._PATH_KEYS) or state_dict
        super().load_state_dict(state_dict)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2.6 saves last.ckpt here under fast_dev_run too, whose banner says checkpointing is
        # off: a smoke test's one-batch weights were left in the folder as a run to resume.
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)


def _moved_into(state: dict[str, Any], old: Path, new: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The callback state with paths under `old` put under `new`, or None when a file they name is
    not there (a run continued from another's checkpoint into a new folder: Lightning's way holds)."""

    def move(path: str) -> str | None:
        if not path:
            return path
        try:
            relative = Path(path).relative_to(old)
        except ValueError:
            return None
        moved = new / relative
        return str(moved) if moved.exists() else None

    paths = {key: move(state.get(key) or "") for key in keys}
    best_k = {move(path): score for path, score in (state.get("best_k_models") or {}).items()}
    if None in paths.values() or None in best_k:
        return None
    return {**state, **paths, "best_k_models": best_k, "dirpath": str(new)}


class BestCheckpoint(_FollowsAMovedRun):
    """Lightning's ModelCheckpoint, which also follows a moved run folder (see _FollowsAMovedRun)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.save_top_k not in (0, 1) and self.filename and "{" not in self.filename:
            # One fixed name holds one file: each checkpoint kept among the top k replaced the one
            # before, better or worse, and the final test read the last one kept as the best.
            self.filename = f"{self.filename}-{{epoch}}-{{step}}"

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key: a run saved before this class existed resumes with its best score.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, resumed with the patience this run is configured with, and which
    ends at once a resumed run it had already stopped.

    Lightning 2.6 restores the patience saved in the checkpoint over the one given, so a run trained on
    with a higher callbacks.early_stopping.patience kept the old one. A run it stopped, interrupted
    while testing, went on for another epoch when resumed (the Trainer does not save that it was told
    to stop), replacing the best checkpoint the unbroken run would have tested."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        configured = self.patience
        super().load_state_dict(state_dict)
        self.patience = configured

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not under fast_dev_run, where Lightning's own checks are off too.
        if stopped_by_patience(self.wait_count, self.patience) and not trainer.fast_dev_run:
            trainer.should_stop = True  # Lightning still holds the run to min_epochs and min_steps

    @property
    def state_key(self) -> str:
        # EarlyStopping's key: a run saved with Lightning's class resumes with its count.
        return super().state_key.replace(type(self).__qualname__, EarlyStopping.__qualname__, 1)


class LastCheckpoint(_FollowsAMovedRun):
    """last.ckpt every N training steps and at every epoch end, saved only where a resume loses nothing.

    Lightning 2.6 resumes a checkpoint from a training step's end as if everything due after that step
    had run. Two saves of ModelCheckpoint's step interval break that:
      * at an epoch's last batch, before the epoch has ended, the restored loop counts the epoch again
        and the run ends one epoch short (a SIGKILL test caught it): that step is left to the
        epoch-end save, which this class makes every epoch, not only when the interval lands there;
      * at a step a validation follows (trainer.val_check_interval), the resumed run skips that
        validation, and with it maybe the best checkpoint: that save moves to the next step.
    Nor is one saved after a batch whose gradients wait to be accumulated (see _gradients_pending).
    On SIGTERM it also saves the step the run stopped at."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._save_owed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if last_batch_of_epoch(trainer, batch_idx):
            self._save_owed = False  # the epoch-end save makes it
            return
        if _gradients_pending(trainer):
            return  # saved at the next batch that steps (see _gradients_pending)
        if _validation_follows(trainer):
            self._save_owed = self._save_owed or self._step_due(trainer)
            return
        if self._save_owed:
            self._save_owed = False
            if not self._should_skip_saving_checkpoint(trainer):
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Lightning stops on SIGTERM (a scheduler's pre-emption, `kill`) at the end of a training step;
        # saved there, the stopped run resumes from that step. Not during a validation, nor at an
        # epoch's last step, which the epoch-end save covers, nor amid gradient accumulation (see above).
        super().on_exception(trainer, pl_module, exception)
        if (
            isinstance(exception, SIGTERMException)
            and self.save_last
            and trainer.training
            and not last_batch_of_epoch(trainer, trainer.fit_loop.epoch_loop.batch_idx)
            and not _gradients_pending(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _step_due(self, trainer: pl.Trainer) -> bool:
        interval = self._every_n_train_steps
        return interval >= 1 and trainer.global_step % interval == 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (
            self.save_last
            and self._last_global_step_saved != trainer.global_step
            and self._should_save_on_train_epoch_end(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _gradients_pending(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ended left its gradients to be stepped with the next ones
    (trainer.accumulate_grad_batches; Lightning's own test). A checkpoint holds no gradients: a run
    resumed from one saved there stepped without that batch's, and no longer matched an unbroken run."""
    return trainer.fit_loop.epoch_loop._should_accumulate()


def _validation_follows(trainer: pl.Trainer) -> bool:
    """Whether the training loop validates right after the batch that just ended (Lightning's own test)."""
    epoch_loop = trainer.fit_loop.epoch_loop
    return bool(epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


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
        # Whether a resumed run starts a TensorBoard run of its own (build_trainer says so): one
        # continued from another run's checkpoint into a new folder holds no grid yet.
        self.new_tensorboard_run = False

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
        # A run resumed in its own folder already holds its grid.
        resumed_in_place = trainer.global_step > 0 and not self.new_tensorboard_run
        if self._grid_logged or not trainer.is_global_zero or resumed_in_place:
            return
        self._grid_logged = True
        writer = self._writer(trainer)
        if writer is None:
            return
        add_picture(writer, "train/inputs", input_grid(batch[0][: self.grid_images]), self._step(trainer))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        matrix = pl_module.val_confusion.compute()  # reduced across processes by torchmetrics
        writer = self._writer(trainer)
        if writer is not None and trainer.is_global_zero:
            # Named rows and columns, as evaluate.py draws it: a bare heat map did not say which class
            # a row is, nor which axis holds the true class.
            from .evaluation import labelled_confusion_image

            picture = labelled_confusion_image(matrix, pl_module.class_names)
            add_picture(writer, "val/confusion_matrix", numpy.asarray(picture), self._step(trainer))
