"""Reading checkpoints a user points at: weights only, never arbitrary pickled objects."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from ..data import DATA_MODULES
from .errors import UserError, in_one_line
from .quoting import train_on_command
from .run_dirs import check_weights_file, not_a_checkpoint

# Where a pickled whole model's class comes from, when the class is not imported yet to ask it.
_MODEL_PACKAGES = ("zoo.models.", "torch.nn.modules.", "torchvision.models.", "timm.models.")
_BLOCKED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|Unsupported global:|unsupported GLOBAL) (\S+)")


def allowed_data_targets() -> frozenset[str]:
    """The data modules a run's config builds: the only classes a checkpoint's data section may
    name. evaluate.py instantiates that section, and a prefix check let a crafted file reach any
    callable through a zoo.data module (zoo.data.torchvision_sets.Path.write_text)."""
    return frozenset(f"zoo.data.{name}" for name in DATA_MODULES)


def _is_hydra_key(key: Any) -> bool:
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _unsafe_data_config(config: Any) -> str | None:
    """What in a checkpoint's data section could make instantiate() do more than build one of our
    data modules, or None. Nested _target_/_args_/_partial_/... would be instantiated or called too,
    and a ${...} (oc.decode) can turn into such a mapping when it is resolved."""
    if not isinstance(config, dict):
        return f"a data section of type {type(config).__name__}"
    target, allowed = config.get("_target_"), allowed_data_targets()
    if not isinstance(target, str) or target not in allowed:
        return f"data module {target!r}, which is not one of cnn-zoo's ({', '.join(sorted(allowed))})"

    def walk(node: Any, where: str, top: bool) -> str | None:
        if isinstance(node, dict):
            for key, value in node.items():
                if _is_hydra_key(key) and not (top and key == "_target_"):
                    return f"the Hydra key {key!r} at {where or 'its top level'}"
                found = walk(value, f"{where}.{key}".lstrip("."), False)
                if found:
                    return found
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                found = walk(value, f"{where}[{index}]", False)
                if found:
                    return found
        elif isinstance(node, str) and "${" in node:
            return f"an interpolation {node[:60]!r} at {where}"
        return None

    found = walk(config, "", True)
    return f"{found} in its data section" if found else None


def _is_model_class(name: str) -> bool:
    """Whether a global torch refused is an nn.Module class: the file is a pickled whole model.
    Only modules already imported are asked; importing one named by the file could run its code."""
    module_name, _, attribute = name.rpartition(".")
    found = getattr(sys.modules.get(module_name), attribute, None)
    if isinstance(found, type):
        return issubclass(found, torch.nn.Module)
    return name.startswith(_MODEL_PACKAGES)


def load_weights_file(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """torch.load with weights_only=True, turning every way a file can be wrong into one clear line.
    With `mmap`, the tensors are mapped, not read, for a caller that needs the file's other entries."""
    path = Path(path)
    check_weights_file(path)
    try:
        loaded = _load(path, mmap)
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; the sentence that names the offending object is the one to show.
        message = in_one_line(error)
        blocked = _BLOCKED_GLOBAL.search(message)
        if blocked:
            name = blocked.group(1).rstrip(".,;")[:160]
            if _is_model_class(name):
                raise UserError(
                    f"refused to load {path}: it is a whole pickled model ({name}), not plain weights, "
                    "and unpickling it could run code; where you trust it, re-save its weights with "
                    "torch.save(model.state_dict(), PATH) and load that file"
                ) from None
            raise UserError(
                f"refused to load {path}: it contains Python objects that are not plain weights and could "
                f"run code when unpickled (global {name}); only load checkpoints from sources you trust"
            ) from None
        detail = re.search(r"WeightsUnpickler error: (.*?)\s+Check the documentation", message)
        reason = detail.group(1) if detail else message
        raise UserError(
            f"{path} is not a PyTorch checkpoint or state dict (unpickling failed: {reason[:120]})"
        ) from None
    except Exception as error:
        # A file that is neither a zip nor a pickle was refused by check_weights_file from its first
        # bytes (torch's own reasons for one, "101" or "list index out of range", say nothing); asked
        # again here for a file replaced since. What is left starts as a zip or a pickle.
        refusal = not_a_checkpoint(path)
        if refusal:
            raise UserError(refusal) from None
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint, truncated or of another format ({reason[:160]})"
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} holds a {type(loaded).__name__}, not a checkpoint or state dict")
    return loaded


def _load(path: Path, mmap: bool) -> Any:
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # torch maps only its zip format: an older file is read whole
                raise
    return torch.load(path, map_location="cpu", weights_only=True)


def peek_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's entries with its tensors memory-mapped, not read; {} when the file cannot be
    read so (load_weights_file reports why)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def epoch_progress(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Lightning's count of the fit loop's epochs (ready, started, processed, completed) over the whole
    run, from a loaded checkpoint; {} when it holds none."""
    loops = checkpoint.get("loops") or {}
    return ((loops.get("fit_loop") or {}).get("epoch_progress") or {}).get("total") or {}


def saved_step(path: str | Path) -> int | None:
    """The global step a checkpoint was written at, or None when the file cannot tell; the full,
    checked load comes later and reports any problem."""
    step = peek_checkpoint(path).get("global_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def load_run_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint written by train.py or finetune.py, checked to hold what rebuilding the model needs;
    `mmap` as for load_weights_file."""
    checkpoint = load_weights_file(path, mmap=mmap)
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
    # Checked before anything is built from the file: evaluate.py instantiates this section.
    data_config = hparams.get("data_config")
    unsafe = None if data_config is None else _unsafe_data_config(data_config)
    if unsafe:
        raise UserError(f"{path} names {unsafe}; refusing to build it, the checkpoint will not be used")
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
        # torch's first line only says there are errors; the lines below it name the tensors.
        lines = [line.strip() for line in str(error).strip().splitlines()]
        details = " ".join(lines[1:]) or lines[0]
        raise UserError(f"checkpoint weights do not fit the model it describes: {details[:300]}") from None
    return module


def check_resumable(path: str | Path, module, data: list[str] | None = None) -> None:
    """A checkpoint to resume from must describe the model this run builds, or loading it would
    fail half-way with a wall of shape mismatches. `data`: as refuse_other_data takes it."""
    # The description alone: Lightning reads the weights and optimizer state itself.
    hparams = load_run_checkpoint(path, mmap=True)["hyper_parameters"]
    wanted_classes = len(module.hparams["data"]["class_names"])
    refuse_another_model(path, hparams, module.hparams["model"], wanted_classes, data)
    refuse_other_data(path, hparams, module, data)


def refuse_another_model(
    path: str | Path,
    hparams: dict[str, Any],
    wanted: dict,
    wanted_classes: int,
    data: list[str] | None = None,
) -> None:
    """Another model, or other model settings, than the checkpoint's (`hparams`) under a resumed run;
    `wanted` is the run's model description, filled in from its data. `data`: as refuse_other_data
    takes it."""
    saved = hparams["model"]
    saved_classes = len(hparams["data"]["class_names"])
    described = ("name", "num_classes", "in_chans")
    if any(saved.get(key) != wanted.get(key) for key in described) or saved_classes != wanted_classes:
        raise UserError(
            f"{path} holds a model={saved.get('name')} with {saved_classes} classes "
            f"({saved.get('in_chans')} channels), but this run builds a model={wanted.get('name')} "
            f"with {wanted_classes} classes ({wanted.get('in_chans')} channels); resume with the same "
            "model= and data=, or fine-tune with finetune.py"
        )
    changed = _changed_settings("model", saved, wanted)
    if changed:
        raise UserError(
            f"{path} was trained with {changed}; resume with the model settings the run began with, or "
            f"train on from its weights with {train_on_command(path, data)}"
        )


# Data settings a resumed run may change: where the files are and how they are loaded, not which
# images it trains on, in what batches, order and augmentation.
_DATA_KEYS_FREE_ON_RESUME = frozenset(
    {"root", "num_workers", "eval_batch_size", "on_device", "download", "verify_checksums", "skip_bad_images"}
)


def refuse_other_data(
    path: str | Path, hparams: dict[str, Any], module, data: list[str] | None = None
) -> None:
    """Another data set, batch size or split under a resumed run (`hparams` are the checkpoint's): a
    checkpoint saved mid-epoch then resumes into an epoch of other batches (or none), and another
    split can put test images in training. `data`: as train_on_command takes it (the command's data
    overrides, which the advised fine-tune takes on); None: those of the Hydra job under way."""
    refuse_other_data_config(path, hparams, module.hparams.get("data_config"), data)


def refuse_other_data_config(
    path: str | Path,
    hparams: dict[str, Any],
    data_config: Any,
    data: list[str] | tuple[str, ...] | None = None,
) -> None:
    """refuse_other_data for the run's data section as a checkpoint records it (`data_config`); `data`
    as train_on_command takes it."""
    changed = other_data_settings(hparams, data_config)
    if changed:
        # With the command's data overrides: without them, the fine-tune trained on its default data set.
        raise UserError(
            f"{path} was trained with {changed}; resume with the data settings the run began with, or "
            f"train on from its weights with {train_on_command(path, data)}"
        )


def other_data_settings(hparams: dict[str, Any], data_config: Any) -> str:
    """The data settings a resume may not change that `data_config` changes, named; empty when none."""
    return _changed_settings("data", hparams.get("data_config"), data_config, _DATA_KEYS_FREE_ON_RESUME)


def _changed_settings(section: str, saved: Any, wanted: Any, free: frozenset[str] = frozenset()) -> str:
    """The first settings of `section` that differ, as "data.batch_size=64 (now 32)"; empty when none
    do. Keys only one side has (a setting added since the run began) are not compared."""
    if not isinstance(saved, dict) or not isinstance(wanted, dict):
        return ""
    changed = sorted(
        key for key in saved.keys() & wanted.keys() if key not in free and saved[key] != wanted[key]
    )
    return ", ".join(f"{section}.{key}={saved[key]!r} (now {wanted[key]!r})" for key in changed[:3])
