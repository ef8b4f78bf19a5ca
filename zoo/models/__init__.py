"""The architectures, one family per module, reached through the registry."""

# Importing a family module registers its variants.
from . import alexnet, densenet, googlenet, lenet, resnet, vgg  # noqa: F401
from ._head import ClassifierModel
from ._registry import UnknownModelError, create_model, list_models, model_entrypoint, register_model

__all__ = [
    "ClassifierModel",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_entrypoint",
    "register_model",
]
