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

    def get_classifier(self) -> nn.Linear:
        raise NotImplementedError

    def _set_classifier(self, linear: nn.Linear) -> None:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer (and any auxiliary ones) with fresh ones `num_classes` wide."""
        old = self.get_classifier()
        self._set_classifier(_fresh_linear(old, num_classes))
        for name, aux in self.aux_classifiers().items():
            self._set_aux_classifier(name, _fresh_linear(aux, num_classes))
        self.num_classes = num_classes

    def reset_head(self, num_classes: int) -> None:
        """Re-initialise the whole fully connected head, not only its last layer."""
        for name in self.head_names:
            for module in getattr(self, name).modules():
                if module is not self and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.reset_classifier(num_classes)

    def aux_classifiers(self) -> dict[str, nn.Linear]:
        """Final linear layers of auxiliary heads, by name; empty for single-head models."""
        return {}

    def _set_aux_classifier(self, name: str, linear: nn.Linear) -> None:
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and the auxiliary logits that join the training loss (none by default)."""
        return self(x), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _fresh_linear(like: nn.Linear, out_features: int) -> nn.Linear:
    linear = nn.Linear(like.in_features, out_features, bias=like.bias is not None)
    return linear.to(device=like.weight.device, dtype=like.weight.dtype)
