"""Augmentation recipes, in two forms with one set of names (`AUGMENTATIONS`).

`augment_batch` runs on a whole batch on the training device, for the in-memory data path.
torchvision's v2 transforms draw one set of random parameters per call, so on a batch tensor every
image would get the same shift. Here each image of the batch gets its own affine warp in a single
`grid_sample`, which costs one kernel launch on a GPU and no Python loop.

`sample_transform` builds the same recipes from v2 transforms for one decoded image at a time, for
data decoded in DataLoader workers (image folders).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

# The recipes' numbers, read by both forms: the batch form here and the v2 form in sample_transform.
# Handwriting varies in position, slant and size; a mirrored digit is another symbol, so no flips.
DIGITS_MAX_DEGREES, DIGITS_MAX_SHIFT, DIGITS_SCALE = 10.0, 0.08, (0.9, 1.1)
# Brightness, contrast and saturation of the AlexNet-style recipe, as torchvision's references use.
JITTER = 0.4


def standard_padding(image_size: int) -> int:
    """The pad-and-crop margin of the standard recipe: 4 px at CIFAR's 32 px."""
    return max(1, image_size // 8)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


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

    def uniform(low: float, high: float) -> torch.Tensor:
        return _uniform(n, low, high, generator, images.device)

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


def random_resized_crop_flip(
    images: torch.Tensor,
    *,
    area: tuple[float, float] = (0.08, 1.0),
    aspect: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AlexNet/Inception cropping: a random area and aspect ratio per image, resized back to full size,
    mirrored half the time. A crop that would not fit is clamped to the image rather than redrawn."""
    n = images.shape[0]
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return _uniform(n, low, high, generator, device)

    fraction = uniform(*area)
    ratio = torch.exp(uniform(math.log(aspect[0]), math.log(aspect[1])))
    # Width and height of the crop as fractions of the image; in [-1, 1] coordinates they are also the
    # scale of the map from output to input, and the crop's centre may move by 1 - size either way.
    width, height = (fraction * ratio).sqrt().clamp(max=1), (fraction / ratio).sqrt().clamp(max=1)
    centre_x, centre_y = uniform(-1, 1) * (1 - width), uniform(-1, 1) * (1 - height)
    mirror = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(width)
    theta = torch.stack(
        [torch.stack([width * mirror, zero, centre_x], 1), torch.stack([zero, height, centre_y], 1)], 1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(
    images: torch.Tensor,
    *,
    brightness: float = JITTER,
    contrast: float = JITTER,
    saturation: float = JITTER,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale brightness, contrast and saturation of each float image by its own random factor."""
    n = images.shape[0]

    def factor(strength: float) -> torch.Tensor:
        drawn = torch.rand(n, generator=generator, device=images.device) * 2 - 1
        return (1 + strength * drawn).view(n, 1, 1, 1)

    # Clamped after each step, as torchvision's adjust_* are: a brightened pixel past 1 would
    # otherwise raise the contrast step's mean and carry its excess into the next step.
    images = (images * factor(brightness)).clamp_(0, 1)
    mean = _luma(images).mean(dim=(2, 3), keepdim=True)
    images = ((images - mean) * factor(contrast) + mean).clamp_(0, 1)
    if images.shape[1] == 3:
        gray = _luma(images)
        images = (images - gray) * factor(saturation) + gray
    return images.clamp_(0, 1)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W brightness, with the ITU-R 601 weights for colour images."""
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def rand_augment_each(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's RandAugment with its own draw of operations for every image of the batch.

    RandAugment picks its operations from the global RNG; a seed taken from `generator` and a forked
    RNG keep those draws reproducible without moving the global stream. The per-image loop is the
    price of per-image policies: RandAugment has no batched form.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
    as_uint8 = images if images.dtype == torch.uint8 else images.mul(255).round_().to(torch.uint8)
    policy = v2.RandAugment()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        augmented = torch.stack([policy(image) for image in as_uint8])
    return augmented.float().div_(255)


AUGMENTATIONS = ("none", "digits", "standard", "alexnet", "randaugment")


def check_augmentation(name: str) -> str:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    return name


def augment_batch(images: torch.Tensor, name: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the named recipe to a batch; uint8 input comes back as float in [0, 1]."""
    check_augmentation(name)
    if name == "randaugment":
        return rand_augment_each(images, generator)
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    if name == "none":
        return images
    if name == "digits":
        return random_affine(
            images,
            max_degrees=DIGITS_MAX_DEGREES,
            max_shift=DIGITS_MAX_SHIFT,
            scale=DIGITS_SCALE,
            generator=generator,
        )
    if name == "standard":
        return random_crop_flip(images, padding=standard_padding(images.shape[-1]), generator=generator)
    cropped = random_resized_crop_flip(images, generator=generator)
    return color_jitter(cropped, generator=generator)


def sample_transform(name: str, image_size: int, *, train: bool) -> v2.Compose:
    """The recipe as v2 transforms for one decoded PIL image; the result is a uint8 C x size x size tensor.

    Evaluation (and "none") resizes the short side and takes the centre square, so images of any
    aspect ratio keep their proportions.
    """
    check_augmentation(name)
    fit = [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    # Plain tensors collate and pin like any other; tv_tensors would only carry metadata we never read.
    finish = [v2.ToPureTensor()]
    if not train or name == "none":
        return v2.Compose(fit + finish)
    if name == "alexnet":
        crop = [v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
        return v2.Compose(crop + [v2.ColorJitter(JITTER, JITTER, JITTER)] + finish)
    recipe = {
        # Bilinear, as augment_batch warps a batch (v2's default is nearest).
        "digits": [
            v2.RandomAffine(
                degrees=DIGITS_MAX_DEGREES,
                translate=(DIGITS_MAX_SHIFT, DIGITS_MAX_SHIFT),
                scale=DIGITS_SCALE,
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        ],
        "standard": [
            v2.RandomCrop(image_size, padding=standard_padding(image_size)),
            v2.RandomHorizontalFlip(),
        ],
        "randaugment": [v2.RandAugment()],
    }[name]
    return v2.Compose(fit + recipe + finish)
