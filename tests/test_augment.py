"""Augmentation recipes: per-image randomness on whole batches, reproducible draws that leave the global
RNG alone, the per-sample v2 forms, and MixUp/CutMix soft targets on the in-memory path."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from zoo.data import BatchMixer, DataSpec, SyntheticDataModule
from zoo.data.augment import AUGMENTATIONS, JITTER, augment_batch, color_jitter, sample_transform
from zoo.training.errors import UserError
from zoo.training.module import ImageClassifier


def _same_image_batch(channels: int = 3, n: int = 16) -> torch.Tensor:
    image = torch.randint(0, 256, (1, channels, 24, 24), generator=torch.Generator().manual_seed(0))
    return image.to(torch.uint8).expand(n, -1, -1, -1).contiguous()


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if n != "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_each_image_of_a_batch_gets_its_own_draw(name: str, channels: int) -> None:
    batch = _same_image_batch(channels)
    out = augment_batch(batch, name, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    distinct = len(torch.unique(out.flatten(1), dim=0))
    assert distinct > len(batch) // 2, f"{name}: only {distinct} distinct images of {len(batch)}"


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_draws_repeat_with_the_seed_and_leave_the_global_rng_alone(name: str) -> None:
    batch = _same_image_batch()
    before = torch.get_rng_state()
    first = augment_batch(batch, name, torch.Generator().manual_seed(7))
    again = augment_batch(batch, name, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_per_sample_transforms_give_uint8_squares(name: str, mode: str) -> None:
    from PIL import Image

    image = Image.new(mode, (40, 27), color=128 if mode == "L" else (10, 200, 30))
    for train in (True, False):
        out = sample_transform(name, 20, train=train)(image)
        assert type(out) is torch.Tensor and out.dtype == torch.uint8 and out.shape == (len(mode), 20, 20)


def test_unknown_recipe_is_a_user_error_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match="randaugment"):
        SyntheticDataModule(augment="autoaugment")


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(mixup: float, cutmix: float) -> None:
    # Distinct images and neighbouring labels that differ, so blending shows in both images and targets.
    images = torch.randint(0, 256, (8, 3, 24, 24), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    labels = torch.arange(8) % 4
    before = torch.get_rng_state()
    mixed, targets = BatchMixer(4, mixup, cutmix)(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)
    assert mixed.dtype == torch.float32 and targets.shape == (8, 4)
    assert torch.allclose(targets.sum(dim=1), torch.ones(8))
    assert (targets.max(dim=1).values < 1).any(), "no soft targets: the batch was not mixed"
    assert not torch.allclose(mixed, images.float() / 255), "mixed images equal the originals"
    assert not BatchMixer(4).enabled


def test_in_memory_batches_are_augmented_and_mixed_only_while_training() -> None:
    data = SyntheticDataModule(
        num_samples=64, image_size=8, num_classes=4, augment="standard", mixup_alpha=0.5
    )
    data.setup()
    batch = next(iter(data.train_dataloader()))
    data.trainer = SimpleNamespace(training=True, global_rank=0, world_size=1)
    images, targets = data.on_after_batch_transfer(batch, 0)
    assert images.dtype == torch.float32 and targets.shape == (len(batch[1]), 4)
    assert (targets.max(dim=1).values < 1).any(), "no soft targets: the batch was not mixed"
    data.trainer = SimpleNamespace(training=False, global_rank=0, world_size=1)
    assert data.on_after_batch_transfer(batch, 0) is batch


# Guards the standard recipe's crop: every offset from 0 to 2 x padding, and half the images mirrored.
def test_the_standard_crop_reaches_every_offset_and_mirrors_half_the_images() -> None:
    size, n = 16, 400  # padding 16 // 8 = 2: shifts of -2..2 pixels each way
    codes = torch.arange(1, size * size + 1, dtype=torch.float32).view(1, 1, size, size) / (size * size)
    out = augment_batch(codes.expand(n, -1, -1, -1), "standard", torch.Generator().manual_seed(0))
    shifts, mirrored = set(), 0
    for image in (out[:, 0] * size * size).round().long():  # each pixel's code back; 0 is padding
        rows, cols = (image > 0).nonzero(as_tuple=True)
        row, col = int(rows[0]), int(cols[0])
        flipped = bool(image[row, col + 1] < image[row, col])
        source_row, source_col = divmod(int(image[row, col]) - 1, size)
        shifts.add((source_row - row, source_col - (size - 1 - col if flipped else col)))
        mirrored += flipped
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert 0.4 < mirrored / n < 0.6


# Guards the digits recipe's shift: up to 8% of the image size each way, not half of it.
def test_the_digits_shift_reaches_its_full_range() -> None:
    size, n = 32, 300
    blob = torch.zeros(1, 1, size, size)
    blob[..., 13:19, 13:19] = 1  # centred at 15.5: rotation and scaling about the centre leave it there
    out = augment_batch(blob.expand(n, -1, -1, -1), "digits", torch.Generator().manual_seed(0))[:, 0]
    grid = torch.arange(size, dtype=torch.float32)
    mass = out.sum(dim=(1, 2))
    centres = torch.cat(
        [(out.sum(dim=1) * grid).sum(dim=1) / mass, (out.sum(dim=2) * grid).sum(dim=1) / mass]
    )
    largest = (centres - 15.5).abs().max()
    # The shift is drawn before rotation (up to 10 degrees) and zoom (up to 1.1) act on it.
    reach = 0.08 * size * 1.1 * (math.cos(math.radians(10)) + math.sin(math.radians(10)))
    assert 0.8 * 0.08 * size < largest <= reach + 0.1


# Guards the per-sample standard recipe's padded crop: images shift, not only mirror.
def test_the_per_sample_standard_recipe_shifts_images() -> None:
    from PIL import Image

    image = Image.fromarray(torch.arange(256, dtype=torch.uint8).view(16, 16).numpy())
    transform = sample_transform("standard", 16, train=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        outputs = {transform(image).numpy().tobytes() for _ in range(20)}
    assert len(outputs) > 2, "only the image and its mirror: no crop offset"


# Guards normalize: float batches (augmented or mixed) are taken as [0, 1], not divided by 255 again.
def test_float_batches_are_normalised_as_the_uint8_batches_they_came_from() -> None:
    spec = DataSpec(class_names=("a", "b"), channels=3, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = {"name": "lenet5", "num_classes": 2, "in_chans": 3, "small_input": True}
    module = ImageClassifier(model=model, data=spec.to_dict())
    images = torch.randint(
        0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    assert torch.allclose(module.normalize(images.float() / 255), module.normalize(images))


# Guards the batch colour jitter against torchvision's: each adjust_* clamps to [0, 1], so a pixel
# brightened past 1 does not raise the contrast step's mean nor carry its excess on to saturation.
def test_the_batch_colour_jitter_is_torchvisions_with_the_same_factors() -> None:
    n = 64
    images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5  # bright
    jittered = color_jitter(images, generator=torch.Generator().manual_seed(1))
    draws = torch.Generator().manual_seed(1)  # the same draws, in color_jitter's order
    brightness, contrast, saturation = (
        1 + JITTER * (torch.rand(n, generator=draws) * 2 - 1) for _ in range(3)
    )
    expected = torch.stack(
        [
            TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, b), c), s)
            for image, b, c, s in zip(
                images, brightness.tolist(), contrast.tolist(), saturation.tolist(), strict=True
            )
        ]
    )
    # Within a grey level: the luma weights differ in the fourth decimal.
    assert (jittered - expected).abs().max() < 1 / 255
