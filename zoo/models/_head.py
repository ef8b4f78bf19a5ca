"""The head contract every zoo model honours, so fine-tuning is the same call for every family.

A model splits into a backbone (`forward_features`) and a fully connected head (`forward_head`).
The head ends in one `nn.Linear` whose width is the class count; everything in `head_names` is
the fully connected part that fine-tuning may rebuild, everything else is the backbone it keeps.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierModel(nn.Module):
    #: top-level child modules that form the fully connected head (classifier and any auxiliary heads)
    head_names: tuple[str, ...] = ()
    #: dotted name of the first convolution, whose input channels fine-tuning may adapt
    first_conv: str = ""
    #: weight of each auxiliary loss against the main loss (GoogLeNet's paper uses 0.3)
    aux_loss_weight: float = 0.0

    num_classes: int
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """The last linear layer (a NoClassifier when num_classes is 0)."""
        raise NotImplementedError

    def _set_classifier(self, linear: nn.Module) -> None:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer (and any auxiliary ones) with fresh ones `num_classes` wide;
        0 removes them, and the model then returns its pooled features (timm's convention)."""
        check_num_classes(num_classes)
        like = next(self.parameters())
        self._set_classifier(_fresh_classifier(self.get_classifier(), num_classes, like))
        for name, aux in self.aux_classifiers().items():
            self._set_aux_classifier(name, _fresh_classifier(aux, num_classes, like))
        self.num_classes = num_classes

    def reset_head(self, num_classes: int) -> None:
        """Re-initialise the whole fully connected head, not only its last layer."""
        for name in self.head_names:
            for module in getattr(self, name).modules():
                if module is not self and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.reset_classifier(num_classes)

    def aux_classifiers(self) -> dict[str, nn.Module]:
        """Final linear layers of auxiliary heads, by name; empty for single-head models."""
        return {}

    def _set_aux_classifier(self, name: str, linear: nn.Module) -> None:
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and the auxiliary logits that join the training loss (none by default)."""
        return self(x), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class NoClassifier(nn.Identity):
    """Stands where the last linear layer was when num_classes is 0: the features pass through.
    It keeps the layer's input width, so reset_classifier(n) can build the layer again."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}"


def check_num_classes(num_classes: object) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(
            f"num_classes must be an integer >= 0 (0: no classifier, the model returns its pooled "
            f"features), got {num_classes!r}"
        )


def _fresh_classifier(like: nn.Module, out_features: int, reference: torch.Tensor) -> nn.Module:
    """A new last layer in place of `like`, taking its input width, on `reference`'s device and dtype."""
    if out_features == 0:
        return NoClassifier(like.in_features)
    bias = like.bias is not None if isinstance(like, nn.Linear) else True
    linear = nn.Linear(like.in_features, out_features, bias=bias)
    return linear.to(device=reference.device, dtype=reference.dtype)
