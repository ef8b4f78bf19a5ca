"""What finetune.py's config asks for: the finetune options and the source named, from the config
alone. Nothing here imports torch unless a model is named beside a source checkpoint, whose
architecture is then read (weight_sources): finetune.py and its -m sweeps answer a bad request
before seconds of imports."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .run_dirs import check_weights_file
from .validation import is_integer, is_number

HEAD_MODES = ("replace", "extend")
RESETS = ("last", "classifier")
NORMALIZATIONS = ("source", "data")
TORCHVISION = "torchvision"
USAGE = (
    "finetune.py needs a source: ckpt_path=RUN/checkpoints/FILE.ckpt (a run of train.py or finetune.py), "
    "ckpt_path=WEIGHTS.pth model=NAME (a plain state dict), or pretrained=torchvision model=NAME"
)

# (key under finetune., test, what the value must be), checked before any file is read.
OPTION_RULES = [
    ("head", lambda v: v in HEAD_MODES, f"one of {', '.join(HEAD_MODES)}"),
    ("reset", lambda v: v in RESETS, f"one of {', '.join(RESETS)}"),
    ("normalization", lambda v: v in NORMALIZATIONS, f"one of {', '.join(NORMALIZATIONS)}"),
    ("freeze_backbone", lambda v: isinstance(v, bool), "true or false"),
    ("unfreeze_at_epoch", lambda v: v is None or (is_integer(v) and v >= 0), "an integer >= 0 or null"),
    # Finite: inf passes `>= 0` and only surfaces as a NaN loss once training has started.
    ("backbone_lr_scale", lambda v: is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
]


def refuse_contradicting_head_options(mode: str, reset: str) -> None:
    """finetune.head and finetune.reset together; also checked with the other options before anything
    is read, so that a -m sweep refuses such a point before the points ahead of it train."""
    if mode == "extend" and reset == "classifier":
        raise UserError(
            "finetune.head=extend keeps the trained head, so finetune.reset=classifier contradicts it; "
            "use finetune.head=replace to re-initialise the whole classifier"
        )


def check_finetune_options(cfg: DictConfig) -> None:
    for key, test, expected in OPTION_RULES:
        value = cfg.finetune.get(key)
        if not test(value):
            raise UserError(f"finetune.{key} must be {expected}, got {value!r}")
    refuse_contradicting_head_options(cfg.finetune.head, cfg.finetune.reset)


def source_path(value: Any) -> str | None:
    """ckpt_path as a file name, or None. Hydra reads ckpt_path=123 as a number and ckpt_path=true as
    a bool; as the config rules do, both are refused with the spelling that keeps a path text."""
    if value is None or isinstance(value, str):
        return value
    plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    raise UserError(
        f"ckpt_path must be a path to a checkpoint file (for a file named 123: ./123), got {plain!r}"
    )


def check_source_request(cfg: DictConfig) -> None:
    """What the config asks of the source, checked before anything is built or read."""
    ckpt_path = source_path(cfg.get("ckpt_path"))
    name = OmegaConf.select(cfg, "model.name")
    if name is not None:
        from ..models import list_models  # torch: only once a model is named

        if name not in list_models():
            raise UserError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if cfg.get("pretrained") is not None:
        if cfg.pretrained != TORCHVISION:
            raise UserError(f"pretrained must be {TORCHVISION} (or null), got {cfg.pretrained!r}")
        if ckpt_path:
            raise UserError("give one source, ckpt_path=FILE or pretrained=torchvision, not both")
        if name is None:
            raise UserError(
                "pretrained=torchvision needs the architecture: add model=NAME (e.g. model=resnet18)"
            )
    elif not ckpt_path:
        raise UserError(USAGE)
    else:
        check_weights_file(ckpt_path)


def check_finetune_command(cfg: DictConfig) -> None:
    """The finetune options and the source request (a resumed fine-tune names its checkpoint, whose
    source is not read again)."""
    check_finetune_options(cfg)
    if cfg.get("resume_ckpt"):
        check_weights_file(cfg.resume_ckpt)
    else:
        check_source_request(cfg)


def check_finetune_request(cfg: DictConfig) -> None:
    """check_finetune_command, then a source checkpoint's architecture against model=: all before the
    run builds anything, also for every point of a -m sweep (model=a,b from one checkpoint: the point
    whose model is not the checkpoint's)."""
    check_finetune_command(cfg)
    if cfg.get("resume_ckpt") or cfg.get("model") is None:
        return  # no architecture named, or a resumed fine-tune, whose source is not read again
    from .weight_sources import check_source_architecture  # torch: to read the source's description

    check_source_architecture(cfg)
