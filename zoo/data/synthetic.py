"""Random uint8 images of any shape and class count, held in memory: for benchmarks and smoke tests
that need data of a given size and nothing else (there is nothing in it to learn)."""

from __future__ import annotations

import torch

from ..training.errors import UserError
from .memory import InMemoryDataModule


def random_images(
    count: int, channels: int, image_size: int, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 count x channels x size x size noise and int64 labels with every class equally often."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (count, channels, image_size, image_size), dtype=torch.uint8, generator=generator
    )
    labels = torch.arange(count) % num_classes
    return images, labels[torch.randperm(count, generator=generator)]


class SyntheticDataModule(InMemoryDataModule):
    """`num_samples` training images; validation and test sets are `eval_fraction` of that size each."""

    def __init__(
        self,
        num_samples: int = 1024,
        image_size: int = 32,
        channels: int = 3,
        num_classes: int = 10,
        eval_fraction: float = 0.1,
        data_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        seed: int = 0,
        augment: str = "none",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            augment=augment,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            on_device=on_device,
        )
        if num_classes < 2 or num_samples < num_classes or channels < 1 or image_size < 1:
            raise UserError(
                "synthetic data needs num_classes >= 2, num_samples >= num_classes, channels >= 1 and "
                f"image_size >= 1 (got {num_classes}, {num_samples}, {channels}, {image_size})"
            )
        self.num_samples, self.image_size_requested, self.channels_requested = (
            num_samples,
            image_size,
            channels,
        )
        self.num_classes_requested, self.eval_fraction, self.data_seed = num_classes, eval_fraction, data_seed

    def load_splits(self):
        eval_count = max(1, round(self.num_samples * self.eval_fraction))
        shape = (self.channels_requested, self.image_size_requested, self.num_classes_requested)
        splits = {}
        # Each split from its own seed, so changing one split's size leaves the others' images as they were.
        for offset, (name, count) in enumerate(
            (("train", self.num_samples), ("val", eval_count), ("test", eval_count))
        ):
            splits[name] = random_images(count, *shape, seed=self.data_seed * 3 + offset)
        return splits, tuple(f"class_{index}" for index in range(self.num_classes_requested))
