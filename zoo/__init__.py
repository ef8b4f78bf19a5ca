"""cnn-zoo: the classic convolutional networks behind one registry, with training code beside them."""

from .models import ClassifierModel, UnknownModelError, create_model, list_models, register_model

__all__ = ["ClassifierModel", "UnknownModelError", "create_model", "list_models", "register_model"]
__version__ = "0.1.0"
