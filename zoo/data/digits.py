"""scikit-learn's handwritten digits: 1,797 real 8x8 images shipped inside the package, so the
default run trains on real data with no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .memory import InMemoryDataModule
from .splits import stratified_split


def load_digit_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as uint8 N x 1 x size x size images and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # N x 1 x 8 x 8, 0..1
    pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, torch.from_numpy(digits.target.astype(np.int64))


class DigitsDataModule(InMemoryDataModule):
    """A fixed, seeded, stratified train/val/test split; both fractions are of the whole set."""

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        image_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        seed: int = 0,
        augment: str = "digits",
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
        self.image_size_requested = image_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load_splits(self):
        images, labels = load_digit_images(self.image_size_requested)
        rest, test = stratified_split(
            labels.numpy(), self.test_fraction, self.split_seed, f"data.test_fraction={self.test_fraction}"
        )
        val_of_rest = self.val_fraction / (1.0 - self.test_fraction)
        train_rel, val_rel = stratified_split(
            labels[rest].numpy(), val_of_rest, self.split_seed, f"data.val_fraction={self.val_fraction}"
        )
        splits = {}
        for name, index in (("train", rest[train_rel]), ("val", rest[val_rel]), ("test", test)):
            index_t = torch.from_numpy(index)
            splits[name] = (images[index_t], labels[index_t])
        return splits, tuple(str(digit) for digit in range(10))
