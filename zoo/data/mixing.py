"""MixUp and CutMix: whole-batch augmentations that blend images and turn labels into N x C soft targets.

They run after the batch reaches the training device, in a data module's `on_after_batch_transfer`,
for the in-memory and the worker-decoded paths alike. The loss (`ImageClassifier.loss`) takes the
soft targets as they come; training accuracy reads their argmax.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class BatchMixer:
    """torchvision's v2 MixUp and CutMix; with both alphas above zero, each batch gets one of the two.

    An alpha of 0 turns that method off. The v2 transforms draw from the global RNG; a seed taken from
    the caller's generator and a forked RNG keep the draws reproducible and leave the global stream
    (model initialisation, dropout) where it was.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, not {mixup_alpha}, {cutmix_alpha}")
        methods = []
        if mixup_alpha > 0:
            methods.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            methods.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.transform = None
        if len(methods) == 1:
            self.transform = methods[0]
        elif methods:
            self.transform = v2.RandomChoice(methods)

    @property
    def enabled(self) -> bool:
        return self.transform is not None

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images in [0, 1], N x C soft labels) from images (uint8 or float) and class indices."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        if self.transform is None:
            return images, labels
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return self.transform(images, labels)
