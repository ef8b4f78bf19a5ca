"""Augmentation applied per batch on the training device, for the in-memory data path.

torchvision's v2 transforms draw one set of random parameters per call, so on a batch tensor every
image would get the same shift. Here each image of the batch gets its own affine warp in a single
`grid_sample`, which costs one kernel launch on a GPU and no Python loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    images: torch.Tensor,
    *,
    max_degrees: float = 0.0,
    max_shift: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate, shift (a fraction of the image size) and scale each image by its own random amount."""
    n = images.shape[0]
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * (high - low) + low

    angle = uniform(-max_degrees, max_degrees) * (math.pi / 180)
    zoom = uniform(*scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates, where the image spans 2 units.
    shift_x, shift_y = uniform(-max_shift, max_shift) * 2, uniform(-max_shift, max_shift) * 2
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop_flip(
    images: torch.Tensor, *, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The standard natural-image recipe (CIFAR): pad, crop back at a random offset, mirror half."""
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    rows = (dy.view(n, 1) + torch.arange(h, device=device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    cropped = padded[batch, channels, rows, cols]
    if flip:
        mirrored = torch.rand(n, generator=generator, device=device) < 0.5
        cropped = torch.where(mirrored.view(n, 1, 1, 1), cropped.flip(-1), cropped)
    return cropped


AUGMENTATIONS = ("none", "digits", "standard")


def augment_batch(images: torch.Tensor, name: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the named recipe to a batch; uint8 input comes back as float in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    if name == "none":
        return images
    if name == "digits":
        # Handwriting varies in position, slant and size; a mirrored digit is another symbol, so no flips.
        return random_affine(images, max_degrees=10, max_shift=0.08, scale=(0.9, 1.1), generator=generator)
    if name == "standard":
        return random_crop_flip(images, padding=max(1, images.shape[-1] // 8), generator=generator)
    raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
