"""Augmentation recipes: per-image randomness on whole batches, reproducible draws that leave the global
RNG alone, the per-sample v2 forms, and MixUp/CutMix soft targets on the in-memory path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from zoo.data import BatchMixer, SyntheticDataModule
from zoo.data.augment import AUGMENTATIONS, augment_batch, sample_transform
from zoo.training.errors import UserError


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
