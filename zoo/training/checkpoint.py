"""Reading checkpoints a user points at: weights only, never arbitrary pickled objects."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

# A checkpoint's data section is instantiated by evaluate.py; only the project's own data modules
# may be named there, or a crafted file could make Hydra call any function it likes.
ALLOWED_DATA_TARGET_PREFIX = "zoo.data."


def load_weights_file(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True, turning every way a file can be wrong into one clear line."""
    path = Path(path)
    if path.is_dir():
        inside = sorted([*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")])
        listed = f": {', '.join(map(str, inside[:3]))}" if inside else " (it holds no .ckpt file)"
        raise UserError(f"checkpoint {path} is a folder; pass ckpt_path=PATH to a checkpoint file{listed}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass ckpt_path=PATH to a .ckpt file of a run")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; the sentence that names the offending object is the one to show.
        message = " ".join(str(error).split())
        blocked = re.search(r"(unsupported GLOBAL \S+|Unsupported global: \S+)", message)
        if blocked:
            raise UserError(
                f"refused to load {path}: it contains Python objects that are not plain weights and could "
                f"run code when unpickled ({blocked.group(1)[:160]}); only load checkpoints from sources "
                "you trust"
            ) from None
        detail = re.search(r"WeightsUnpickler error: (.*?)\s+Check the documentation", message)
        reason = detail.group(1) if detail else message
        raise UserError(
            f"{path} is not a PyTorch checkpoint or state dict (unpickling failed: {reason[:120]})"
        ) from None
    except Exception as error:
        # Bytes that are neither a zip nor a pickle fail wherever the first bad byte lands: besides
        # RuntimeError, EOFError, OSError, ValueError and BadZipFile, the weights-only unpickler raises
        # IndexError, KeyError or struct.error on a text file such as /etc/passwd.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint, truncated or of another format ({reason[:160]})"
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} holds a {type(loaded).__name__}, not a checkpoint or state dict")
    return loaded


def load_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by train.py or finetune.py, checked to hold what rebuilding the model needs."""
    checkpoint = load_weights_file(path)
    hparams = checkpoint.get("hyper_parameters")
    if (
        "state_dict" not in checkpoint
        or not isinstance(hparams, dict)
        or "model" not in hparams
        or "data" not in hparams
    ):
        raise UserError(
            f"{path} is not a cnn-zoo checkpoint (no model description inside); "
            "use a .ckpt written by train.py or finetune.py"
        )
    target = str((hparams.get("data_config") or {}).get("_target_", ""))
    if target and not target.startswith(ALLOWED_DATA_TARGET_PREFIX):
        raise UserError(
            f"{path} names data module {target!r}, which is not one of cnn-zoo's; refusing to build it"
        )
    return checkpoint


def module_from_checkpoint(checkpoint: dict[str, Any]):
    """Rebuild the ImageClassifier a checkpoint describes, with its weights."""
    from .module import ImageClassifier

    hparams = checkpoint["hyper_parameters"]
    module = ImageClassifier(
        model=hparams["model"],
        data=hparams["data"],
        data_config=hparams.get("data_config"),
        source=hparams.get("source"),
    )
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"checkpoint weights do not fit the model it describes ({first[:200]})") from None
    return module


def check_resumable(path: str | Path, module) -> None:
    """A checkpoint to resume from must describe the model this run builds, or loading it would
    fail half-way with a wall of shape mismatches."""
    hparams = load_run_checkpoint(path)["hyper_parameters"]
    saved, wanted = hparams["model"], module.hparams["model"]
    saved_classes, wanted_classes = (
        len(hparams["data"]["class_names"]),
        len(module.hparams["data"]["class_names"]),
    )
    if saved.get("name") != wanted.get("name") or saved != wanted or saved_classes != wanted_classes:
        raise UserError(
            f"{path} holds a {saved.get('name')} with {saved_classes} classes "
            f"({saved.get('in_chans')} channels), but this run builds a {wanted.get('name')} "
            f"with {wanted_classes} classes ({wanted.get('in_chans')} channels); resume with the same "
            "model= and data=, or fine-tune with finetune.py"
        )
