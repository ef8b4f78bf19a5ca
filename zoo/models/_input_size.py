"""The smallest image a network takes: its layers must not shrink the input to nothing before the head."""

from __future__ import annotations

import torch

from ._registry import create_model

# The largest image size the search for the smallest one a network takes will try.
LARGEST_PROBED_SIZE = 1024

# Inputs at or below this size get the small-input stem: the standard stems would shrink a 32 px
# image to 1x1 before the network has seen it.
SMALL_INPUT_MAX_SIZE = 64


def wants_small_input(image_size: int) -> bool:
    """The stem train.py builds when the config leaves model.small_input unset."""
    return image_size <= SMALL_INPUT_MAX_SIZE


def why_not_at(model: dict, image_size: int) -> str | None:
    """None when the network takes images of `image_size` px; else torch's reason. Run on the meta
    device: no weights allocated, no arithmetic done, so even a DenseNet costs milliseconds."""
    kwargs = dict(model)
    name = kwargs.pop("name")
    with torch.device("meta"):
        net = create_model(name, **kwargs).eval()
        images = torch.empty(1, kwargs.get("in_chans", 3), image_size, image_size)
    try:
        with torch.no_grad():
            net(images)
    except RuntimeError as error:
        return str(error).strip().splitlines()[0]
    return None


def smallest_image_size(model: dict, image_size: int) -> int | None:
    """None when the network takes images of `image_size` px; else the smallest size it takes."""
    if why_not_at(model, image_size) is None:
        return None
    too_small, fits = image_size, image_size * 2
    while fits < LARGEST_PROBED_SIZE and why_not_at(model, fits) is not None:
        too_small, fits = fits, fits * 2
    while fits - too_small > 1:  # bisect: a size that fits stays fitting as it grows
        middle = (too_small + fits) // 2
        too_small, fits = (too_small, middle) if why_not_at(model, middle) is None else (middle, fits)
    return fits
