"""Name -> builder registry, the only way the rest of the project reaches an architecture."""

from __future__ import annotations

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


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered under `name`, whose signature lists the options that model takes."""
    if name not in _BUILDERS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Unset (None) options are dropped so configs can leave them out."""
    return model_entrypoint(name)(**{key: value for key, value in kwargs.items() if value is not None})
