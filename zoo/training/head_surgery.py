"""Fitting a trained network to new data: a fully connected head for the new class list, and a first
convolution for the new channel count. Everything goes through the head contract
(`zoo/models/_head.py`), so the same calls serve every family.

Head modes:
- `replace`: a fresh classifier for the new classes. `reset="last"` re-initialises only the last linear
  layer (and the auxiliary heads' last layers); `reset="classifier"` re-initialises every layer of the
  fully connected head, which matters where the head is deep (AlexNet and VGG: three linear layers).
- `extend`: the whole trained head is kept; the last linear layer gets one row per new class, copied
  from the trained row of the class with the same name and fresh for a class the source never saw.
  Before any training the network then gives exactly the source's logits for the classes it knew.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..models import ClassifierModel
from .errors import UserError
from .finetune_request import HEAD_MODES, RESETS, refuse_contradicting_head_options


def adapt_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first convolution's weight (out x in x kh x kw) for `in_chans` input channels.

    To one channel the filters are summed: a grey image g seen by the summed filter gives what the
    trained filter gives on (g, g, g). To other counts they are cycled and scaled by old/new (timm's
    adapt_input_conv). Where new is a multiple of old (grey to RGB), an image whose channels are all
    equal then still gives the trained response; otherwise (3 to 4) it is only near it, as each
    trained channel is repeated a different number of times.
    """
    old = weight.shape[1]
    if in_chans == old:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / old)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (old / in_chans)


def _final_linears(net: ClassifierModel) -> list[nn.Linear]:
    # The main classifier first, then the auxiliary ones in their fixed order.
    return [net.get_classifier(), *net.aux_classifiers().values()]


def rebuild_head(
    net: ClassifierModel,
    class_names: Sequence[str],
    *,
    mode: str = "replace",
    reset: str = "last",
    source_class_names: Sequence[str] | None = None,
) -> list[str]:
    """Give `net` (in place) a head for `class_names`; returns the classes whose trained rows were kept."""
    if mode not in HEAD_MODES:
        raise UserError(f"finetune.head must be one of {', '.join(HEAD_MODES)}, got {mode!r}")
    if reset not in RESETS:
        raise UserError(f"finetune.reset must be one of {', '.join(RESETS)}, got {reset!r}")
    num_classes = len(class_names)
    if num_classes < 2:
        raise UserError(f"fine-tuning needs at least 2 classes, but the new data has {num_classes}")
    if mode == "replace":
        if reset == "classifier":
            net.reset_head(num_classes)
        else:
            net.reset_classifier(num_classes)
        return []

    if source_class_names is None:
        raise UserError(
            "finetune.head=extend matches classes by name, and this source has no class names "
            "(a plain state dict); use finetune.head=replace, or a checkpoint written by train.py"
        )
    refuse_contradicting_head_options(mode, reset)
    old_rows = {name: row for row, name in enumerate(source_class_names)}
    pairs = [(row, old_rows[name]) for row, name in enumerate(class_names) if name in old_rows]
    old_linears = _final_linears(net)
    net.reset_classifier(num_classes)
    if pairs:
        new_index, old_index = (torch.tensor(index) for index in zip(*pairs, strict=True))
        with torch.no_grad():
            for old, new in zip(old_linears, _final_linears(net), strict=True):
                new.weight[new_index] = old.weight[old_index.to(old.weight.device)]
                if new.bias is not None and old.bias is not None:
                    new.bias[new_index] = old.bias[old_index.to(old.bias.device)]
    return [class_names[row] for row, _ in pairs]


def transplant(source: ClassifierModel, target: ClassifierModel) -> None:
    """Copy every tensor of `source` (its head already rebuilt) into `target`, a network of the same
    architecture built for the new data, adapting the first convolution to the target's channels."""
    state = source.state_dict()
    key = f"{target.first_conv}.weight"
    state[key] = adapt_input_channels(state[key], target.get_submodule(target.first_conv).in_channels)
    # strict: every tensor of the target comes from the source, none is silently left at random.
    target.load_state_dict(state, strict=True)
