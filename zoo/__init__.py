"""cnn-zoo: the classic convolutional networks behind one registry, with training code beside them.

Names load on first use: the entry points' command-line checks (zoo.training.cli) run before torch
is imported, so a mistyped key is answered in a fraction of a second, not after seconds of imports.
"""

from __future__ import annotations

import importlib

_EXPORTS = ("ClassifierModel", "UnknownModelError", "create_model", "list_models", "register_model")

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


_SUBPACKAGES = ("data", "downloads", "models", "training")


def __getattr__(name: str):
    if name in _SUBPACKAGES:  # `import zoo; zoo.models.list_models()`, as when zoo imported them itself
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".models", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES})
