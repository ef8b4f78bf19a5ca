"""finetune.py's LightningModule: a trained network from a source (see `weight_sources`), its head
rebuilt for the new classes and its first convolution for the new channels (see `head_surgery`).

Its checkpoints are ordinary ImageClassifier checkpoints (model, data and `source` in the hyper-
parameters), so evaluate.py and a further fine-tune read them like any other run's.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

from omegaconf import DictConfig

from ..data import DataSpec
from . import builders
from .checkpoint import load_run_checkpoint, refuse_other_data
from .errors import UserError
from .finetune_request import check_finetune_options
from .freezing import split_parameters
from .head_surgery import rebuild_head, transplant
from .module import ImageClassifier
from .weight_sources import load_source


class FineTuneClassifier(ImageClassifier):
    """An ImageClassifier whose optimizer holds the head and the backbone as two parameter groups,
    named so the learning-rate monitor logs both, the backbone's rate `backbone_lr_scale` times the
    head's. Every parameter is in the optimizer, frozen or not (see `freezing`)."""

    # Training configuration like the optimizer, not part of the model's description: set after
    # construction, so it stays out of the hyperparameters and the checkpoint loads as ImageClassifier.
    backbone_lr_scale: float = 1.0

    def parameter_groups(self) -> list[dict]:
        head, backbone = split_parameters(self.net)
        named = named_groups(self.optimizer_factory, self.backbone_lr_scale)
        return [{"params": head, **named[0]}, {"params": backbone, **named[1]}]


def named_groups(optimizer_factory, backbone_lr_scale: float) -> list[dict]:
    """The head's and the backbone's parameter groups without their parameters: the names and rates
    a resume is checked against, also before Hydra makes a run folder, where there is no network."""
    backbone_lr = base_learning_rate(optimizer_factory) * backbone_lr_scale
    return [{"name": "head"}, {"name": "backbone", "lr": backbone_lr}]


def base_learning_rate(optimizer_factory) -> float:
    """The learning rate the optimizer factory gives a group that names none (its own default if unset)."""
    lr = getattr(optimizer_factory, "keywords", {}).get("lr")
    if lr is None:
        lr = inspect.signature(optimizer_factory.func).parameters["lr"].default
    return float(lr)


def _scale_scheduler_peak(module: FineTuneClassifier) -> None:
    module.scheduler_factory = scaled_scheduler_peak(module.scheduler_factory, module.backbone_lr_scale)


def scaled_scheduler_peak(factory, backbone_lr_scale: float):
    """`factory` with one peak per group, the backbone's scaled. One-cycle style schedulers set every
    group's peak rate from one `max_lr`, which would undo the backbone's scale; they also take one
    peak per group, so give them both."""
    max_lr = getattr(factory, "keywords", {}).get("max_lr")
    if not isinstance(max_lr, (int, float)) or backbone_lr_scale == 1.0:
        return factory
    # Flat, not a partial of Hydra's partial: functools does not merge the two, and
    # configure_optimizers reads `keywords` for total_steps=None to fill in the run's step count.
    return functools.partial(
        factory.func, *factory.args, **{**factory.keywords, "max_lr": [max_lr, max_lr * backbone_lr_scale]}
    )


def build_finetune_module(cfg: DictConfig, spec: DataSpec) -> tuple[FineTuneClassifier, str]:
    """The module finetune.py trains, and one line saying where its weights came from."""
    check_finetune_options(cfg)
    if spec.num_classes < 2:
        raise UserError(f"fine-tuning needs at least 2 classes, but the new data has {spec.num_classes}")
    if cfg.get("resume_ckpt"):
        module, summary = _resumed_module(cfg, spec)
    else:
        module, summary = _transplanted_module(cfg, spec)
    module.backbone_lr_scale = float(cfg.finetune.backbone_lr_scale)
    _scale_scheduler_peak(module)
    return module, summary


def _transplanted_module(cfg: DictConfig, spec: DataSpec) -> tuple[FineTuneClassifier, str]:
    options = cfg.finetune
    source = load_source(cfg, spec)
    net, absent = source.build_net()
    kept = rebuild_head(
        net, spec.class_names, mode=options.head, reset=options.reset, source_class_names=source.class_names
    )
    # The trained filters expect inputs scaled as in their training; keep that scaling unless the
    # channels changed (then the source's per-channel figures no longer apply) or the user says not to.
    if options.normalization == "source" and source.mean and len(source.mean) == spec.channels:
        spec = dataclasses.replace(spec, mean=tuple(source.mean), std=tuple(source.std))
    model = {**source.model, "num_classes": spec.num_classes, "in_chans": spec.channels}
    record = source.record(head=options.head, reset=options.reset, kept_classes=kept)
    module = builders.build_module(cfg, spec, module_class=FineTuneClassifier, model=model, source=record)
    transplant(net, module.net)

    if options.head == "replace":
        head = f"new head (reset {options.reset}) for {spec.num_classes} classes"
    else:
        head = f"head extended to {spec.num_classes} classes, {len(kept)} of them with the source's rows"
    parts = [f"fine-tuning {model['name']} from {source.kind} {source.origin}", head]
    in_chans = source.model.get("in_chans")
    if in_chans is not None and in_chans != spec.channels:
        parts.append(f"first convolution adapted from {in_chans} to {spec.channels} channels")
    if absent:
        parts.append(f"source has no weights for {', '.join(absent)}, which start fresh")
    return module, "; ".join(parts)


def refuse_another_model_named(path: str | Path, hparams: dict, cfg: DictConfig) -> None:
    """A resumed fine-tune is rebuilt from its checkpoint's model (`hparams`): model=NAME may only
    name that one."""
    requested = (builders.to_plain(cfg.get("model")) or {}).get("name")
    if requested is not None and requested != hparams["model"]["name"]:
        raise UserError(
            f"{path} holds a model={hparams['model']['name']}, not model={requested}; leave model= out"
        )


def _resumed_module(cfg: DictConfig, spec: DataSpec) -> tuple[FineTuneClassifier, str]:
    # Rebuilt from the checkpoint it resumes; Lightning then restores its weights, optimizer, epoch
    # and the freezing schedule. The source is not read again.
    path = Path(cfg.resume_ckpt)
    hparams = load_run_checkpoint(path, mmap=True)["hyper_parameters"]  # Lightning reads the weights
    saved = list(hparams["data"]["class_names"])
    if saved != list(spec.class_names):
        raise UserError(
            f"{path} was fine-tuned on classes {saved[:10]}, but this data has "
            f"{list(spec.class_names)[:10]}; resume with the same data="
        )
    channels = hparams["data"].get("channels")
    if channels is not None and channels != spec.channels:
        raise UserError(
            f"{path} was fine-tuned on {channels}-channel images, but this data has {spec.channels}; "
            "resume with the same data.channels"
        )
    refuse_another_model_named(path, hparams, cfg)
    module = builders.build_module(
        cfg,
        DataSpec.from_dict(hparams["data"]),
        module_class=FineTuneClassifier,
        model=hparams["model"],
        source=hparams.get("source"),
    )
    refuse_other_data(path, hparams, module)
    return module, f"resuming the fine-tune in {path}"
