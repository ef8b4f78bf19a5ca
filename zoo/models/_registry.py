"""Name -> builder registry, the only way the rest of the project reaches an architecture."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a user should read plain text
        return str(self.args[0])


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a public variant builder under its function name; a second one with that name is a bug."""
    name = builder.__name__
    if name in _BUILDERS:
        raise ValueError(f"model {name!r} is already registered")
    _BUILDERS[name] = builder
    return builder


def list_models(pattern: str | list[str] = "*") -> list[str]:
    """The registered names, sorted; `pattern` filters them shell-style, as timm's does ("resnet*"),
    and as timm's takes a list of patterns too (a name matching any of them)."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if not all(isinstance(each, str) for each in patterns):  # fnmatch's own error was "unhashable type"
        raise TypeError(f"pattern must be a string or a list of strings, like 'resnet*', got {pattern!r}")
    return sorted(name for name in _BUILDERS if any(fnmatch.fnmatchcase(name, each) for each in patterns))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered under `name`, whose signature lists the options that model takes."""
    if name not in _BUILDERS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name]


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model. Unset (None) options are dropped so configs can leave them out.

    num_classes=0 builds the model without a classifier: it returns its pooled features, `num_features`
    wide (timm's convention). The zoo ships no weights of its own, so `pretrained` is only accepted as
    False (timm's spelling of "random initialisation")."""
    if pretrained:
        raise ValueError(
            "the zoo ships no weights of its own: build the model, then load a state dict into it (with "
            "small_input=False, in_chans=3 and num_classes=1000, torchvision's load with strict=True), or "
            "fine-tune from torchvision's weights with finetune.py pretrained=torchvision"
        )
    builder = model_entrypoint(name)
    options = {key: value for key, value in kwargs.items() if value is not None}
    _check_options(options)
    _check_known_options(name, builder, options)
    without_classifier = options.get("num_classes") == 0
    if without_classifier:
        options["num_classes"] = 1  # built with a layer, which reset_classifier then takes away
    model = builder(**options)
    if without_classifier:
        model.reset_classifier(0)
    return model


def _check_known_options(name: str, builder: Callable[..., nn.Module], options: dict) -> None:
    """An option the model does not take is named with the nearest one it does and the full list:
    Python's own "unexpected keyword argument" names neither, so `num_class=10` left the fix to guess."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # a builder taking **kwargs checks its own
    takes = list(parameters)
    for key in options:
        if key not in takes:
            near = difflib.get_close_matches(key, takes, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise TypeError(f"{name} takes no option {key!r}{hint}; its options: {', '.join(takes)}")


def _check_options(options: dict) -> None:
    """The options every family shares, checked here so a wrong one is named, not found deep in torch."""
    from ._head import check_num_classes

    if "num_classes" in options:
        check_num_classes(options["num_classes"])
    in_chans = options.get("in_chans", 1)
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be an integer >= 1 (image channels), got {in_chans!r}")
    if not isinstance(options.get("small_input", False), bool):
        raise ValueError(f"small_input must be True or False, got {options['small_input']!r}")
    for key in ("dropout", "aux_dropout"):
        rate = options.get(key, 0.0)
        # 1 would zero every activation it touches: nothing could be learnt (the config rules agree).
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"{key} must be a number in [0, 1), got {rate!r}")
