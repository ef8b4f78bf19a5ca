"""What train.py and finetune.py share: the run's set-up, then fit, test the best checkpoint, record."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from . import builders, outputs
from .callbacks import RecordResolvedConfig
from .checkpoint import epoch_progress, peek_checkpoint, saved_step
from .checkpoint_io import remove_stale_partials
from .distributed import ended_by_a_failed_process
from .errors import UserError, in_one_line
from .overrides import recorded_config_source, the_jobs_hydra_settings
from .run_dir_guard import keep_the_run_folder
from .run_dirs import check_weights_path, entry_point, holds_a_run, refuse_reused_run_dir, resume_command
from .runlog import say
from .validation import validate_config


def start_run(
    cfg: DictConfig, resume_from: str | None = None
) -> tuple[Path, pl.LightningDataModule, pl.Trainer]:
    """The run directory, data and trainer of a new or resumed run, after checking the config; the
    global seed is set first, so data and model are built from it."""
    # Absolute, as Hydra's own run folders are: a relative paths.output_dir named in the closing line
    # and the resume command worked only from the folder the run started in.
    run_dir = Path(cfg.paths.output_dir).absolute()
    # Also checked before Hydra starts, when hydra.run.dir is on the command line.
    refuse_reused_run_dir(run_dir, resuming=bool(resume_from))
    validate_config(cfg)
    if resume_from:
        check_weights_path(resume_from)  # before the trainer, whose first lines would come before it
    builders.build_optimization(cfg)  # its settings checked before the data and trainer are built
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = builders.build_datamodule(cfg)
    trainer = builders.build_trainer(cfg, resumed_step=saved_step(resume_from) if resume_from else None)
    if trainer.is_global_zero:
        # A killed run's half-written files, in the folder it resumes (or restarts, when it was killed
        # before its first checkpoint).
        remove_stale_partials(run_dir / "checkpoints")
    builders.scale_learning_rate(cfg, trainer)
    return run_dir, datamodule, trainer


# What BatchNorm raises for a training batch with one value per channel (one image at 1x1).
_ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The file the best-by-validation callback kept, or None when there is none: fast_dev_run, a
    run that never validated (trainer.limit_val_batches=0, or a step or time limit reached before the
    first validation), or callbacks.model_checkpoint=null. None tests the weights in memory."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    folder = getattr(callback, "dirpath", None)
    if path and folder and not Path(path).resolve().is_relative_to(Path(folder).resolve()):
        # Continued from another run's checkpoint into a new folder, Lightning keeps that run's best
        # path until this one validates: another run's file, or one gone (a copied last.ckpt), which
        # the test then read or failed on with a traceback. This run never validated.
        return None
    return path or None


def _entry_point(cfg: DictConfig) -> str:
    # The script Hydra ran (train, finetune), not task_name, which an experiment file may set to name
    # its runs' folder, nor the config's name, which --config-name may make the user's own.
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return entry_point(HydraConfig.get()) or cfg.get("task_name", "train")
    return cfg.get("task_name", "train")


@contextlib.contextmanager
def stopped_by_a_signal(
    cfg: DictConfig, trainer: pl.Trainer, run_dir: Path, testing: bool = False
) -> Iterator[None]:
    """A run stopped by SIGTERM or Ctrl-C ends with the shell's status for that signal and a line on how
    to go on. Lightning ends it on SIGTERM with SystemExit and no code, a success to a shell or
    scheduler, having saved last.ckpt at the step's end; on Ctrl-C, after its graceful shutdown, with
    exit(1), a failure, having saved nothing (the key may come in the middle of a step)."""
    try:
        yield
    except SIGTERMException:
        # No checkpoint to resume from with checkpointing off (trainer.enable_checkpointing=false).
        way_on = "no checkpoint was saved"
        if holds_a_run(run_dir):
            way_on = f"resume with: {_resume_command(cfg, run_dir)}"
        _say_on_the_first_process(trainer, f"stopped by SIGTERM at step {trainer.global_step}; {way_on}")
        sys.exit(128 + signal.SIGTERM)
    except SystemExit as stop:
        if stop.code != 1 or not isinstance(stop.__context__, KeyboardInterrupt):
            raise
        # Stopped while testing, a run is as unfinished as one stopped while training (no
        # metrics.json): its resume tests it, as SIGTERM's line says.
        way_on = " while testing" if testing else ""
        if holds_a_run(run_dir):
            way_on += f"; resume from its last checkpoint with: {_resume_command(cfg, run_dir)}"
        elif not testing:
            way_on += "; no checkpoint was saved yet"
        _say_on_the_first_process(trainer, f"interrupted at step {trainer.global_step}{way_on}")
        sys.exit(128 + signal.SIGINT)


def _resume_command(cfg: DictConfig, run_dir: Path) -> str:
    """The command that resumes this run: with the flags that chose its config (--config-dir DIR),
    which a resume needs again, from the job's own settings (a run may keep no record of them)."""
    hydra = the_jobs_hydra_settings()
    source = recorded_config_source(hydra) if hydra is not None else None
    return resume_command(run_dir, _entry_point(cfg), source)


def _say_on_the_first_process(trainer: pl.Trainer, line: str) -> None:
    if trainer.is_global_zero:
        say(line, stream=sys.stderr, level=logging.WARNING)


def _resumed_into_an_ended_epoch(trainer: pl.Trainer, checkpoint: dict[str, Any]) -> bool:
    """Whether `checkpoint` was written in an epoch's end hooks (epoch processed, not yet completed)
    and this run is step-based, the case Lightning restarts by running the epoch's end once more."""
    progress = epoch_progress(checkpoint)
    processed, completed = progress.get("processed"), progress.get("completed")
    return (
        trainer.max_steps != -1
        and isinstance(processed, int)
        and isinstance(completed, int)
        and completed == processed - 1
    )


_EVENT_FILES = "events.out.tfevents.*"


@contextlib.contextmanager
def no_event_file_left_by_a_refused_resume(
    record: RecordResolvedConfig | None, trainer: pl.Trainer
) -> Iterator[None]:
    """A resume refused inside fit (a one-cycle horizon is known only there) comes after Lightning
    has opened the TensorBoard writer, whose new event file held only a purge mark at the checkpoint's
    step: TensorBoard then hid what the interrupted run had logged after it. A fit that ends before
    it accepted the resume (`record` of it not yet saved) leaves no such file; the run's own stay."""
    folders = [Path(logger.log_dir) for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
    there = {folder: set(folder.glob(_EVENT_FILES)) if folder.is_dir() else None for folder in folders}
    try:
        yield
    except BaseException:
        if record is not None and not record.saved and trainer.is_global_zero:
            for folder, kept in there.items():
                # The writer is closed by now: Lightning finalizes its loggers on any exception in fit.
                for path in set(folder.glob(_EVENT_FILES)) - (kept or set()):
                    path.unlink(missing_ok=True)
                if kept is None:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # made by the writer; left if anything else is in it
        raise


@contextlib.contextmanager
def kept_once_it_trained(trainer: pl.Trainer, resumed_step: int = 0) -> Iterator[None]:
    """A run stopped after it took a step of its own (a NaN loss, a full disk) keeps its folder and
    what it logged; one refused before is removed (run_dir_guard.no_folder_left_by_a_refusal)."""
    try:
        yield
    finally:
        if trainer.global_step > resumed_step:
            keep_the_run_folder()


def fit_test_and_record(
    cfg: DictConfig,
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    run_dir: Path,
    resume_from: str | None,
) -> dict[str, float]:
    """Fit (resuming from `resume_from` when given), test the best checkpoint, write metrics.json and
    the HPARAMS summary on rank 0, and print the closing line that names the run and its accuracy."""
    if resume_from:
        saved = peek_checkpoint(resume_from)
        resumed_step = saved.get("global_step") or 0
        # Before fit: Lightning writes to the run's folder (its logger) before any hook could refuse.
        module.refuse_a_changed_optimization(resume_from, saved)
        if trainer.is_global_zero and _resumed_into_an_ended_epoch(trainer, saved):
            say(
                "note: Lightning 2.6 resumes a run with trainer.max_steps from a checkpoint written at an "
                "epoch's end by ending that epoch again: the run goes on, but its later epochs take the "
                "data order of the epoch after theirs, so it will not match an uninterrupted run exactly"
            )
        # A one-cycle horizon is known, and checked, only inside fit: the run's recorded settings are
        # replaced once it has started.
        record = RecordResolvedConfig(cfg, run_dir)
        trainer.callbacks.append(record)
    else:
        record, resumed_step = None, 0
        if trainer.is_global_zero:
            outputs.save_resolved_config(cfg, run_dir, model=module.hparams.get("model"))
    try:
        with (
            warnings.catch_warnings(),
            stopped_by_a_signal(cfg, trainer, run_dir),
            kept_once_it_trained(trainer, resumed_step),
            no_event_file_left_by_a_refused_resume(record, trainer),
            ended_by_a_failed_process(trainer),
        ):
            if resume_from:
                # Lightning warns of a checkpoint folder with files in it; a resumed run's own are why.
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            if trainer.limit_val_batches == 0:
                # Its advice (log val/loss in the module) is wrong here: no validation runs, and the
                # final test says it reads the final weights.
                no_monitored_key = r"`ModelCheckpoint\(monitor=.* could not find the monitored key"
                warnings.filterwarnings("ignore", message=no_monitored_key)
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        # Settings Lightning can judge only once it sees the data or the logged metrics, in a
        # sentence of its own. Other ValueErrors and RuntimeErrors are not the user's, and keep
        # their traceback.
        if isinstance(error, ValueError) and str(error).startswith(_ONE_VALUE_PER_CHANNEL):
            shape = str(error).rpartition("input size ")[2].strip()
            raise UserError(
                f"a BatchNorm layer got one value per channel (a training batch of one image at 1x1: "
                f"{shape}); set data.batch_size to 2 or more, so that no training batch holds one "
                "image, or give larger images (data.image_size)"
            ) from None
        if isinstance(error, ValueError) and "val_check_interval" not in str(error):
            raise
        if type(error) is RuntimeError and not str(error).startswith("Early stopping conditioned on metric"):
            raise
        reason = in_one_line(error)
        raise UserError(f"Lightning rejects the trainer settings: {reason}") from None
    metrics: dict[str, float] = {}
    if cfg.test:
        best = best_checkpoint(trainer)
        if best is None and not cfg.trainer.fast_dev_run and trainer.is_global_zero:
            note = "no best checkpoint (no validation ran, or none kept): testing the final weights"
            say(note)
        with stopped_by_a_signal(cfg, trainer, run_dir, testing=True), ended_by_a_failed_process(trainer):
            trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        metrics = outputs.scalar_metrics(trainer.callback_metrics)
        metrics = {name: value for name, value in metrics.items() if name.startswith("test/")}
    if trainer.is_global_zero:
        outputs.write_json_atomically(run_dir / "metrics.json", metrics)
        outputs.log_final_hparams(trainer, cfg, metrics, model=module.hparams.get("model"))
        accuracy = f"test/acc={metrics['test/acc']:.4f}" if "test/acc" in metrics else "no test run"
        say(f"run directory: {run_dir}  {accuracy}")
    return metrics
