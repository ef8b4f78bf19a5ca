"""Turn a composed config into the objects Lightning runs: data, module, callbacks, loggers, trainer."""

from __future__ import annotations

import inspect
import os
import sys
import typing
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ..data import DataSpec, ImageDataModule
from ..models import UnknownModelError, list_models, model_entrypoint
from ..models._input_size import smallest_image_size, wants_small_input, why_not_at
from .callbacks import EpochSummary, TensorBoardImages, TerminalProgressBar
from .checkpoint_io import AtomicCheckpointIO
from .distributed import keep_collectives_out_of_the_sigterm_handler, use_job_scoped_child_commands
from .errors import UserError, in_one_line
from .fused import resolve_fused
from .host import keep_freed_cpu_memory, skip_nvml_probe_without_gpu
from .loggers import ResumableCSVLogger
from .module import ImageClassifier
from .profiling import NoProfiler
from .runlog import say
from .validation import is_boolean, is_integer, is_number

PROGRESS_REDRAWS_PER_SECOND = 10


def to_plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


# What a class raises when the arguments a config gives it are wrong, or the class does not exist.
_REFUSALS = (TypeError, ValueError, ImportError, MisconfigurationException)


def instantiate_section(node: Any, what: str, **kwargs: Any) -> Any:
    """instantiate() for a config section a user edits (data, a callback, a logger, the trainer): a
    target that does not exist or refuses its arguments is one line saying so, prefixed by `what`.
    A UserError the target raises itself stays wrapped; errors.user_errors unwraps it."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, _REFUSALS):
            raise UserError(f"{what}: {' '.join(str(cause).split())}") from None
        raise


# Annotations whose values a config can check: a bool is no number, and an int is a float.
_PLAIN_TYPES = {
    bool: (is_boolean, "true or false"),
    int: (is_integer, "an integer"),
    float: (is_number, "a number"),
}


def _type_hints(func: Any) -> dict:
    try:
        return typing.get_type_hints(func.__init__ if inspect.isclass(func) else func)
    except Exception:  # an annotation naming what the module cannot resolve: nothing to check
        return {}


def check_arguments(func: Any, arguments: dict, key: str) -> None:
    """Arguments a config section passes that `func` does not take (a +key=... added by hand, or a key
    of another optimizer) stop here in one line naming those it takes, not at the first call; so does
    a value of another type than a plain bool, int or float annotation asks for."""
    parameters = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(arguments) - set(parameters))
        if unknown:
            takes = [name for name in parameters if name not in ("self", "params", "optimizer")]
            raise UserError(
                f"{key}.{unknown[0]}: {getattr(func, '__name__', func)} takes no such argument "
                f"(it takes {', '.join(takes)})"
            )
    hints = _type_hints(func)
    for name, value in arguments.items():
        if value is None or hints.get(name) not in _PLAIN_TYPES:
            continue
        fits, expected = _PLAIN_TYPES[hints[name]]
        if not fits(value):
            raise UserError(f"{key}.{name} must be {expected}, got {value!r}; fix it on the command line")


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    datamodule = instantiate_section(cfg.data, "data")
    # Read now, before the trainer prints its lines: a set that is missing or damaged is the one line
    # the command prints.
    datamodule.setup("fit")
    return datamodule


def model_config(cfg: DictConfig, spec: DataSpec) -> dict:
    """The model's name and constructor arguments, with the data filling whatever the config left null."""
    model = to_plain(cfg.model)
    if model.get("name") not in list_models():
        raise UserError(f"unknown model {model.get('name')!r}; known models: {', '.join(list_models())}")
    if model.get("num_classes") is None:
        model["num_classes"] = spec.num_classes
    elif model["num_classes"] != spec.num_classes:
        # Fewer outputs than classes crashes the loss at the first out-of-range label; more leaves
        # outputs no label trains and that the metrics, sized by the data, cannot count.
        raise UserError(
            f"model.num_classes={model['num_classes']} but the data has {spec.num_classes} classes; leave "
            "model.num_classes unset (the data sets it), or fine-tune a trained network with finetune.py"
        )
    if model.get("in_chans") is None:
        model["in_chans"] = spec.channels
    elif model["in_chans"] != spec.channels:
        # The first convolution would meet images of another depth at the first step.
        raise UserError(
            f"model.in_chans={model['in_chans']} but the data's images have {spec.channels} channel(s); "
            "leave model.in_chans unset (the data sets it)"
        )
    if model.get("small_input") is None:
        model["small_input"] = wants_small_input(spec.image_size)
    check_arguments(model_entrypoint(model["name"]), {k: v for k, v in model.items() if k != "name"}, "model")
    return model


def check_image_size(model: dict, image_size: int) -> None:
    """A network whose layers shrink the data's images to nothing stops here in one line naming the
    smallest size it takes, not with a traceback at the first training step."""
    fits = smallest_image_size(model, image_size)
    if fits is None:
        return
    reason = why_not_at(model, image_size)
    stem = " (or the small-input stem, model.small_input=true)" if model.get("small_input") is False else ""
    raise UserError(
        f"{model['name']} cannot take {image_size} px images, its layers shrink them to nothing ({reason}); "
        f"it needs at least {fits} px: set data.image_size={fits} or more{stem}"
    )


def _refusal(what: str, factory: Any, error: Exception) -> UserError:
    reason = in_one_line(error)
    return UserError(
        f"{what}: {factory.func.__name__} refuses these settings ({reason}); fix them on the command line"
    )


def try_optimizer_and_scheduler(optimizer: Any, scheduler: Any | None) -> None:
    """Torch checks an optimizer's and a schedule's values (eps >= 0, betas below 1, nesterov with
    momentum, pct_start in [0, 1]) only when it builds them, inside fit; built here once on a
    throwaway parameter, a bad value is one line before any work."""
    try:
        trial = optimizer(params=[torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: fused=true with foreach=true
        raise _refusal("optimizer", optimizer, error) from None
    if scheduler is None:
        return
    # OneCycle's step count is the run's, known only once training starts; any will do for a trial.
    extra = {"total_steps": 100} if scheduler.keywords.get("total_steps", 0) is None else {}
    try:
        scheduler(optimizer=trial, **extra)
    except (TypeError, ValueError) as error:
        raise _refusal("scheduler.factory", scheduler, error) from None


def build_optimization(cfg: DictConfig) -> tuple[Any, Any | None]:
    """The optimizer and scheduler factories the config describes, their settings checked."""
    optimizer = resolve_fused(instantiate(cfg.optimizer), cfg.trainer)
    check_arguments(optimizer.func, optimizer.keywords, "optimizer")
    scheduler = instantiate(cfg.scheduler.factory) if cfg.scheduler.factory is not None else None
    if scheduler is not None:
        check_arguments(scheduler.func, scheduler.keywords, "scheduler.factory")
    try_optimizer_and_scheduler(optimizer, scheduler)
    return optimizer, scheduler


def recorded_data_config(data: DictConfig) -> dict:
    """The data section a checkpoint keeps, for evaluate.py and resumes to rebuild the data from. A
    relative data.root is relative to where the run started: evaluate.py started elsewhere found no
    folder there, or another folder of that name."""
    config = to_plain(data)
    if isinstance(config.get("root"), str):
        config["root"] = os.path.abspath(config["root"])
    return config


def build_module(
    cfg: DictConfig,
    spec: DataSpec,
    module_class: type[ImageClassifier] = ImageClassifier,
    model: dict | None = None,
    **extra: Any,
) -> ImageClassifier:
    """The run's LightningModule. Fine-tuning passes its own `module_class`, the `model` description
    it rebuilt from a source (instead of the config's model section) and extra arguments (`source`)."""
    optimizer, scheduler = build_optimization(cfg)
    try:
        model = model if model is not None else model_config(cfg, spec)
        check_image_size(model, spec.image_size)
        return module_class(
            model=model,
            data=spec.to_dict(),
            data_config=recorded_data_config(cfg.data),
            optimizer=optimizer,
            scheduler=scheduler,
            scheduler_interval=cfg.scheduler.interval,
            label_smoothing=cfg.label_smoothing,
            channels_last=cfg.channels_last,
            compile=cfg.compile,
            **extra,
        )
    except UnknownModelError as error:
        raise UserError(str(error)) from None


def scale_learning_rate(cfg: DictConfig, trainer: pl.Trainer) -> None:
    """With `scale_lr=true`, optimizer.lr is the rate for one process's batch and grows linearly with
    the global batch (processes x gradient accumulation), the linear scaling rule of Goyal et al. 2017."""
    if not cfg.get("scale_lr"):
        return
    factor = trainer.world_size * trainer.accumulate_grad_batches
    given = float(cfg.optimizer.lr)
    cfg.optimizer.lr = given * factor
    if trainer.is_global_zero and factor != 1:
        # The record of the command (.hydra/) keeps the rate as given; the run uses this one.
        say(
            f"scale_lr: optimizer.lr {given:g} x {trainer.world_size} processes x "
            f"{trainer.accumulate_grad_batches} accumulated batches = {cfg.optimizer.lr:g}"
        )


def _trainer_switch(cfg: DictConfig, key: str) -> bool:
    """A Trainer display switch (enable_progress_bar, enable_model_summary) as the config sets it, or,
    left unset, on at a terminal and off in a file or CI, where a redrawn bar and a table are noise."""
    given = OmegaConf.select(cfg, f"trainer.{key}")
    return sys.stdout.isatty() if given is None else bool(given)


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    callbacks = [
        instantiate_section(c, f"callbacks.{name}") for name, c in cfg.callbacks.items() if c is not None
    ]
    if OmegaConf.select(cfg, "trainer.enable_checkpointing") is False:
        # Lightning refuses the switch beside a checkpoint callback; a Lightning user means: none.
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    if _trainer_switch(cfg, "enable_progress_bar"):
        # Lightning's default redraws the bar 100 times a second from a thread that shares the
        # interpreter with training; ten is as much as a person can read.
        callbacks.append(TerminalProgressBar(refresh_rate=PROGRESS_REDRAWS_PER_SECOND))
        callbacks.append(EpochSummary(console=False))
    else:
        callbacks.append(EpochSummary())
    return callbacks


def _builds(node: Any, kind: type) -> bool:
    """Whether a logger section builds a `kind` of logger, read from its target without building it
    (a bad target is left for instantiate_section to report)."""
    try:
        return issubclass(get_class(node._target_), kind)
    except Exception:
        return False


def _holds_events(folder: str) -> bool:
    return any(Path(folder).glob("**/events.out.tfevents.*"))


def build_loggers(cfg: DictConfig, resumed_step: int | None = None) -> list:
    """The configured loggers. A resumed run's TensorBoard and CSV writers drop what the interrupted
    run logged from `resumed_step` on (TensorBoard's purge_step): the resumed run logs those steps again."""
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra = {}
        if _builds(node, ResumableCSVLogger) and resumed_step is not None:
            extra["purge_step"] = resumed_step
        if _builds(node, TensorBoardLogger):
            if resumed_step is not None:
                extra["purge_step"] = resumed_step
            elif _holds_events(cfg.paths.output_dir):
                # A new run in the folder of one killed before its first checkpoint (nothing to resume):
                # the earlier run's points are dropped, not drawn beside this run's.
                extra["purge_step"] = 0
        logger = instantiate_section(node, f"logger.{name}", **extra)
        try:
            # A logger may hold settings back for the writer it opens at its first write
            # (TensorBoardLogger passes its extra keys to SummaryWriter); checked now, a bad one stops
            # the run before it starts instead of failing it at its first logged value.
            if resumed_step is not None and isinstance(logger, TensorBoardLogger):
                # Not opened: the writer would put its purge mark in the run's folder before
                # fit_test_and_record checks the checkpoint against this run's settings.
                _check_writer_settings(node)
            else:
                logger.experiment  # noqa: B018
        except _REFUSALS as error:
            raise UserError(f"logger.{name}: {' '.join(str(error).split())}") from None
        loggers.append(logger)
    return loggers


def _tell_a_new_tensorboard_run(callbacks: list[pl.Callback], loggers: list) -> None:
    """Tells TensorBoardImages that a resumed run's TensorBoard folder holds no events yet (a finished
    run's checkpoint continued in a folder of its own). Otherwise it takes a run past step 0 for one
    resumed in place, whose first step logged the grid of inputs, and logs none."""
    folders = [logger.log_dir for logger in loggers if isinstance(logger, TensorBoardLogger)]
    if folders and not any(_holds_events(folder) for folder in folders):
        for callback in callbacks:
            if isinstance(callback, TensorBoardImages):
                callback.new_tensorboard_run = True


def _check_writer_settings(node: Any) -> None:
    """The keys of a TensorBoardLogger section that it passes on to SummaryWriter, bound to the
    writer's signature as opening it would."""
    from torch.utils.tensorboard import SummaryWriter

    own = inspect.signature(TensorBoardLogger).parameters
    passed_on = {key: value for key, value in node.items() if key != "_target_" and key not in own}
    try:
        inspect.signature(SummaryWriter).bind_partial(**passed_on)
    except TypeError as error:
        raise TypeError(f"SummaryWriter.__init__() {error}") from None


def prepare_host(cfg: DictConfig) -> None:
    """Process-wide settings for fast host-side steps (zoo.training.host)."""
    skip_nvml_probe_without_gpu()
    if cfg.get("cpu_memory_cache"):
        keep_freed_cpu_memory()


def build_trainer(cfg: DictConfig, resumed_step: int | None = None, **overrides: Any) -> pl.Trainer:
    """The Trainer a config describes; `resumed_step`: the step of the checkpoint a run resumes from."""
    use_job_scoped_child_commands()
    if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={cfg.trainer.accelerator} asks for a GPU, but PyTorch sees none; use "
            "trainer=cpu, or the default trainer, which uses a GPU only when there is one"
        )
    on_cpu = str(cfg.trainer.get("accelerator")) == "cpu" or not torch.cuda.is_available()
    if cfg.trainer.get("sync_batchnorm") is True and on_cpu:
        # Otherwise each process fails at its first step, with a traceback per process.
        raise UserError(
            "trainer.sync_batchnorm=true needs GPUs (PyTorch's SyncBatchNorm runs on CUDA only); "
            "leave it false for CPU processes (trainer=ddp_cpu)"
        )
    prepare_host(cfg)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg, resumed_step)
    if resumed_step is not None:
        _tell_a_new_tensorboard_run(callbacks, loggers)
    if not loggers:
        # Learning rates are logged to a logger; with none configured there is nowhere to send them.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if cfg.trainer.get("profiler") is None:
        overrides.setdefault("profiler", NoProfiler())
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        # Without it Lightning adds a checkpoint callback of its own, whose epoch=E-step=S.ckpt went
        # into the logger's folder (tensorboard/checkpoints/) of a run that had turned checkpoints off.
        overrides.setdefault("enable_checkpointing", False)
    # Trainer.__init__ only checks its arguments, against each other and the machine (devices,
    # strategy, accelerator, unknown names), and says what is wrong in a sentence.
    trainer = instantiate_section(
        cfg.trainer,
        "Lightning rejects the trainer settings",
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=_trainer_switch(cfg, "enable_progress_bar"),
        enable_model_summary=_trainer_switch(cfg, "enable_model_summary"),
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
        **overrides,
    )
    keep_collectives_out_of_the_sigterm_handler(trainer)
    return trainer
