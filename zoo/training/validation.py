"""Config values checked before any work starts: a typo costs a second, not a crashed run."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..data.on_device import ON_DEVICE_CHOICES, is_on_device_choice
from .errors import UserError

_ABSENT = object()
PRECISIONS = {
    "64",
    "64-true",
    "32",
    "32-true",
    "16",
    "16-mixed",
    "bf16",
    "bf16-mixed",
    "16-true",
    "bf16-true",
}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_integer(value: Any) -> bool:
    return is_integer(value) and value >= 1


def _milestones(value: Any) -> bool:
    return isinstance(value, (list, tuple, ListConfig)) and all(_positive_integer(v) for v in value)


def _seed(value: Any) -> bool:
    """The range numpy's generator takes (Lightning's seed_everything and scikit-learn's splits)."""
    return is_integer(value) and 0 <= value < 2**32


def is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


# Lightning's max_time as a string: days, hours, minutes, seconds.
_DURATION = re.compile(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}")


def duration_seconds(value: Any) -> int | None:
    """A max_time duration (DD:HH:MM:SS) in seconds; None for anything else."""
    if not isinstance(value, str) or _DURATION.fullmatch(value) is None:
        return None
    days, hours, minutes, seconds = (int(part) for part in value.split(":"))
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _batch_limit(value: Any) -> bool:
    """Lightning's limit_*_batches: a count of batches, or a float fraction of them."""
    if value is None or isinstance(value, float):
        return value is None or 0 <= value <= 1
    return is_integer(value) and value >= 0


def _limit(value: Any) -> bool:
    """Lightning's run-length limits: a count, or -1 for none."""
    return _positive_integer(value) or value == -1


# What the training module logs that a callback can watch (val/acc_top5 with more than 5 classes).
MONITORED = ("val/loss", "val/acc", "val/acc_top5", "train/loss", "train/acc")

# (dotted key, test, what the value must be). Keys a config leaves out are not checked.
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    # First: data.seed follows ${seed}, and a bad seed is to be named as the key the user typed.
    ("seed", _seed, "an integer from 0 to 4294967295"),
    ("optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("optimizer.weight_decay", lambda v: is_number(v) and v >= 0, "a number >= 0"),
    ("optimizer.momentum", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    # Checked here too, not only when the optimizer is built: every point of a -m sweep before the first.
    ("optimizer.fused", lambda v: v is None or is_boolean(v) or v == "auto", "auto, true or false"),
    ("trainer.max_epochs", _limit, "an integer >= 1, or -1 (no limit)"),
    ("trainer.max_steps", _limit, "an integer >= 1, or -1 (no limit)"),
    # configs/scheduler/cosine.yaml spans ${trainer.max_epochs}, which may be -1 (no limit).
    (
        "scheduler.factory.T_max",
        _positive_integer,
        "an integer >= 1 (it follows trainer.max_epochs unless set)",
    ),
    ("trainer.accumulate_grad_batches", _positive_integer, "an integer >= 1"),
    (
        "trainer.check_val_every_n_epoch",
        lambda v: v is None or _positive_integer(v),
        "an integer >= 1 (or null, with validation every trainer.val_check_interval steps)",
    ),
    # Lightning skips clipping for a value <= 0, so a negative one would silently clip nothing.
    ("trainer.gradient_clip_val", lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
    ("scheduler.factory.step_size", _positive_integer, "an integer >= 1"),
    # MultiStepLR takes any list, and a milestone that is not an epoch number is never reached.
    (
        "scheduler.factory.milestones",
        _milestones,
        "a list of integers >= 1 (epochs; steps with scheduler.interval=step)",
    ),
    # Used only at a later step (gamma at the first decay, eta_min after the first epoch), so a
    # trial build of the schedule cannot catch them.
    ("scheduler.factory.gamma", lambda v: is_number(v) and v > 0, "a number > 0"),
    ("scheduler.factory.eta_min", lambda v: is_number(v) and v >= 0, "a number >= 0"),
    ("scheduler.factory.max_lr", lambda v: v is None or (is_number(v) and v > 0), "a number > 0"),
    (
        "trainer.val_check_interval",
        lambda v: v is None or _positive_integer(v) or (isinstance(v, float) and 0 < v <= 1),
        "null (once an epoch), a fraction of an epoch in (0, 1], or a number of steps >= 1",
    ),
    (
        "trainer.max_time",
        # Lightning also takes a dict of timedelta's fields, but only a plain dict, which a config's
        # mapping is not when it reaches the Trainer.
        lambda v: v is None or (isinstance(v, str) and _DURATION.fullmatch(v) is not None),
        "null or a duration DD:HH:MM:SS (00:02:00:00 is two hours)",
    ),
    *(
        (
            f"trainer.limit_{stage}_batches",
            _batch_limit,
            "null (all), an integer >= 0 (batches) or a fraction in [0.0, 1.0]",
        )
        for stage in ("train", "val", "test")
    ),
    ("trainer.log_every_n_steps", lambda v: is_integer(v) and v >= 0, "an integer >= 0"),
    # Lightning passes these on unchecked: benchmark=maybe failed inside torch with a traceback, and
    # deterministic=maybe turned cuDNN's benchmark off without turning deterministic algorithms on.
    ("trainer.benchmark", lambda v: v is None or is_boolean(v), "null (Lightning's choice), true or false"),
    ("trainer.deterministic", lambda v: v is None or is_boolean(v) or v == "warn", "true, false or warn"),
    ("trainer.min_epochs", lambda v: v is None or (is_integer(v) and v >= 0), "null or an integer >= 0"),
    ("trainer.min_steps", lambda v: v is None or (is_integer(v) and v >= 0), "null or an integer >= 0"),
    # Lightning refuses it only after the data is read, with a message about log_every_n_steps; the
    # run's figures and checkpoints need the logging it turns off.
    (
        "trainer.barebones",
        lambda v: v is None or v is False,
        "false (it turns off the logging the run's checkpoints and figures need; "
        "benchmarks/overhead.py times the training loop's overhead)",
    ),
    ("trainer.precision", lambda v: str(v) in PRECISIONS, f"one of {', '.join(sorted(PRECISIONS))}"),
    ("data.batch_size", _positive_integer, "an integer >= 1"),
    ("data.eval_batch_size", _positive_integer, "an integer >= 1"),
    ("data.image_size", lambda v: v is None or (is_integer(v) and v >= 8), "an integer >= 8"),
    ("data.on_device", is_on_device_choice, ON_DEVICE_CHOICES),
    ("data.num_workers", lambda v: v is None or (is_integer(v) and v >= 0), "an integer >= 0"),
    ("data.val_fraction", lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("data.test_fraction", lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("data.eval_fraction", lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    ("data.split_seed", _seed, "an integer from 0 to 4294967295"),
    ("data.seed", _seed, "an integer from 0 to 4294967295"),
    # Per-channel mean and std come from these images; none gives NaN and a NaN loss at step 1.
    ("data.stats_samples", _positive_integer, "an integer >= 1"),
    # Switches of the data modules: a string such as "no" would be taken as true.
    *(
        (f"data.{key}", is_boolean, "true or false")
        for key in ("download", "verify_checksums", "skip_bad_images")
    ),
    # configs/data/synthetic.yaml
    ("data.num_samples", _positive_integer, "an integer >= 1"),
    ("data.num_classes", lambda v: is_integer(v) and v >= 2, "an integer >= 2"),
    ("data.channels", lambda v: v is None or _positive_integer(v), "an integer >= 1"),
    ("data.data_seed", _seed, "an integer from 0 to 4294967295"),
    # configs/data/imagefolder.yaml: a text such as "abc" had the length of three values.
    (
        "data.mean",
        lambda v: v is None or _numbers(v, lambda x: True),
        "null or a list of numbers, one per channel",
    ),
    (
        "data.std",
        lambda v: v is None or _numbers(v, lambda x: x > 0),
        "null or a list of numbers > 0, one per channel",
    ),
    ("data.mixup_alpha", lambda v: is_number(v) and v >= 0, "a number >= 0 (0 turns mixup off)"),
    ("data.cutmix_alpha", lambda v: is_number(v) and v >= 0, "a number >= 0 (0 turns cutmix off)"),
    ("label_smoothing", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("model.num_classes", lambda v: v is None or (is_integer(v) and v >= 2), "an integer >= 2"),
    ("model.in_chans", lambda v: v is None or _positive_integer(v), "an integer >= 1"),
    (
        "model.small_input",
        lambda v: v is None or is_boolean(v),
        "null (chosen from the image size), true or false",
    ),
    ("model.dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("model.aux_dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("callbacks.last_checkpoint.every_n_train_steps", _positive_integer, "an integer >= 1"),
    # A monitor that names no logged figure was found out only after a whole epoch of training.
    *(
        (f"callbacks.{name}.monitor", lambda v: v in MONITORED, f"one of {', '.join(MONITORED)}")
        for name in ("model_checkpoint", "early_stopping")
    ),
    # EarlyStopping compares these with no check of its own: a string was taken, and never stopped.
    ("callbacks.early_stopping.patience", lambda v: is_integer(v) and v >= 0, "an integer >= 0"),
    ("callbacks.early_stopping.min_delta", is_number, "a number"),
    (
        "callbacks.nonfinite_loss_guard.check_every_n_steps",
        lambda v: is_integer(v) and v >= 0,
        "an integer >= 0",
    ),
    (
        "callbacks.model_checkpoint.save_top_k",
        lambda v: is_integer(v) and v >= -1,
        "an integer >= 0, or -1 (keep every checkpoint)",
    ),
    # SummaryWriter's own settings, which its writer thread would otherwise trip over at a flush.
    ("logger.tensorboard.flush_secs", lambda v: is_number(v) and v > 0, "a number of seconds > 0"),
    ("logger.tensorboard.max_queue", _positive_integer, "an integer >= 1"),
    # Hydra reads ckpt_path=123 as a number and ckpt_path=true as a bool; a path starting ./ stays text.
    *(
        (
            key,
            lambda v: v is None or isinstance(v, str),
            "a path to a checkpoint file (for a file named 123: ./123)",
        )
        for key in ("ckpt_path", "resume_ckpt")
    ),
    # evaluate.py's own settings (configs/evaluate.yaml); train and finetune configs have no such keys.
    ("split", lambda v: v in ("test", "val"), "test or val"),
    ("accelerator", lambda v: v in ("auto", "cpu", "gpu"), "auto, cpu or gpu"),
    ("batch_size", lambda v: v is None or _positive_integer(v), "an integer >= 1"),
    ("tensorboard", is_boolean, "true or false"),
    # The entry points' switches: anything but true or false would be taken as one or the other.
    *(
        (key, is_boolean, "true or false")
        for key in ("test", "channels_last", "compile", "cpu_memory_cache", "scale_lr")
    ),
]


_MIXED_PRECISIONS = ("16-mixed", "bf16-mixed", "16", "bf16")


def clips_under_mixed_precision(trainer: DictConfig) -> bool:
    clip = trainer.get("gradient_clip_val")
    return str(trainer.get("precision")) in _MIXED_PRECISIONS and bool(clip) and float(clip) > 0


def refuse_fused_clipping_under_mixed_precision(trainer: DictConfig) -> None:
    """optimizer.fused=true where Lightning would fail at the first step (zoo.training.fused)."""
    if clips_under_mixed_precision(trainer):
        raise UserError(
            f"optimizer.fused=true cannot go with trainer.gradient_clip_val under trainer.precision="
            f"{trainer.precision}: Lightning's mixed precision does not clip a fused optimizer's gradients; "
            "set optimizer.fused=auto (fused only where it can be) or false"
        )


def _numbers(values: Any, test: Callable[[float], bool]) -> bool:
    return (
        isinstance(values, (list, tuple, ListConfig))
        and len(values) > 0
        and all(is_number(value) and test(value) for value in values)
    )


def validate_config(cfg: DictConfig) -> None:
    """Any entry point's config: rules whose key the config lacks are skipped, so evaluate.py's
    `data=` (when given) meets the same data rules as training."""
    limits = {key: OmegaConf.select(cfg, f"trainer.{key}") for key in ("max_epochs", "max_steps", "max_time")}
    if limits["max_epochs"] == -1 and limits["max_steps"] in (-1, None) and limits["max_time"] is None:
        raise UserError(
            "trainer.max_epochs=-1 with no trainer.max_steps or trainer.max_time would train forever; "
            "set one of them"
        )
    for key, test, expected in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not test(value):
            raise UserError(
                f"{key} must be {expected}, got {value!r}; fix it on the command line ({key}=...)"
            )
    _refuse_minimum_above_maximum(cfg)
    _refuse_early_stopping_without_validation(cfg)
    if OmegaConf.select(cfg, "optimizer.fused") is True and isinstance(cfg.get("trainer"), DictConfig):
        refuse_fused_clipping_under_mixed_precision(cfg.trainer)
    held_out = [OmegaConf.select(cfg, f"data.{key}", default=0) for key in ("val_fraction", "test_fraction")]
    if sum(held_out) >= 1:
        raise UserError(
            f"data.val_fraction + data.test_fraction = {sum(held_out):g} leaves no training images; "
            "keep their sum below 1"
        )


def _refuse_minimum_above_maximum(cfg: DictConfig) -> None:
    # Lightning lets the maximum win without a word: trainer.min_epochs=5 with max_epochs=3 trained 3.
    for unit in ("epochs", "steps"):
        least = OmegaConf.select(cfg, f"trainer.min_{unit}")
        most = OmegaConf.select(cfg, f"trainer.max_{unit}")
        if is_integer(least) and is_integer(most) and most != -1 and least > most:
            raise UserError(
                f"trainer.min_{unit}={least} is above trainer.max_{unit}={most}, which would stop the run "
                f"first; lower trainer.min_{unit} or raise trainer.max_{unit}"
            )


def _refuse_early_stopping_without_validation(cfg: DictConfig) -> None:
    # Lightning stopped such a run with an error at the end of its first epoch.
    monitor = OmegaConf.select(cfg, "callbacks.early_stopping.monitor")
    no_validation = OmegaConf.select(cfg, "trainer.limit_val_batches") == 0
    if no_validation and isinstance(monitor, str) and monitor.startswith("val/"):
        raise UserError(
            f"callbacks.early_stopping.monitor={monitor} is never computed with trainer.limit_val_batches=0 "
            "(no validation); monitor train/loss or train/acc, or drop it: callbacks.early_stopping=null"
        )
