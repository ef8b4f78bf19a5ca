"""Where fine-tuning's starting weights come from, each kind read into one `Source`.

- A checkpoint written by train.py or finetune.py (`ckpt_path=RUN/checkpoints/best-....ckpt`): the
  architecture, class names and input normalisation come from the checkpoint itself.
- A plain state dict file (`ckpt_path=WEIGHTS.pth model=NAME`), such as torchvision's published
  weights saved by a user: the class and channel counts are read from the shapes of the classifier
  and the first convolution, and the stem (`small_input`) is whichever of the two the tensors fit
  (torchvision's files have the standard stem), unless `model.small_input` fixes it.
- torchvision's own weights (`pretrained=torchvision model=NAME`): its default weights for that
  architecture, read from the torch hub cache, downloaded there first when online.

Every file is read with `weights_only=True`, so a file can hold tensors but no code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..data import DataSpec
from ..downloads import stall_timeout
from ..models import ClassifierModel, UnknownModelError, create_model, list_models
from ..models._input_size import smallest_image_size, wants_small_input
from .builders import to_plain
from .checkpoint import load_run_checkpoint, load_weights_file, peek_checkpoint
from .errors import UserError
from .finetune_request import TORCHVISION, check_source_request, source_path


@dataclass
class Source:
    kind: str  # "checkpoint" | "state_dict" | "torchvision"
    origin: str  # the file read, or torchvision's weights name
    model: dict  # {"name": ..., **constructor kwargs}: the architecture the weights were trained as
    state_dict: dict[str, torch.Tensor]
    class_names: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def build_net(self) -> tuple[ClassifierModel, list[str]]:
        """The source network with its weights, and the head modules the weights did not include
        (left at their fresh initialisation)."""
        kwargs = dict(self.model)
        name = kwargs.pop("name")
        net = create_model(name, **kwargs)
        problems, absent = fit_report(net, self.state_dict)
        if problems:
            raise UserError(f"{self.origin} does not hold {name} weights ({'; '.join(problems)})")
        net.load_state_dict(self.state_dict, strict=False)  # what is not loaded, fit_report allowed
        return net, absent

    def record(self, **details) -> dict:
        """What the fine-tuned checkpoint keeps about its origin (plain types, hparams["source"])."""
        path = str(Path(self.origin).resolve()) if self.kind != TORCHVISION else None
        return {
            "kind": self.kind,
            "path": path,
            "name": self.origin if self.kind == TORCHVISION else None,
            "model": self.model["name"],
            "class_names": self.class_names,
            **details,
        }


def fit_report(net: ClassifierModel, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """(what keeps `state` from loading into `net`, head modules wholly absent from `state`).

    A whole head module may be absent: torchvision's GoogLeNet drops its auxiliary heads when it
    saves, and a backbone-only file has no classifier at all. Those start fresh. A missing BatchNorm
    step counter (`num_batches_tracked`, absent from older files) is filled in by BatchNorm itself.
    """
    expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    absent = [
        head
        for head in net.head_names
        if not any(key.startswith(f"{head}.") and key in state for key in expected)
    ]
    missing = [
        key
        for key in expected
        if key not in state and not key.endswith("num_batches_tracked") and key.split(".")[0] not in absent
    ]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} is {tuple(state[key].shape)}, not {expected[key]}"
        for key in expected
        if key in state and tuple(state[key].shape) != expected[key]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if reshaped:
        problems.append(f"{len(reshaped)} of another shape, e.g. {reshaped[0]}")
    return problems, absent


def load_source(cfg, spec: DataSpec) -> Source:
    """The source the config names: `ckpt_path` (a run checkpoint or a state dict) or `pretrained`."""
    check_source_request(cfg)
    ckpt_path = source_path(cfg.get("ckpt_path"))
    requested = to_plain(cfg.get("model")) or {}
    name = requested.get("name")
    if cfg.get("pretrained") is not None:
        return _from_torchvision(requested, spec)

    path = Path(ckpt_path)
    loaded = load_weights_file(path)
    if "state_dict" in loaded or "hyper_parameters" in loaded:
        # Read again by the checker of run checkpoints, which knows what one must hold; the files
        # are small next to the training that follows.
        return _from_checkpoint(path, requested)
    _check_plain_state_dict(loaded, path)
    if name is None:
        raise UserError(
            f"{path} is a plain state dict, which does not say its architecture; add model=NAME "
            "(the model it was saved from, e.g. model=resnet18)"
        )
    model = _state_dict_architecture(requested, loaded, spec, str(path))
    return Source("state_dict", str(path), model, _state_dict_keys(loaded, model))


# What the weights' shapes decide: from a run checkpoint these come from the checkpoint (the class
# and channel counts then from the new data), whatever model= says.
SHAPE_SETTINGS = ("name", "num_classes", "in_chans", "small_input")


def _from_checkpoint(path: Path, requested: dict) -> Source:
    checkpoint = load_run_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    model = dict(hparams["model"])
    _refuse_another_architecture(path, model, requested)
    if requested.get("name") is not None:
        # model=NAME composes the whole model section (dropout and the like), which config.yaml then
        # records: the run must train with those values, not silently with the checkpoint's.
        model.update(
            {
                key: value
                for key, value in requested.items()
                if key not in SHAPE_SETTINGS and value is not None
            }
        )
    # The LightningModule keeps the network under `net.`; nothing else in it is a weight.
    state = {key[4:]: value for key, value in checkpoint["state_dict"].items() if key.startswith("net.")}
    data = hparams["data"]
    return Source(
        "checkpoint",
        str(path),
        model,
        state,
        list(data["class_names"]),
        list(data["mean"]),
        list(data["std"]),
    )


def _refuse_another_architecture(path: Path, model: dict, requested: dict) -> None:
    """model= against the architecture a run checkpoint describes (`model`): its weights fit no other."""
    requested_name = requested.get("name")
    if requested_name is not None and requested_name != model.get("name"):
        raise UserError(
            f"{path} holds a model={model.get('name')}, not model={requested_name}; leave model= out to "
            "fine-tune the checkpoint's own architecture"
        )
    small_input = requested.get("small_input")
    if (
        small_input is not None
        and model.get("small_input") is not None
        and small_input != model["small_input"]
    ):
        raise UserError(
            f"{path} was trained with model.small_input={str(model['small_input']).lower()}, and its "
            "weights fit only that stem; leave model.small_input out"
        )


def check_source_architecture(cfg) -> None:
    """model= against a run checkpoint's architecture, from its description alone (the tensors are
    mapped, not read), before the run builds anything: a -m sweep over model= from one checkpoint
    had each point's refusal only once the points before it had trained. A file that cannot be read
    so is judged when it is loaded."""
    ckpt_path = source_path(cfg.get("ckpt_path"))
    requested = to_plain(cfg.get("model")) or {}
    if not ckpt_path or cfg.get("pretrained") is not None or not requested:
        return
    hparams = peek_checkpoint(ckpt_path).get("hyper_parameters")
    if isinstance(hparams, dict) and isinstance(hparams.get("model"), dict):
        _refuse_another_architecture(Path(ckpt_path), hparams["model"], requested)


def _check_plain_state_dict(loaded: dict, path: Path) -> None:
    if not loaded:
        raise UserError(f"{path} holds an empty dict, not a state dict")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UserError(
                f"{path} is not a state dict (parameter names to tensors): its entry {key!r} holds "
                f"a {type(value).__name__}; save one with torch.save(model.state_dict(), PATH)"
            )


def _meta_model(name: str, kwargs: dict) -> ClassifierModel:
    # On the meta device: shapes and names without allocating or initialising any weight.
    with torch.device("meta"):
        try:
            return create_model(name, **kwargs)
        except UnknownModelError as error:
            raise UserError(str(error)) from None


def _module_name(net: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, candidate in net.named_modules() if candidate is module)


def _state_dict_keys(state: dict[str, torch.Tensor], model: dict) -> dict[str, torch.Tensor]:
    """`state` with torchvision's older layer names mapped to today's. Its DenseNet files name
    layers `norm.1` where the module is now `norm1`: a dotted index is joined to the name before
    it wherever that gives a key the model has."""
    kwargs = {key: value for key, value in model.items() if key != "name"}
    expected = set(_meta_model(model["name"], kwargs).state_dict())
    renamed = {}
    for key, value in state.items():
        if key not in expected:
            joined = re.sub(r"\.(\d+)\.([^.]+)$", r"\1.\2", key)
            if joined in expected and joined not in state:
                key = joined
        renamed[key] = value
    return renamed


def _state_dict_architecture(
    requested: dict, state: dict[str, torch.Tensor], spec: DataSpec, origin: str
) -> dict:
    """The constructor arguments under which `state` loads into model `requested["name"]`."""
    name = requested["name"]
    kwargs = {key: value for key, value in requested.items() if key != "name" and value is not None}
    probe = _meta_model(name, kwargs)
    state = _state_dict_keys(state, {"name": name, **kwargs})
    classifier = state.get(f"{_module_name(probe, probe.get_classifier())}.weight")
    first_conv = state.get(f"{probe.first_conv}.weight")
    # A file without a classifier (backbone only) gets the new class count; the head is fresh anyway.
    kwargs["num_classes"] = classifier.shape[0] if classifier is not None else spec.num_classes
    kwargs["in_chans"] = first_conv.shape[1] if first_conv is not None and first_conv.ndim == 4 else 3
    if requested.get("small_input") is not None:
        stems = [bool(requested["small_input"])]
    else:
        # The size the data suggests first (as train.py chooses), then the other stem.
        small = wants_small_input(spec.image_size)
        stems = [small, not small]
    reports = []
    for small_input in stems:
        candidate = {**kwargs, "small_input": small_input}
        problems, _ = fit_report(_meta_model(name, candidate), state)
        if not problems:
            model = {"name": name, **candidate}
            other = {**candidate, "small_input": not small_input}
            if reports or fit_report(_meta_model(name, other), state)[0]:
                # The weights fix the stem, so builders' advice to switch stems would lead nowhere.
                needed = smallest_image_size(model, spec.image_size)
                if needed is not None:
                    raise UserError(
                        f"{origin} holds {name} weights for the {_stem(model)} stem (their shapes fit "
                        f"no other), which cannot take {spec.image_size} px images; set "
                        f"data.image_size={needed} or more"
                    )
            return model
        reports.append(problems)
    if len(stems) == 1:
        other = {**kwargs, "small_input": not stems[0]}
        if not fit_report(_meta_model(name, other), state)[0]:
            # The name is right, the stem is not: "pass the model= it was saved from" would send
            # the user after the architecture they already named.
            model = {"name": name, **other}
            needed = smallest_image_size(model, spec.image_size)
            size = f", and set data.image_size={needed} or more (that stem's smallest)" if needed else ""
            raise UserError(
                f"{origin} holds {name} weights for the {_stem(model)} stem, not the "
                f"{_stem(candidate)} one that model.small_input={str(stems[0]).lower()} asks for; "
                f"leave model.small_input out{size}"
            )
    problems = min(reports, key=len)
    raise UserError(
        f"{origin} does not hold {name} weights ({'; '.join(problems)}); pass the model= it was saved from"
    )


def _stem(model: dict) -> str:
    return "small-input" if model["small_input"] else "standard"


def torchvision_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        published = sorted(set(torchvision.models.list_models()) & set(list_models()))
        raise UserError(
            f"torchvision publishes no weights for {name}; it does for {', '.join(published)}"
        ) from None


def cached_weights_path(weights) -> Path:
    """Where torch.hub keeps (and looks for) the file of torchvision `weights`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _download(weights, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision's file names end in the first hex digits of the file's SHA-256: check them.
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    try:
        with stall_timeout():
            torch.hub.download_url_to_file(
                weights.url, str(path), match.group(1) if match else None, progress=sys.stderr.isatty()
            )
    except (OSError, RuntimeError) as error:  # URLError and timeouts are OSErrors; a bad hash a RuntimeError
        reason = str(getattr(error, "reason", error)).strip().splitlines()[0][:120] or type(error).__name__
        raise UserError(
            f"could not download torchvision's {weights} weights ({reason}); offline, fetch {weights.url} "
            f"elsewhere and place the file at {path}"
        ) from None


# Architectures whose torchvision builder re-normalises the input when it loads published weights.
RENORMALISED_BY_TORCHVISION = frozenset({"googlenet"})


def _from_torchvision(requested: dict, spec: DataSpec) -> Source:
    weights = torchvision_weights(requested["name"])
    path = cached_weights_path(weights)
    if not path.is_file():
        _download(weights, path)
    state = load_weights_file(path)
    model = _state_dict_architecture(requested, state, spec, str(path))
    transform = weights.transforms()
    mean = list(getattr(transform, "mean", []) or []) or None
    std = list(getattr(transform, "std", []) or []) or None
    if requested["name"] in RENORMALISED_BY_TORCHVISION:
        # Built with its weights, torchvision's GoogLeNet turns ImageNet-normalised input into
        # (x - 0.5) / 0.5 per channel before its first layer (transform_input=True): the statistics
        # its filters were trained on, which the zoo's GoogLeNet must be given directly.
        mean, std = [0.5] * len(mean), [0.5] * len(std)
    return Source(
        TORCHVISION,
        str(weights),
        model,
        _state_dict_keys(state, model),
        list(weights.meta["categories"]),
        mean,
        std,
    )
